// Evidence formats a person brings to the verify page, and their complete
// verification: receipts (Veritrail JSON), c2sp.org/tlog-proof@v1 files,
// and consistency between two checkpoints.
//
// Pure: no DOM, no network (a consistency proof is passed in, not
// fetched). Every verify* function returns a report
// {ok, error, checks: [{label, ok, detail}], steps, ...} and never throws
// on bad evidence: `error` names the first check that failed, in the
// order a person would read them (signatures, sizes, leaf, path).

import { bytesEqual, fromBase64, fromHex, parseDecimalU64, parseJsonExact, toBase64, toU64, utf8 } from './b64.js';
import { leafHash, MerkleError, rootFromInclusionProof, verifyConsistency } from './merkle.js';
import { checkCheckpoint } from './checkpoint-policy.js';
import { NoteError } from './note.js';

export class EvidenceError extends Error {
  constructor(message) {
    super(message);
    this.name = 'EvidenceError';
  }
}

export const TLOG_PROOF_HEADER = 'c2sp.org/tlog-proof@v1';

function hashField(value, what) {
  let h;
  try {
    h = fromBase64(value, what);
  } catch (e) {
    throw new EvidenceError(e.message);
  }
  if (h.length !== 32) throw new EvidenceError(`${what} is ${h.length} bytes, not 32`);
  return h;
}

/**
 * Parses a receipt: {"leaf_index","tree_size","leaf_hash","audit_path",
 * "checkpoint", optional "leaf"} (the leaf record as a JSON string).
 */
export function parseReceipt(text) {
  let obj;
  try {
    obj = typeof text === 'string' ? parseJsonExact(text) : text;
  } catch (e) {
    throw new EvidenceError(`receipt is not valid JSON (${e.message})`);
  }
  if (!obj || typeof obj !== 'object' || Array.isArray(obj)) throw new EvidenceError('receipt is not a JSON object');
  const need = (k) => {
    if (!(k in obj)) throw new EvidenceError(`receipt has no "${k}" field`);
    return obj[k];
  };
  let leafIndex;
  let treeSize;
  try {
    leafIndex = toU64(need('leaf_index'), 'receipt leaf_index');
    treeSize = toU64(need('tree_size'), 'receipt tree_size');
  } catch (e) {
    throw new EvidenceError(e.message);
  }
  const leafHashValue = hashField(need('leaf_hash'), 'receipt leaf_hash');
  const path = need('audit_path');
  if (!Array.isArray(path)) throw new EvidenceError('receipt audit_path is not a list');
  const auditPath = path.map((p, i) => hashField(p, `audit_path[${i}]`));
  const checkpoint = need('checkpoint');
  if (typeof checkpoint !== 'string') throw new EvidenceError('receipt checkpoint is not a string');
  let leaf = null;
  if ('leaf' in obj && obj.leaf !== null) {
    if (typeof obj.leaf !== 'string') throw new EvidenceError('receipt leaf is not a string (it must be the leaf record JSON, as a string)');
    leaf = obj.leaf;
  }
  return { leafIndex, treeSize, leafHash: leafHashValue, auditPath, checkpoint, leaf };
}

/** Parses a c2sp.org/tlog-proof@v1 file (specs §5.4). */
export function parseTlogProof(text) {
  if (typeof text !== 'string') throw new EvidenceError('tlog-proof is not text');
  if (text.includes('\r')) throw new EvidenceError('tlog-proof contains a carriage return; only \\n line endings are allowed');
  const lines = text.split('\n');
  let i = 0;
  if (lines[i++] !== TLOG_PROOF_HEADER) throw new EvidenceError(`tlog-proof does not start with "${TLOG_PROOF_HEADER}"`);
  let extra = null;
  if (lines[i] !== undefined && lines[i].startsWith('extra ')) {
    try {
      extra = fromBase64(lines[i].slice(6), 'tlog-proof extra data');
    } catch (e) {
      throw new EvidenceError(e.message);
    }
    i++;
  }
  const indexLine = lines[i++];
  if (indexLine === undefined || !indexLine.startsWith('index ')) throw new EvidenceError('tlog-proof has no "index <n>" line');
  let index;
  try {
    index = parseDecimalU64(indexLine.slice(6), 'tlog-proof index');
  } catch (e) {
    throw new EvidenceError(e.message);
  }
  const path = [];
  while (i < lines.length && lines[i] !== '') {
    path.push(hashField(lines[i], `tlog-proof path line ${path.length + 1}`));
    i++;
  }
  if (i >= lines.length) throw new EvidenceError('tlog-proof has no blank line before the checkpoint');
  const checkpoint = lines.slice(i + 1).join('\n');
  if (checkpoint.trim() === '') throw new EvidenceError('tlog-proof has no checkpoint after the blank line');
  return { extra, index, path, checkpoint };
}

/**
 * Reads what a person pasted as "the leaf": a leaf record (JSON text; its
 * hash is SHA-256(0x00 || UTF-8 bytes)), or a leaf hash in base64 or hex.
 * Returns {kind: 'record'|'hash', record?, hash}.
 */
export async function readLeafInput(input) {
  const t = String(input).trim();
  if (t === '') throw new EvidenceError('no leaf given: paste the leaf record or its leaf hash');
  if (t.startsWith('{')) {
    return { kind: 'record', record: t, hash: await leafHash(utf8(t)) };
  }
  if (/^[0-9a-fA-F]{64}$/.test(t)) return { kind: 'hash', hash: fromHex(t) };
  try {
    const h = fromBase64(t);
    if (h.length === 32) return { kind: 'hash', hash: h };
  } catch {
    // fall through
  }
  throw new EvidenceError('the leaf is neither a leaf record (JSON) nor a 32-byte leaf hash (base64 or hex)');
}

function messageOf(e) {
  if (e instanceof MerkleError || e instanceof NoteError || e instanceof EvidenceError) return e.message;
  return `unexpected error: ${e && e.message ? e.message : e}`;
}

/**
 * Verifies that a leaf is included in a signed checkpoint.
 * input: {leafIndex, treeSize (optional; else the checkpoint's), leafHash,
 * leaf (optional record text), auditPath, checkpoint (note text)}.
 */
export async function verifyInclusionEvidence(input, keys) {
  const checks = [];
  const steps = [];
  const fail = (label, detail) => checks.push({ label, ok: false, detail });
  const pass = (label, detail) => checks.push({ label, ok: true, detail });
  let cp = null;
  let note = null;
  try {
    note = await checkCheckpoint(input.checkpoint, keys);
    cp = note.checkpoint;
    if (note.ok) {
      const names = note.signatures.filter((s) => s.status === 'verified').map((s) => s.name);
      pass('checkpoint signatures', `verified: ${names.join(', ')}`);
    } else {
      fail('checkpoint signatures', note.error);
    }
  } catch (e) {
    fail('checkpoint signatures', messageOf(e));
  }
  let size = input.treeSize;
  if (cp) {
    if (size === undefined || size === null) {
      size = cp.size;
    } else if (toU64(size) !== cp.size) {
      fail('tree size', `receipt tree size ${size} does not match the checkpoint tree size ${cp.size}`);
    } else {
      pass('tree size', `receipt and checkpoint both have tree size ${cp.size}`);
    }
  }
  let lh = input.leafHash;
  if (input.leaf !== undefined && input.leaf !== null) {
    const computed = await leafHash(utf8(input.leaf));
    if (lh && !bytesEqual(computed, lh)) {
      fail('leaf hash', `leaf hash does not match leaf: SHA-256(0x00 || leaf) is ${toBase64(computed)}, the receipt says ${toBase64(lh)}`);
    } else {
      pass('leaf hash', `SHA-256(0x00 || leaf) = ${toBase64(computed)}`);
    }
    if (!lh) lh = computed;
  }
  let computedRoot = null;
  if (cp && lh) {
    try {
      computedRoot = await rootFromInclusionProof(input.leafIndex, size, lh, input.auditPath, steps);
      if (bytesEqual(computedRoot, cp.rootHash)) {
        pass('audit path', `leaf ${input.leafIndex} leads to the checkpoint root in ${steps.length} step(s)`);
      } else {
        fail('audit path', 'audit path does not lead to the checkpoint root');
      }
    } catch (e) {
      fail('audit path', messageOf(e));
    }
  }
  const first = checks.find((c) => !c.ok);
  return {
    ok: !first && checks.some((c) => c.label === 'audit path'),
    error: first ? first.detail : checks.some((c) => c.label === 'audit path') ? null : 'nothing to verify',
    checks,
    steps,
    computedRoot,
    leafHash: lh,
    checkpoint: cp,
    note,
  };
}

/**
 * Verifies that `newNote` extends `oldNote`: both signed by a known log
 * key, same origin, and the consistency proof (RFC 9162 §2.1.4.2) links
 * the two roots. `proof` is a list of 32-byte hashes (ignored when the
 * sizes are equal or the old tree is empty).
 */
export async function verifyConsistencyEvidence(oldNote, newNote, proof, keys) {
  const checks = [];
  const steps = [];
  const reports = [];
  for (const [label, text] of [['earlier checkpoint', oldNote], ['current checkpoint', newNote]]) {
    try {
      const r = await checkCheckpoint(text, keys);
      reports.push(r);
      if (r.ok) checks.push({ label, ok: true, detail: `size ${r.checkpoint.size}, signed by ${r.signatures.filter((s) => s.status === 'verified').map((s) => s.name).join(', ')}` });
      else checks.push({ label, ok: false, detail: `${label}: ${r.error}` });
    } catch (e) {
      reports.push(null);
      checks.push({ label, ok: false, detail: `${label}: ${messageOf(e)}` });
    }
  }
  const [a, b] = reports.map((r) => (r ? r.checkpoint : null));
  if (a && b) {
    if (a.origin !== b.origin) {
      checks.push({ label: 'origin', ok: false, detail: `the checkpoints are from different logs ("${a.origin}" and "${b.origin}")` });
    } else if (a.size > b.size) {
      checks.push({ label: 'sizes', ok: false, detail: `the earlier checkpoint (size ${a.size}) is larger than the current one (size ${b.size})` });
    } else if (a.size === 0n) {
      checks.push({ label: 'consistency', ok: true, detail: 'the earlier tree is empty: every tree extends it' });
    } else {
      try {
        await verifyConsistency(a.size, b.size, a.rootHash, b.rootHash, a.size === b.size ? [] : proof, steps);
        checks.push({ label: 'consistency', ok: true, detail: a.size === b.size ? `same size ${a.size}, same root` : `the tree of size ${b.size} extends the tree of size ${a.size} (${proof.length} proof hashes)` });
      } catch (e) {
        checks.push({ label: 'consistency', ok: false, detail: messageOf(e) });
      }
    }
  }
  const first = checks.find((c) => !c.ok);
  const done = checks.some((c) => c.label === 'consistency');
  return { ok: !first && done, error: first ? first.detail : done ? null : 'nothing to verify', checks, steps, first: a, second: b };
}
