// C2SP signed notes (signed-note v1.0.0), verifier keys, and the
// tlog-checkpoint body, with signature checks done by WebCrypto:
//   0x01 Ed25519 over the note text,
//   0x02 ECDSA P-256 / SHA-256 over the note text, DER signatures, key ID =
//        SHA-256(DER SPKI)[:4] (as transparency-dev/formats implements it),
//   0x04 timestamped Ed25519 cosignatures (c2sp.org/tlog-cosignature).
//
// Pure: no DOM, no network. Invariants: a signature counts only if its
// (key name, key ID) pair matches a verifier key and the bytes verify; a
// known key whose signature fails rejects the whole note; keys whose
// declared ID does not match their material are refused at parse time.

import {
  EncodingError, bytesEqual, concatBytes, fromBase64, parseDecimalU64, readUintBE, utf8, U64_MAX,
} from './b64.js';
import { sha256, HASH_SIZE } from './merkle.js';

export class NoteError extends Error {
  constructor(code, message) {
    super(message);
    this.name = 'NoteError';
    this.code = code;
  }
}

export const SIG_ED25519 = 0x01;
export const SIG_ECDSA = 0x02;
export const SIG_COSIGNATURE_V1 = 0x04;

export const KEY_TYPE_NAMES = {
  [SIG_ED25519]: 'Ed25519',
  [SIG_ECDSA]: 'ECDSA P-256',
  [SIG_COSIGNATURE_V1]: 'Ed25519 cosignature (tlog-cosignature v1)',
};

const EM_DASH_PREFIX = '\u2014 ';
const MAX_SIGNATURES = 100; // signed-note: verifiers MUST accept at least 16; x/mod caps at 100.
// DER SubjectPublicKeyInfo prefix of an uncompressed P-256 point (specs §2.5).
const P256_SPKI_PREFIX = new Uint8Array([
  0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a,
  0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00, 0x04,
]);

function subtle() {
  if (!globalThis.crypto || !globalThis.crypto.subtle) {
    throw new NoteError('no-webcrypto', 'WebCrypto is not available (pages must be served over https or from localhost)');
  }
  return globalThis.crypto.subtle;
}

/** signed-note §2: a key name is non-empty, has no Unicode whitespace and no '+'. */
export function isValidKeyName(name) {
  return typeof name === 'string' && name.length > 0 && !/[\s+]/u.test(name);
}

function keyIdHex(id) {
  return (id >>> 0).toString(16).padStart(8, '0');
}

async function keyIdOf(...parts) {
  const h = await sha256(concatBytes(...parts));
  return Number(readUintBE(h, 0, 4));
}

// ---- Ed25519 feature detection -------------------------------------------

let ed25519Probe = null;

/** Resolves to true when this browser's WebCrypto can verify Ed25519. */
export function ed25519Supported() {
  if (!ed25519Probe) {
    ed25519Probe = (async () => {
      try {
        // Any valid point works; this is the RFC 8032 §7.1 TEST 1 public key.
        const pk = new Uint8Array([
          0xd7, 0x5a, 0x98, 0x01, 0x82, 0xb1, 0x0a, 0xb7, 0xd5, 0x4b, 0xfe, 0xd3, 0xc9, 0x64, 0x07, 0x3a,
          0x0e, 0xe1, 0x72, 0xf3, 0xda, 0xa6, 0x23, 0x25, 0xaf, 0x02, 0x1a, 0x68, 0xf7, 0x07, 0x51, 0x1a,
        ]);
        await subtle().importKey('raw', pk, { name: 'Ed25519' }, false, ['verify']);
        return true;
      } catch {
        return false;
      }
    })();
  }
  return ed25519Probe;
}

/** For tests: pretend the browser has (or lacks) Ed25519. */
export function overrideEd25519Support(value) {
  ed25519Probe = value === null ? null : Promise.resolve(Boolean(value));
}

export const ED25519_UNSUPPORTED = 'Ed25519 not supported by this browser';

// ---- verifier keys --------------------------------------------------------

/**
 * Parses a verifier key `<name>+<hex8 key ID>+<base64(type || key)>`
 * (signed-note §2.4) and checks that the key ID matches the key. Returns
 * {vkey, name, keyId, keyIdHex, type, typeName, publicKey, cryptoKey|null}.
 */
export async function parseVkey(vkey) {
  if (typeof vkey !== 'string') throw new NoteError('bad-vkey', 'verifier key is not text');
  vkey = vkey.trim();
  const p1 = vkey.indexOf('+');
  const p2 = p1 < 0 ? -1 : vkey.indexOf('+', p1 + 1);
  if (p1 < 0 || p2 < 0) {
    throw new NoteError('bad-vkey', `verifier key "${short(vkey)}" is not of the form name+keyid+key`);
  }
  const name = vkey.slice(0, p1);
  const hex = vkey.slice(p1 + 1, p2);
  const b64 = vkey.slice(p2 + 1);
  if (!isValidKeyName(name)) throw new NoteError('bad-vkey', `verifier key "${short(vkey)}" has an invalid name`);
  if (!/^[0-9a-f]{8}$/.test(hex)) {
    throw new NoteError('bad-vkey', `verifier key for ${name}: key ID "${hex}" is not 8 lowercase hex digits`);
  }
  let material;
  try {
    material = fromBase64(b64, `verifier key for ${name}`);
  } catch (e) {
    throw new NoteError('bad-vkey', e.message);
  }
  if (material.length < 2) throw new NoteError('bad-vkey', `verifier key for ${name} is too short`);
  const type = material[0];
  const publicKey = material.subarray(1);
  let keyId;
  if (type === SIG_ED25519 || type === SIG_COSIGNATURE_V1) {
    if (publicKey.length !== 32) {
      throw new NoteError('bad-vkey', `verifier key for ${name}: an Ed25519 public key is 32 bytes, not ${publicKey.length}`);
    }
    keyId = await keyIdOf(utf8(name), new Uint8Array([0x0a, type]), publicKey); // signed-note §2.2
  } else if (type === SIG_ECDSA) {
    if (publicKey.length !== 91 || !bytesEqual(publicKey.subarray(0, P256_SPKI_PREFIX.length), P256_SPKI_PREFIX)) {
      throw new NoteError('bad-vkey', `verifier key for ${name}: only ECDSA P-256 keys (91-byte DER SubjectPublicKeyInfo) are supported`);
    }
    keyId = await keyIdOf(publicKey); // specs §2.5: SHA-256(DER SPKI)[:4], name not hashed
  } else {
    throw new NoteError('bad-vkey', `verifier key for ${name}: unsupported signature type 0x${type.toString(16).padStart(2, '0')}`);
  }
  if (keyIdHex(keyId) !== hex) {
    throw new NoteError('bad-vkey', `verifier key for ${name}: key ID ${hex} does not match the key (expected ${keyIdHex(keyId)})`);
  }
  let cryptoKey = null;
  if (type === SIG_ECDSA) {
    try {
      cryptoKey = await subtle().importKey('spki', publicKey, { name: 'ECDSA', namedCurve: 'P-256' }, false, ['verify']);
    } catch (e) {
      throw new NoteError('bad-vkey', `verifier key for ${name}: not a valid P-256 public key (${e.message})`);
    }
  } else if (await ed25519Supported()) {
    try {
      cryptoKey = await subtle().importKey('raw', publicKey, { name: 'Ed25519' }, false, ['verify']);
    } catch (e) {
      throw new NoteError('bad-vkey', `verifier key for ${name}: not a valid Ed25519 public key (${e.message})`);
    }
  }
  return { vkey, name, keyId, keyIdHex: hex, type, typeName: KEY_TYPE_NAMES[type], publicKey, cryptoKey };
}

/** Parses several verifier keys, one per non-empty line; '#' starts a comment line. */
export async function parseVkeys(text) {
  const keys = [];
  for (const line of String(text).split('\n')) {
    const t = line.trim();
    if (t === '' || t.startsWith('#')) continue;
    keys.push(await parseVkey(t));
  }
  return keys;
}

function short(s) {
  return s.length > 48 ? `${s.slice(0, 45)}...` : s;
}

// ---- notes ----------------------------------------------------------------

/**
 * Splits a signed note into its text (including the final newline) and
 * its signature lines (signed-note §2.1). Returns
 * {text, signatures: [{name, keyId, keyIdHex, payload, line}]}.
 */
export function parseNote(msg) {
  if (typeof msg !== 'string') throw new NoteError('malformed-note', 'note is not text');
  if (typeof msg.isWellFormed === 'function' && !msg.isWellFormed()) {
    throw new NoteError('malformed-note', 'note is not valid Unicode text');
  }
  const ctl = msg.search(/[\u0000-\u0009\u000b-\u001f]/);
  if (ctl >= 0) {
    const what = msg[ctl] === '\r' ? 'a carriage return (Windows line ending)' : `control character 0x${msg.charCodeAt(ctl).toString(16).padStart(2, '0')}`;
    throw new NoteError('malformed-note', `note contains ${what}; only \\n line endings are allowed`);
  }
  if (!msg.endsWith('\n')) throw new NoteError('malformed-note', 'note does not end with a newline');
  const split = msg.lastIndexOf('\n\n');
  if (split < 0) throw new NoteError('malformed-note', 'note has no blank line before its signatures');
  const text = msg.slice(0, split + 1);
  const sigText = msg.slice(split + 2);
  if (text.length === 0) throw new NoteError('malformed-note', 'note text is empty');
  if (sigText.length === 0) throw new NoteError('malformed-note', 'note has no signature lines');
  const lines = sigText.slice(0, -1).split('\n');
  if (lines.length > MAX_SIGNATURES) throw new NoteError('malformed-note', `note has more than ${MAX_SIGNATURES} signatures`);
  const signatures = lines.map((line, i) => {
    if (!line.startsWith(EM_DASH_PREFIX)) {
      throw new NoteError('malformed-note', `signature line ${i + 1} does not start with "— " (em dash and space)`);
    }
    const rest = line.slice(EM_DASH_PREFIX.length);
    const sp = rest.indexOf(' ');
    if (sp < 0) throw new NoteError('malformed-note', `signature line ${i + 1} has no space between key name and signature`);
    const name = rest.slice(0, sp);
    if (!isValidKeyName(name)) throw new NoteError('malformed-note', `signature line ${i + 1} has an invalid key name`);
    let bytes;
    try {
      bytes = fromBase64(rest.slice(sp + 1), `signature by ${name}`);
    } catch (e) {
      throw new NoteError('malformed-note', e.message);
    }
    if (bytes.length < 5) throw new NoteError('malformed-note', `signature by ${name} is too short`);
    const keyId = Number(readUintBE(bytes, 0, 4));
    return { name, keyId, keyIdHex: keyIdHex(keyId), payload: bytes.subarray(4), line };
  });
  return { text, signatures };
}

/**
 * Converts a strict DER ECDSA signature (SEQUENCE of two INTEGERs, minimal
 * encodings, no trailing bytes) into the 64-byte r||s form WebCrypto takes.
 */
export function derToRawP256(der) {
  const bad = (why) => new NoteError('bad-der', `ECDSA signature is not valid DER: ${why}`);
  if (der.length < 8) throw bad('too short');
  if (der[0] !== 0x30) throw bad('does not start with a SEQUENCE');
  if (der[1] & 0x80) throw bad('length is not in short form');
  if (der[1] + 2 !== der.length) throw bad('SEQUENCE length does not match (trailing or missing bytes)');
  let off = 2;
  const readInt = (which) => {
    if (off + 2 > der.length || der[off] !== 0x02) throw bad(`${which} is not an INTEGER`);
    const len = der[off + 1];
    if (len & 0x80 || len === 0 || off + 2 + len > der.length) throw bad(`${which} has a bad length`);
    let v = der.subarray(off + 2, off + 2 + len);
    off += 2 + len;
    if (v[0] & 0x80) throw bad(`${which} is negative`);
    if (v.length > 1 && v[0] === 0 && !(v[1] & 0x80)) throw bad(`${which} is not minimally encoded`);
    if (v[0] === 0 && v.length > 1) v = v.subarray(1);
    if (v.length > 32) throw bad(`${which} is larger than 256 bits`);
    if (v.every((b) => b === 0)) throw bad(`${which} is zero`);
    const out = new Uint8Array(32);
    out.set(v, 32 - v.length);
    return out;
  };
  const r = readInt('r');
  const s = readInt('s');
  if (off !== der.length) throw bad('trailing bytes');
  return concatBytes(r, s);
}

/** tlog-cosignature §"Signed message": "cosignature/v1\ntime <t>\n" || note text. */
export function cosignatureMessage(timestamp, text) {
  return utf8(`cosignature/v1\ntime ${timestamp}\n${text}`);
}

/**
 * Verifies one signature with one key. Returns {ok, timestamp?, reason?};
 * `reason` is ED25519_UNSUPPORTED when the browser cannot check it.
 */
export async function verifySignature(key, sig, text) {
  const textBytes = utf8(text);
  if (key.type === SIG_ECDSA) {
    let raw;
    try {
      raw = derToRawP256(sig.payload);
    } catch (e) {
      return { ok: false, reason: e.message };
    }
    const ok = await subtle().verify({ name: 'ECDSA', hash: 'SHA-256' }, key.cryptoKey, raw, textBytes);
    return { ok };
  }
  if (!key.cryptoKey) return { ok: false, unsupported: true, reason: ED25519_UNSUPPORTED };
  if (key.type === SIG_ED25519) {
    if (sig.payload.length !== 64) return { ok: false, reason: `an Ed25519 signature is 64 bytes, not ${sig.payload.length}` };
    const ok = await subtle().verify({ name: 'Ed25519' }, key.cryptoKey, sig.payload, textBytes);
    return { ok };
  }
  // SIG_COSIGNATURE_V1: timestamp(8, big-endian) || Ed25519 signature(64).
  if (sig.payload.length !== 72) return { ok: false, reason: `a cosignature is 72 bytes, not ${sig.payload.length}` };
  const timestamp = readUintBE(sig.payload, 0, 8);
  if (timestamp > U64_MAX >> 1n) return { ok: false, timestamp, reason: 'cosignature timestamp exceeds 2^63-1' };
  const ok = await subtle().verify(
    { name: 'Ed25519' }, key.cryptoKey, sig.payload.subarray(8), cosignatureMessage(timestamp, text),
  );
  return { ok, timestamp };
}

/**
 * Checks every signature of a note against the given parsed verifier keys
 * (signed-note §2.1 rules). Never throws for a bad signature; returns
 * {ok, error, text, signatures: [{name, keyIdHex, status, typeName?,
 * timestamp?, message}]} where status is one of verified | invalid |
 * unknown-key | duplicate | unsupported. ok is true when at least one
 * known key verified and none failed.
 */
export async function checkNote(msg, keys) {
  const note = parseNote(msg);
  const seen = new Set();
  const signatures = [];
  for (const sig of note.signatures) {
    const entry = { name: sig.name, keyIdHex: sig.keyIdHex, line: sig.line };
    const key = keys.find((k) => k.name === sig.name && k.keyId === sig.keyId);
    const id = `${sig.name}\u0000${sig.keyId}`;
    if (!key) {
      entry.status = 'unknown-key';
      entry.message = `signature by ${sig.name} (key ${sig.keyIdHex}) is from an unknown key and was ignored`;
    } else if (seen.has(id)) {
      entry.status = 'duplicate';
      entry.message = `second signature by ${sig.name} (key ${sig.keyIdHex}) was ignored`;
    } else {
      seen.add(id);
      entry.typeName = key.typeName;
      entry.type = key.type;
      const res = await verifySignature(key, sig, note.text);
      if (res.timestamp !== undefined) entry.timestamp = res.timestamp;
      if (res.ok) {
        entry.status = 'verified';
        entry.message = `signature by ${sig.name} (${key.typeName}, key ${sig.keyIdHex}) verifies`;
      } else if (res.unsupported) {
        entry.status = 'unsupported';
        entry.message = `${ED25519_UNSUPPORTED}: signature by ${sig.name} (key ${sig.keyIdHex}) was not checked`;
      } else {
        entry.status = 'invalid';
        entry.message = `signature by ${sig.name} (${key.typeName}, key ${sig.keyIdHex}) does not verify${res.reason ? `: ${res.reason}` : ''}`;
      }
    }
    signatures.push(entry);
  }
  const invalid = signatures.find((s) => s.status === 'invalid');
  const verified = signatures.filter((s) => s.status === 'verified');
  let error = null;
  if (invalid) {
    error = invalid.message;
  } else if (verified.length === 0) {
    const unsupported = signatures.find((s) => s.status === 'unsupported');
    if (unsupported) {
      error = `${ED25519_UNSUPPORTED}, and no other signature by a known key verifies (signature by ${unsupported.name} not checked)`;
    } else {
      const names = [...new Set(note.signatures.map((s) => s.name))].join(', ');
      error = `no signature by a known key: the note is signed by ${names}, none of which matches a verifier key (name and key ID)`;
    }
  }
  return { ok: error === null, error, text: note.text, signatures };
}

/** Like checkNote but throws NoteError(message) unless the note verifies. Returns the report. */
export async function verifyNote(msg, keys) {
  const report = await checkNote(msg, keys);
  if (!report.ok) throw new NoteError('verification-failed', report.error);
  return report;
}

// ---- checkpoints ----------------------------------------------------------

/**
 * Parses a checkpoint body (c2sp.org/tlog-checkpoint): origin, canonical
 * decimal tree size, base64 32-byte root hash, optional extension lines.
 * Returns {origin, size (BigInt), rootHash (Uint8Array), extensions}.
 */
export function parseCheckpoint(text) {
  if (!text.endsWith('\n')) throw new NoteError('malformed-checkpoint', 'checkpoint text does not end with a newline');
  const lines = text.slice(0, -1).split('\n');
  if (lines.length < 3) throw new NoteError('malformed-checkpoint', 'checkpoint has fewer than 3 lines (origin, tree size, root hash)');
  const [origin, sizeLine, rootLine, ...extensions] = lines;
  if (origin.length === 0) throw new NoteError('malformed-checkpoint', 'checkpoint origin line is empty');
  let size;
  let rootHash;
  try {
    size = parseDecimalU64(sizeLine, 'checkpoint tree size');
    rootHash = fromBase64(rootLine, 'checkpoint root hash');
  } catch (e) {
    if (e instanceof EncodingError) throw new NoteError('malformed-checkpoint', e.message);
    throw e;
  }
  if (rootHash.length !== HASH_SIZE) {
    throw new NoteError('malformed-checkpoint', `checkpoint root hash is ${rootHash.length} bytes, not 32`);
  }
  if (extensions.some((l) => l.length === 0)) throw new NoteError('malformed-checkpoint', 'checkpoint has an empty extension line');
  return { origin, size, rootHash, extensions };
}
