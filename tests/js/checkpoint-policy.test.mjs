// The console's checkpoint-acceptance policy (web/js/checkpoint-policy.js)
// against the vectors the Rust policy (src/note/policy.rs) is tested on:
// tests/vectors/checkpoint-policy.json. Node's own WebCrypto, no browser:
//   node --test tests/js/

import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';

import { fromBase64 } from '../../web/js/b64.js';
import { checkCheckpoint, checkCheckpointPolicy, RULES } from '../../web/js/checkpoint-policy.js';
import { parseVkey } from '../../web/js/note.js';

const here = dirname(fileURLToPath(import.meta.url));
const vectors = JSON.parse(readFileSync(join(here, '..', 'vectors', 'checkpoint-policy.json'), 'utf8'));

test('the vectors cover every rule', () => {
  const seen = new Set(vectors.cases.map((c) => c.expect));
  for (const rule of ['accept', ...RULES]) assert.ok(seen.has(rule), `no vector for ${rule}`);
});

for (const c of vectors.cases) {
  test(c.name, async () => {
    const policy = {
      logKeys: await Promise.all(c.log_keys.map(parseVkey)),
      logQuorum: c.log_quorum,
      witnessKeys: await Promise.all(c.witness_keys.map(parseVkey)),
      witnessQuorum: c.witness_quorum,
    };
    const known = c.known
      ? { origin: c.known.origin, size: BigInt(c.known.size), rootHash: fromBase64(c.known.root, 'known root') }
      : null;
    const v = await checkCheckpointPolicy(c.note, policy, known);
    assert.equal(v.ok ? 'accept' : v.rule, c.expect, v.error || '');
    if (v.ok) {
      assert.deepEqual(v.logSignatures, c.log_signatures);
      assert.deepEqual(v.cosignatures.map((s) => [s.witness, Number(s.timestamp)]), c.cosignatures);
    } else {
      assert.ok(v.error && v.error.length > 0, 'a rejection says why');
    }
  });
}

// The console's own check (checkCheckpoint) over the same signed notes: one
// log signature suffices, unless every given key must have signed (the
// auditor page and the evidence bundle verifier, as `veritrail verify-bundle`).
const vector = (name) => vectors.cases.find((c) => c.name === name);
const givenKeys = (c) => Promise.all([...c.log_keys, ...c.witness_keys].map(parseVkey));

test('requireEveryKey: every given log key and witness must have signed', async () => {
  const all = vector('two of two witnesses cosigned');
  assert.ok((await checkCheckpoint(all.note, await givenKeys(all), { requireEveryKey: true })).ok);

  const oneWitness = vector('one of two witnesses is enough for a quorum of one');
  const keys = await givenKeys(oneWitness);
  assert.ok((await checkCheckpoint(oneWitness.note, keys)).ok, 'one log signature suffices by default');
  const strict = await checkCheckpoint(oneWitness.note, keys, { requireEveryKey: true });
  assert.equal(strict.ok, false);
  const absent = keys[3];
  assert.deepEqual(strict.unsigned.map((k) => k.vkey), [absent.vkey]);
  assert.equal(strict.error, `the checkpoint is not signed by the given key ${absent.name}+${absent.keyIdHex}`);

  const oneLog = vector('a missing log signature');
  const logKeys = await givenKeys(oneLog);
  const missing = await checkCheckpoint(oneLog.note, logKeys, { requireEveryKey: true });
  assert.equal(missing.rule, 'missing_log_signature');
  assert.equal(missing.unsigned.length, 1);
  assert.ok(logKeys.some((k) => k.vkey === missing.unsigned[0].vkey));
});
