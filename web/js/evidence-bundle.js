// Veritrail evidence bundles (NDJSON from GET /v1/export; the format is
// docs/evidence-bundle.md) and their verification in the browser, line by
// line, with the same checks as `veritrail verify-bundle`.
//
// Pure: no DOM, no network. Invariant: the bundle's own copy of the
// verifier keys is never trusted; only the keys passed in are. A bundle
// verifies only when the header's checkpoint verifies with them, every
// event line passes every check, and the end line counts them all.

import { bytesEqual, concatBytes, fromBase64, fromHex, toBase64, toHex, utf8 } from './b64.js';
import { leafHash, rootFromInclusionProof, sha256 } from './merkle.js';
import { checkCheckpoint } from './checkpoint-policy.js';
import { decodeLeafRecord } from './bundle.js';

export const BUNDLE_TYPE = 'veritrail-evidence-bundle';
/** Domain of an event commitment (src/event/leaf.rs, COMMITMENT_DOMAIN). */
export const COMMITMENT_DOMAIN = 'veritrail/event/v1';

/**
 * RFC 8785 (JCS) canonical JSON of a parsed value: object keys sorted by
 * UTF-16 code units, no whitespace, numbers and strings as ECMAScript
 * serialises them (RFC 8785 §3.2.2). Events only hold integers within
 * ±(2^53−1), so JSON.parse keeps every number exact.
 */
export function canonicalJson(value) {
  if (value === null || typeof value === 'boolean') return JSON.stringify(value);
  if (typeof value === 'number') {
    if (!Number.isFinite(value)) throw new Error('a number that is not finite');
    return JSON.stringify(value);
  }
  if (typeof value === 'string') return JSON.stringify(value);
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`;
  if (typeof value === 'object') {
    const keys = Object.keys(value).sort();
    return `{${keys.map((k) => `${JSON.stringify(k)}:${canonicalJson(value[k])}`).join(',')}}`;
  }
  throw new Error(`a value of type ${typeof value} has no JSON form`);
}

/** SHA-256("veritrail/event/v1" || 0x00 || salt || canonical event). */
export function eventCommitment(salt, canonicalEvent) {
  return sha256(concatBytes(utf8(COMMITMENT_DOMAIN), new Uint8Array([0]), salt, canonicalEvent));
}

function parseTime(text) {
  if (typeof text !== 'string') return null;
  const ms = Date.parse(text);
  return Number.isNaN(ms) ? null : ms;
}

/** Checks that an event answers the header's query, as src/evidence/mod.rs does. */
function queryMismatch(event, record, query) {
  if (!query || typeof query !== 'object') return null;
  const have = {
    subject: event.subject,
    actor: event.actor && event.actor.id,
    action: event.action,
    resource: event.resource && event.resource.id,
    app: record.app,
  };
  for (const name of ['subject', 'actor', 'action', 'resource', 'app']) {
    if (typeof query[name] === 'string' && have[name] !== query[name]) {
      return `the event does not match the bundle's query (${name})`;
    }
  }
  for (const name of ['outcome', 'purpose']) {
    if (typeof query[name] === 'string' && event[name] !== query[name]) {
      return `the event does not match the bundle's query (${name})`;
    }
  }
  if (query.include_audit === false && record.app === 'veritrail') {
    return "the bundle's query excludes the log's own audit records";
  }
  const outside = (t, since, until) => (since !== null && t < since) || (until !== null && t >= until);
  const received = parseTime(record.received);
  // Older bundles named the receive-time range since/until.
  if (outside(received, parseTime(query.received_since ?? query.since), parseTime(query.received_until ?? query.until))) {
    return "the event's receive time is outside the bundle's query";
  }
  if (outside(parseTime(event.occurred_at), parseTime(query.occurred_since), parseTime(query.occurred_until))) {
    return "the event's occurred time is outside the bundle's query";
  }
  return null;
}

/**
 * Verifies one event line against the checkpoint. Returns {index, checks,
 * steps, error}; `error` is the first failed check's detail.
 */
async function verifyEventLine(v, cp) {
  const checks = [];
  const steps = [];
  const pass = (label, detail) => checks.push({ label, ok: true, detail });
  const fail = (label, detail) => {
    checks.push({ label, ok: false, detail });
    return { index: v.index, checks, steps, error: detail };
  };
  const allowed = new Set(['type', 'index', 'leaf', 'leaf_hash', 'event', 'salt', 'inclusion_proof']);
  const extra = Object.keys(v).filter((k) => !allowed.has(k));
  if (extra.length) return fail('fields', `malformed event line: unknown field(s) ${extra.join(', ')}`);
  if (!Number.isSafeInteger(v.index) || v.index < 0) return fail('fields', 'malformed event line: index is not a leaf index');
  if (typeof v.leaf !== 'string') return fail('fields', 'malformed event line: leaf is not a string');
  if (typeof v.leaf_hash !== 'string') return fail('fields', 'malformed event line: leaf_hash is not a string');
  if (!v.event || typeof v.event !== 'object' || Array.isArray(v.event)) return fail('fields', 'malformed event line: event is not an object');
  if (typeof v.salt !== 'string') return fail('fields', 'malformed event line: salt is not a string');
  const proofList = v.inclusion_proof === undefined || v.inclusion_proof === null ? [] : v.inclusion_proof;
  if (!Array.isArray(proofList)) return fail('fields', 'malformed event line: inclusion_proof is not a list');

  let salt;
  try {
    salt = /^[0-9a-f]{64}$/.test(v.salt) ? fromHex(v.salt) : null;
  } catch {
    salt = null;
  }
  if (!salt) return fail('salt', 'salt: not 32 bytes of lowercase hex');
  let canonical;
  try {
    canonical = canonicalJson(v.event);
  } catch (e) {
    return fail('event', `event cannot be canonicalised: ${e.message}`);
  }
  const leaf = decodeLeafRecord(utf8(v.leaf));
  if (!leaf.record || leaf.problems.length) return fail('leaf', `leaf is malformed: ${leaf.problems.join('; ')}`);
  const computed = await eventCommitment(salt, utf8(canonical));
  if (toHex(computed) !== leaf.record.commitment) {
    return fail('commitment', `the commitment recomputed from event and salt (${toHex(computed)}) is not the leaf's (${leaf.record.commitment}): event, salt or leaf was altered`);
  }
  pass('commitment', `SHA-256("${COMMITMENT_DOMAIN}" || 0x00 || salt || event) = ${toHex(computed)}, the leaf's commitment`);
  const lh = await leafHash(utf8(v.leaf));
  let stated;
  try {
    stated = fromBase64(v.leaf_hash, 'leaf_hash');
  } catch (e) {
    return fail('leaf hash', `leaf_hash: ${e.message}`);
  }
  if (!bytesEqual(lh, stated)) return fail('leaf hash', 'leaf_hash is not the hash of the leaf');
  pass('leaf hash', `SHA-256(0x00 || leaf) = ${toBase64(lh)}`);
  if (BigInt(v.index) >= cp.size) {
    return fail('inclusion', `index ${v.index} is not in the checkpoint's tree of size ${cp.size}`);
  }
  let path;
  try {
    path = proofList.map((h, i) => {
      const b = fromBase64(h, `inclusion_proof[${i}]`);
      if (b.length !== 32) throw new Error(`inclusion_proof[${i}] is ${b.length} bytes, not 32`);
      return b;
    });
  } catch (e) {
    return fail('inclusion', `inclusion_proof: ${e.message}`);
  }
  try {
    const root = await rootFromInclusionProof(v.index, cp.size, lh, path, steps);
    if (!bytesEqual(root, cp.rootHash)) {
      return fail('inclusion', `inclusion proof of leaf ${v.index} does not lead to the signed root`);
    }
  } catch (e) {
    return fail('inclusion', `inclusion proof of leaf ${v.index} does not lead to the signed root: ${e.message}`);
  }
  pass('inclusion', `leaf ${v.index} leads to the checkpoint root in ${steps.length} step(s)`);
  return { index: v.index, checks, steps, error: null, leafRecord: leaf.record, event: v.event };
}

function parseLine(text) {
  try {
    return { value: JSON.parse(text) };
  } catch (e) {
    return { error: `not JSON: ${e.message}` };
  }
}

/**
 * Verifies an NDJSON evidence bundle with the given parsed verifier keys.
 * With `requireEveryKey` (as `veritrail verify-bundle` does), each key
 * must have signed the checkpoint; otherwise one log signature by a known
 * key suffices and none may be bad (so witness keys may be among `keys`).
 * Returns {ok, error, failedLine, header, checkpoint, signatures, lines,
 * count, headerKeys}: `lines` has one entry per event line {line, index,
 * ok, error, checks, steps, event, received}; `headerKeys` tells whether
 * the bundle's own (untrusted) key list names the same keys; `error` is
 * "line N: what failed" for the first failure (line 0: the file as a
 * whole). Never throws on bad input.
 */
export async function verifyEvidenceBundle(text, keys, { requireEveryKey = false } = {}) {
  const report = { ok: false, error: null, failedLine: null, header: null, checkpoint: null, signatures: [], lines: [], count: 0, headerKeys: null };
  const failAt = (line, message) => {
    if (report.error === null) {
      report.error = line ? `line ${line}: ${message}` : message;
      report.failedLine = line;
    }
    return report;
  };
  if (typeof text !== 'string' || text.length === 0) return failAt(1, 'the file is empty');
  const body = text.endsWith('\n') ? text.slice(0, -1) : text;
  const rows = body.split('\n');
  const first = parseLine(rows[0]);
  if (first.error) return failAt(1, first.error);
  const h = first.value;
  if (!h || h.type !== BUNDLE_TYPE || h.version !== 1) return failAt(1, `not a ${BUNDLE_TYPE} version 1 header`);
  report.header = h;
  if (typeof h.origin !== 'string') return failAt(1, 'origin is missing');
  if (typeof h.checkpoint !== 'string') return failAt(1, 'checkpoint is missing');
  if (!keys.length) return failAt(1, 'no verifier key given: the bundle\u2019s own copy of the keys is never trusted');
  let note;
  try {
    note = await checkCheckpoint(h.checkpoint, keys, { requireEveryKey });
  } catch (e) {
    return failAt(1, `checkpoint is not a signed note: ${e.message}`);
  }
  report.signatures = note.signatures;
  if (note.unsigned) return failAt(1, note.error);
  if (!note.ok) return failAt(1, `checkpoint signature does not verify: ${note.error}`);
  const listed = Array.isArray(h.verifier_keys) ? h.verifier_keys.filter((v) => typeof v === 'string').map((v) => v.trim()) : [];
  const given = keys.map((k) => k.vkey).filter(Boolean);
  report.headerKeys = { listed, matches: given.length > 0 && listed.length > 0 && listed.every((v) => given.includes(v)) };
  const cp = note.checkpoint;
  report.checkpoint = cp;
  if (cp.origin !== h.origin) return failAt(1, `the checkpoint is for origin "${cp.origin}", the header says "${h.origin}"`);
  const seen = new Set();
  let ended = false;
  for (let i = 1; i < rows.length; i++) {
    const n = i + 1;
    const row = rows[i];
    if (ended) return failAt(n, 'content after the end line');
    if (row === '') return failAt(n, 'an empty line');
    const parsed = parseLine(row);
    if (parsed.error) {
      report.lines.push({ line: n, index: null, ok: false, error: parsed.error, checks: [], steps: [] });
      failAt(n, parsed.error);
      continue;
    }
    const v = parsed.value;
    if (v && v.type === 'event') {
      const r = await verifyEventLine(v, cp);
      let error = r.error;
      if (!error) {
        const mismatch = queryMismatch(v.event, r.leafRecord, h.query);
        if (mismatch) error = mismatch;
        else if (seen.has(v.index)) error = `leaf ${v.index} appears twice`;
        if (error) r.checks.push({ label: 'query', ok: false, detail: error });
        else r.checks.push({ label: 'query', ok: true, detail: 'the event answers the bundle\u2019s query' });
      }
      seen.add(v.index);
      report.lines.push({
        line: n, index: r.index, ok: !error, error, checks: r.checks, steps: r.steps, event: v.event,
        received: r.leafRecord ? r.leafRecord.received : null,
      });
      if (error) failAt(n, error);
    } else if (v && v.type === 'end') {
      if (!Number.isSafeInteger(v.events) || v.events < 0) return failAt(n, 'end line without an event count');
      const have = report.lines.length;
      if (v.events !== have) {
        return failAt(n, `the end line counts ${v.events} events, the bundle has ${have}: events were added or removed`);
      }
      ended = true;
    } else {
      return failAt(n, 'a line of unknown type');
    }
  }
  report.count = report.lines.length;
  if (!ended) return failAt(0, 'the bundle has no end line: it is truncated');
  report.ok = report.error === null;
  return report;
}

/**
 * Verifies what GET /v1/events/{index} answered: the checkpoint is signed
 * by every one of `keys` (the log's keys; a log signature missing or bad
 * fails), the commitment recomputed from event and salt is the leaf's,
 * the leaf hash is the leaf's, and the audit path leads from it at
 * `index` to the checkpoint root. Returns {ok, error, checks, steps,
 * computedRoot, leafHash, checkpoint, signatures}; never throws on bad
 * input. `error` names the first check that failed.
 */
export async function verifyAuditedEvent(body, keys) {
  const checks = [];
  const steps = [];
  const report = { ok: false, error: null, checks, steps, computedRoot: null, leafHash: null, checkpoint: null, signatures: [] };
  const pass = (label, detail) => checks.push({ label, ok: true, detail });
  const fail = (label, detail) => {
    checks.push({ label, ok: false, detail });
    if (report.error === null) report.error = `${label}: ${detail}`;
  };
  const proof = body && body.inclusion_proof;
  if (!body || typeof body.checkpoint !== 'string' || !proof) {
    fail('checkpoint', 'no checkpoint covers this event yet; reload in a second');
    return report;
  }
  // 1. Signatures: every log key must have signed the checkpoint.
  let cp = null;
  try {
    const note = await checkCheckpoint(body.checkpoint, keys);
    report.signatures = note.signatures;
    cp = note.checkpoint;
    const missing = keys.filter((k) => !note.signatures.some((s) => s.status === 'verified' && s.name === k.name && s.keyIdHex === k.keyIdHex));
    if (!note.ok) fail('checkpoint signatures', note.error);
    else if (missing.length) fail('checkpoint signatures', `not signed by the log key ${missing.map((k) => `${k.name} (${k.typeName}, ${k.keyIdHex})`).join(', ')}`);
    else pass('checkpoint signatures', `verified with the log's ${keys.length} key(s): ${note.signatures.filter((s) => s.status === 'verified').map((s) => `${s.name} (${s.typeName})`).join(', ')}`);
  } catch (e) {
    fail('checkpoint signatures', `the checkpoint is not a signed note: ${e.message}`);
  }
  report.checkpoint = cp;
  // 2. Commitment: event and salt open the leaf's commitment.
  let record = null;
  if (typeof body.leaf === 'string') {
    const leaf = decodeLeafRecord(utf8(body.leaf));
    if (leaf.record && leaf.problems.length === 0) record = leaf.record;
    else fail('leaf', `leaf is malformed: ${leaf.problems.join('; ')}`);
  } else {
    fail('leaf', 'the answer has no leaf');
  }
  if (record) {
    let salt = null;
    if (typeof body.salt === 'string' && /^[0-9a-f]{64}$/.test(body.salt)) salt = fromHex(body.salt);
    if (!salt) {
      fail('commitment', 'salt is not 32 bytes of lowercase hex');
    } else {
      try {
        const computed = toHex(await eventCommitment(salt, utf8(canonicalJson(body.event))));
        if (computed === record.commitment) pass('commitment', `SHA-256("${COMMITMENT_DOMAIN}" || 0x00 || salt || event) = ${computed}, the leaf's commitment`);
        else fail('commitment', `the commitment recomputed from event and salt (${computed}) is not the leaf's (${record.commitment}): event, salt or leaf was altered`);
      } catch (e) {
        fail('commitment', `event cannot be canonicalised: ${e.message}`);
      }
    }
  }
  // 3. Leaf hash.
  let lh = null;
  if (typeof body.leaf === 'string') {
    lh = await leafHash(utf8(body.leaf));
    report.leafHash = lh;
    let stated = null;
    try {
      stated = fromBase64(String(proof.leaf_hash), 'leaf_hash');
    } catch {
      stated = null;
    }
    if (stated && bytesEqual(stated, lh)) pass('leaf hash', `SHA-256(0x00 || leaf) = ${toBase64(lh)}`);
    else fail('leaf hash', `leaf hash does not match leaf: SHA-256(0x00 || leaf) is ${toBase64(lh)}, the proof says ${proof.leaf_hash}`);
  }
  // 4. Audit path to the signed root.
  if (cp && lh) {
    try {
      if (BigInt(proof.tree_size) !== cp.size) throw new Error(`the proof is for tree size ${proof.tree_size}, the checkpoint has ${cp.size}`);
      if (BigInt(proof.leaf_index) !== BigInt(body.index)) throw new Error(`the proof is for leaf ${proof.leaf_index}, not ${body.index}`);
      const path = (proof.audit_path || []).map((h, i) => {
        const b = fromBase64(h, `audit path hash ${i + 1}`);
        if (b.length !== 32) throw new Error(`audit path hash ${i + 1} is ${b.length} bytes, not 32`);
        return b;
      });
      report.computedRoot = await rootFromInclusionProof(BigInt(body.index), cp.size, lh, path, steps);
      if (bytesEqual(report.computedRoot, cp.rootHash)) pass('audit path', `leaf ${body.index} leads to the checkpoint root in ${steps.length} step(s)`);
      else fail('audit path', 'audit path does not lead to the checkpoint root');
    } catch (e) {
      fail('audit path', e.message);
    }
  }
  report.ok = report.error === null && checks.some((c) => c.label === 'audit path' && c.ok);
  return report;
}
