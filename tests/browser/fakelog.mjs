// A stand-in for the Veritrail server's public API, for browser tests that
// must not depend on the Rust binary: it signs real checkpoints (Ed25519 and
// ECDSA P-256 log keys, an optional Ed25519 witness cosignature) and serves
// proofs and entry bundles in the API's JSON shapes.
//
// Independent of web/js on purpose: hashing and signing use node:crypto, and
// proofs follow the recursive definitions of RFC 9162 §2.1.3.1 / §2.1.4.1,
// so the browser verifier is checked against a second implementation.

import crypto from 'node:crypto';

const sha256 = (...parts) => crypto.createHash('sha256').update(Buffer.concat(parts.map((p) => Buffer.from(p)))).digest();
const leafHash = (entry) => sha256([0], entry);
const nodeHash = (l, r) => sha256([1], l, r);
const b64 = (b) => Buffer.from(b).toString('base64');

function largestPowerOfTwoBelow(n) {
  let k = 1;
  while (k * 2 < n) k *= 2;
  return k;
}

// RFC 9162 §2.1.1
export function mth(hashes) {
  if (hashes.length === 0) return sha256();
  if (hashes.length === 1) return hashes[0];
  const k = largestPowerOfTwoBelow(hashes.length);
  return nodeHash(mth(hashes.slice(0, k)), mth(hashes.slice(k)));
}

// RFC 9162 §2.1.3.1
export function path(m, hashes) {
  if (hashes.length <= 1) return [];
  const k = largestPowerOfTwoBelow(hashes.length);
  if (m < k) return [...path(m, hashes.slice(0, k)), mth(hashes.slice(k))];
  return [...path(m - k, hashes.slice(k)), mth(hashes.slice(0, k))];
}

// RFC 9162 §2.1.4.1
export function proof(m, hashes) {
  const sub = (mm, d, b) => {
    if (mm === d.length) return b ? [] : [mth(d)];
    const k = largestPowerOfTwoBelow(d.length);
    if (mm <= k) return [...sub(mm, d.slice(0, k), b), mth(d.slice(k))];
    return [...sub(mm - k, d.slice(k), false), mth(d.slice(0, k))];
  };
  return sub(m, hashes, true);
}

function keyId(...parts) {
  return sha256(...parts).subarray(0, 4);
}

export function makeEd25519Key(name, type = 0x01) {
  const { publicKey, privateKey } = crypto.generateKeyPairSync('ed25519');
  const pk = Buffer.from(publicKey.export({ format: 'jwk' }).x, 'base64url');
  const id = keyId(Buffer.from(`${name}\n`), [type], pk);
  return { name, type, id, privateKey, vkey: `${name}+${id.toString('hex')}+${b64(Buffer.concat([Buffer.from([type]), pk]))}` };
}

export function makeEcdsaKey(name) {
  const { publicKey, privateKey } = crypto.generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
  const spki = publicKey.export({ type: 'spki', format: 'der' });
  const id = keyId(spki);
  return { name, type: 0x02, id, privateKey, vkey: `${name}+${id.toString('hex')}+${b64(Buffer.concat([Buffer.from([2]), spki]))}` };
}

export function signLine(key, text, timestamp) {
  let payload;
  if (key.type === 0x01) payload = crypto.sign(null, Buffer.from(text), key.privateKey);
  else if (key.type === 0x02) payload = crypto.sign('sha256', Buffer.from(text), { key: key.privateKey, dsaEncoding: 'der' });
  else {
    const ts = Buffer.alloc(8);
    ts.writeBigUInt64BE(BigInt(timestamp));
    const sig = crypto.sign(null, Buffer.from(`cosignature/v1\ntime ${timestamp}\n${text}`), key.privateKey);
    payload = Buffer.concat([ts, sig]);
  }
  return `\u2014 ${key.name} ${b64(Buffer.concat([key.id, payload]))}\n`;
}

export function signCheckpoint(origin, size, root, keys, witness) {
  const text = `${origin}\n${size}\n${b64(root)}\n`;
  let note = `${text}\n`;
  for (const k of keys) note += signLine(k, text);
  if (witness) note += signLine(witness, text, Math.floor(Date.now() / 1000));
  return note;
}

function leafRecord(i) {
  const commitment = sha256(Buffer.from(`event ${i}`)).toString('hex');
  const received = new Date(Date.UTC(2026, 10, 25, 10, 0, 0) + i * 1500).toISOString();
  return `{"app":"${i % 3 === 0 ? 'billing' : 'ehr'}","commitment":"${commitment}","received":"${received}","v":1}`;
}

function encodeIndex(n) {
  const groups = [];
  do {
    groups.unshift(String(n % 1000).padStart(3, '0'));
    n = Math.floor(n / 1000);
  } while (n > 0);
  return groups.map((g, i) => (i < groups.length - 1 ? `x${g}` : g)).join('/');
}

export class FakeLog {
  constructor({ origin = 'log.example.test/veritrail', size = 0, witness = true } = {}) {
    this.origin = origin;
    this.ed = makeEd25519Key(origin);
    this.ec = makeEcdsaKey(origin);
    this.witness = witness ? makeEd25519Key('witness.example.test/w1', 0x04) : null;
    this.entries = [];
    this.hashes = [];
    this.append(size);
  }

  append(n) {
    for (let k = 0; k < n; k++) {
      const entry = Buffer.from(leafRecord(this.entries.length));
      this.entries.push(entry);
      this.hashes.push(leafHash(entry));
    }
    this.publish();
  }

  publish() {
    this.size = this.entries.length;
    this.root = mth(this.hashes);
    this.note = signCheckpoint(this.origin, this.size, this.root, [this.ec, this.ed], this.witness);
    this.publishedAtMs = Date.now();
  }

  vkeys() {
    const keys = [this.ec.vkey, this.ed.vkey];
    if (this.witness) keys.push(this.witness.vkey);
    return keys;
  }

  receipt(index) {
    return {
      leaf_index: index,
      tree_size: this.size,
      leaf_hash: b64(this.hashes[index]),
      audit_path: path(index, this.hashes.slice(0, this.size)).map(b64),
      checkpoint: this.note,
      leaf: this.entries[index].toString('utf8'),
    };
  }

  /** Answers an API request, or returns null when the path is not the API's. */
  handle(url) {
    const json = (status, body) => ({ status, type: 'application/json', body: JSON.stringify(body) });
    const err = (status, code, message) => json(status, { error: { code, message } });
    const p = url.pathname;
    if (p === '/v1/log') {
      return json(200, { origin: this.origin, tree_size: this.size, verifier_keys: { ecdsa: this.ec.vkey, ed25519: this.ed.vkey } });
    }
    if (p === '/v1/growth') {
      // The fake log grew evenly over the hour before its checkpoint.
      const end = this.publishedAtMs || Date.now();
      const points = [0, 1, 2, 3, 4].map((k) => ({ t_ms: end - 3600000 + k * 900000, size: Math.round((this.size * k) / 4) }));
      return json(200, { tree_size: this.size, points });
    }
    if (p === '/checkpoint') return { status: 200, type: 'text/plain; charset=utf-8', body: this.note };
    if (p === '/v1/checkpoint') {
      return json(200, { origin: this.origin, tree_size: this.size, root_hash: b64(this.root), note: this.note, published_at_ms: this.publishedAtMs });
    }
    if (p === '/v1/proof/consistency') {
      const a = Number(url.searchParams.get('first'));
      const b = Number(url.searchParams.get('second'));
      if (!(a >= 1 && a <= b && b <= this.size)) return err(400, 'bad_request', 'need 1 <= first <= second <= tree size');
      return json(200, { first: a, second: b, consistency: proof(a, this.hashes.slice(0, b)).map(b64) });
    }
    if (p === '/v1/proof/inclusion') {
      const i = Number(url.searchParams.get('index'));
      const s = Number(url.searchParams.get('tree_size'));
      if (!(i >= 0 && i < s && s <= this.size)) return err(400, 'bad_request', 'need index < tree_size <= size');
      return json(200, { leaf_index: i, tree_size: s, leaf_hash: b64(this.hashes[i]), audit_path: path(i, this.hashes.slice(0, s)).map(b64) });
    }
    const m = /^\/tile\/entries\/((?:x\d{3}\/)*\d{3})(?:\.p\/(\d+))?$/.exec(p);
    if (m) {
      const n = Number(m[1].replace(/[x/]/g, ''));
      if (encodeIndex(n) !== m[1]) return err(404, 'not_found', 'non-canonical tile path');
      const w = m[2] === undefined ? 256 : Number(m[2]);
      const start = n * 256;
      if (start + w > this.size || w < 1 || w > 256) return err(404, 'not_found', 'no such entry bundle');
      const parts = [];
      for (const e of this.entries.slice(start, start + w)) {
        const len = Buffer.alloc(2);
        len.writeUInt16BE(e.length);
        parts.push(len, e);
      }
      return { status: 200, type: 'application/octet-stream', body: Buffer.concat(parts) };
    }
    if (p.startsWith('/v1/') || p.startsWith('/tile/')) return err(404, 'not_found', `no route ${p}`);
    return null;
  }
}
