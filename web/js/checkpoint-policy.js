// The checkpoint-acceptance policy, mirroring src/note/policy.rs: when a
// signed checkpoint is trusted. Both are tested on the same vectors
// (tests/vectors/checkpoint-policy.json, tests/js/checkpoint-policy.test.mjs).
// The rules, in the order they are checked:
//   malformed              the note is a signed note and its text a checkpoint;
//   origin_mismatch        every log key is named after the checkpoint's origin;
//   bad_log_signature      a signature by a log key verifies;
//   missing_log_signature  at least logQuorum of the log keys signed (all by default);
//   bad_cosignature        a cosignature by a configured witness verifies;
//   too_few_cosignatures   at least witnessQuorum of the witnesses cosigned
//                          (unknown keys' cosignatures are ignored);
//   origin_changed, smaller_than_known, root_differs_at_known_size
//                          against a known checkpoint: same log, never
//                          smaller, no other root at the same size.
// A signature this browser cannot check (Ed25519 without WebCrypto support)
// counts as absent, never as verified.
//
// Pure: no DOM, no network. Invariant: ok is true only if every rule passed;
// otherwise `rule` names the one that failed.

import { bytesEqual } from './b64.js';
import {
  checkNote, NoteError, parseCheckpoint, parseNote, verifySignature, SIG_COSIGNATURE_V1,
} from './note.js';

export const RULES = [
  'malformed', 'origin_mismatch', 'bad_log_signature', 'missing_log_signature', 'bad_cosignature',
  'too_few_cosignatures', 'origin_changed', 'smaller_than_known', 'root_differs_at_known_size',
];

function reject(rule, error, extra = {}) {
  return { ok: false, rule, error, ...extra };
}

function findSignature(note, key) {
  return note.signatures.find((s) => s.name === key.name && s.keyId === key.keyId) || null;
}

/**
 * The rules between a checkpoint and the one known before it
 * ({origin, size: BigInt, rootHash: Uint8Array}). Returns null when they
 * hold, else {ok: false, rule, error}.
 */
export function checkAgainstKnown(checkpoint, known) {
  if (checkpoint.origin !== known.origin) {
    return reject('origin_changed', `the known checkpoint is for "${known.origin}", this one for "${checkpoint.origin}"`);
  }
  if (checkpoint.size < known.size) {
    return reject('smaller_than_known', `size ${checkpoint.size} is smaller than the known size ${known.size}`);
  }
  if (checkpoint.size === known.size && !bytesEqual(checkpoint.rootHash, known.rootHash)) {
    return reject('root_differs_at_known_size', `two checkpoints of size ${checkpoint.size} with different roots`);
  }
  return null;
}

/**
 * Checks a signed checkpoint note against the policy {logKeys, logQuorum?,
 * witnessKeys?, witnessQuorum?, keysNamedByOrigin? (default true: the
 * origin_mismatch rule)} (parsed verifier keys, see parseVkey) and an
 * optional known checkpoint. Returns {ok: true, checkpoint, logSignatures:
 * [log key index], cosignatures: [{witness, timestamp}]} or {ok: false,
 * rule, error, checkpoint?}. Never throws on bad input.
 */
export async function checkCheckpointPolicy(msg, policy, known = null) {
  const logKeys = policy.logKeys || [];
  const logQuorum = policy.logQuorum ?? logKeys.length;
  const witnessKeys = policy.witnessKeys || [];
  const witnessQuorum = policy.witnessQuorum ?? 0;
  let note;
  let checkpoint;
  try {
    note = parseNote(msg);
    checkpoint = parseCheckpoint(note.text);
  } catch (e) {
    if (!(e instanceof NoteError)) throw e;
    return reject('malformed', e.message);
  }
  // c2sp.org/tlog-checkpoint: the log's key name is the origin.
  const foreign = policy.keysNamedByOrigin === false ? null : logKeys.find((k) => k.name !== checkpoint.origin);
  if (foreign) {
    return reject('origin_mismatch', `the checkpoint's origin is "${checkpoint.origin}", but log key ${foreign.vkey} is for "${foreign.name}"`, { checkpoint });
  }
  const logSignatures = [];
  let firstMissing = null;
  for (const [i, key] of logKeys.entries()) {
    const sig = findSignature(note, key);
    const res = sig ? await verifySignature(key, sig, note.text) : null;
    if (res && res.ok) {
      logSignatures.push(i);
    } else if (res && !res.unsupported) {
      return reject('bad_log_signature', `the signature by log key ${key.vkey} does not verify${res.reason ? `: ${res.reason}` : ''}`, { checkpoint });
    } else if (firstMissing === null) {
      firstMissing = i;
    }
  }
  if (logSignatures.length < logQuorum) {
    const none = logKeys[firstMissing];
    return reject('missing_log_signature', `${logSignatures.length} of the required ${logQuorum} log signatures${none ? `; none by log key ${none.vkey}` : ''}`, { checkpoint });
  }
  const cosignatures = [];
  const missing = [];
  for (const [i, key] of witnessKeys.entries()) {
    const sig = findSignature(note, key);
    const res = sig ? await verifySignature(key, sig, note.text) : null;
    if (res && res.ok) {
      cosignatures.push({ witness: i, timestamp: res.timestamp });
    } else if (res && !res.unsupported) {
      return reject('bad_cosignature', `the cosignature by witness ${key.vkey} does not verify${res.reason ? `: ${res.reason}` : ''}`, { checkpoint });
    } else {
      missing.push(key.name);
    }
  }
  if (cosignatures.length < witnessQuorum) {
    return reject('too_few_cosignatures', `${cosignatures.length} of the required ${witnessQuorum} witness cosignatures; missing: ${missing.join(', ')}`, { checkpoint });
  }
  if (known) {
    const broken = checkAgainstKnown(checkpoint, known);
    if (broken) return { ...broken, checkpoint };
  }
  return { ok: true, checkpoint, logSignatures, cosignatures };
}

/**
 * The console's checkpoint check: `keys` may mix log keys (0x01, 0x02) and
 * witness keys (0x04), and keys of other logs. The log keys named after the
 * checkpoint's origin are this log's (all given log keys, when none is
 * named so); one of their signatures suffices (a
 * browser without Ed25519 still checks ECDSA), witnesses are listed but not
 * required. With `requireEveryKey` (as `veritrail verify-bundle` does),
 * every given key must have signed instead: each log key, whatever its
 * name, and each witness. Returns {ok, error, rule, checkpoint, signatures,
 * text, witnesses, unsigned}: `signatures` is checkNote's per-signature
 * report, for display; `unsigned` lists the given keys that did not sign
 * when that is why the check failed.
 */
export async function checkCheckpoint(msg, keys, { requireEveryKey = false } = {}) {
  const report = await checkNote(msg, keys);
  let origin = null;
  try {
    origin = parseCheckpoint(report.text).origin;
  } catch (e) {
    if (!(e instanceof NoteError)) throw e;
  }
  // Some logs do not name their key after their origin (Rekor's checkpoints
  // say "Rekor", its key is "rekor.sigstore.dev"): when no given key is
  // named after the origin, every given log key counts as the log's.
  const signing = keys.filter((k) => k.type !== SIG_COSIGNATURE_V1);
  const named = signing.filter((k) => origin === null || k.name === origin);
  const logKeys = named.length > 0 ? named : signing;
  const witnessKeys = keys.filter((k) => k.type === SIG_COSIGNATURE_V1);
  const verdict = await checkCheckpointPolicy(msg, requireEveryKey
    ? { logKeys: signing, witnessKeys, witnessQuorum: witnessKeys.length, keysNamedByOrigin: false }
    : { logKeys, logQuorum: 1, witnessKeys, witnessQuorum: 0, keysNamedByOrigin: named.length > 0 });
  const witnesses = report.signatures.filter((s) => s.status === 'verified' && s.type === SIG_COSIGNATURE_V1);
  const checkpoint = verdict.checkpoint || null;
  if (verdict.ok && report.ok) return { ...report, ok: true, error: null, rule: null, checkpoint, witnesses };
  if (verdict.ok) {
    // signed-note: a bad signature by any known key (here, of another log) rejects the note.
    const bad = report.signatures.find((s) => s.status === 'invalid');
    const rule = bad && bad.type === SIG_COSIGNATURE_V1 ? 'bad_cosignature' : 'bad_log_signature';
    return { ...report, ok: false, rule, checkpoint, witnesses };
  }
  if (requireEveryKey && !report.error && ['missing_log_signature', 'too_few_cosignatures'].includes(verdict.rule)) {
    const signed = (k) => report.signatures.some((s) => s.status === 'verified' && s.name === k.name && s.keyIdHex === k.keyIdHex);
    const unsigned = keys.filter((k) => !signed(k));
    const error = `the checkpoint is not signed by the given key ${unsigned.map((k) => `${k.name}+${k.keyIdHex}`).join(', ')}`;
    return { ...report, ok: false, error, rule: verdict.rule, checkpoint, witnesses, unsigned };
  }
  // A bad signature is the more serious finding, so checkNote's error comes first.
  let error = report.error || verdict.error;
  if (!report.error && verdict.rule === 'missing_log_signature') error = 'no log signature verifies (only witness cosignatures did)';
  return { ...report, ok: false, error, rule: verdict.rule, checkpoint: verdict.rule === 'malformed' ? null : checkpoint, witnesses };
}
