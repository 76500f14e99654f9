// The verify page: wires the forms to the pure verifiers (note.js,
// evidence.js) and shows each check and each Merkle step. Prefills keys
// and the latest checkpoint from the log when it is reachable; everything
// pasted stays in the browser.

import { getCheckpoint, getConsistencyProof, getLog, vkeysFromLog } from './api.js';
import { fromBase64, toBase64 } from './b64.js';
import {
  parseReceipt, parseTlogProof, readLeafInput, verifyConsistencyEvidence, verifyInclusionEvidence,
} from './evidence.js';
import { renderBundleReport } from './bundle-view.js';
import { verifyEvidenceBundle } from './evidence-bundle.js';
import { checkCheckpoint } from './checkpoint-policy.js';
import { bundleFromReport } from './report.js';
import {
  ed25519Supported, ED25519_UNSUPPORTED, parseCheckpoint, parseNote, parseVkey,
} from './note.js';
import { clear, code, el, formatInt, ident, labelCells, showVerdict, storage, wireFileInput, SAVED_CHECKPOINT_KEY } from './ui.js';

const $ = (id) => document.getElementById(id);

/**
 * Tidies a pasted note: a textarea may lose the final newline or gain
 * trailing blank lines, neither of which is signed. Nothing else changes.
 */
export function normalizeNote(text) {
  return `${text.replace(/[\n ]+$/, '')}\n`;
}

async function readKeys() {
  const keys = [];
  const problems = [];
  $('vkeys').value.split('\n').forEach((line, i) => {
    const t = line.trim();
    if (t && !t.startsWith('#')) keys.push({ line: i + 1, text: t });
  });
  const parsed = [];
  for (const k of keys) {
    try {
      parsed.push(await parseVkey(k.text));
    } catch (e) {
      problems.push(`line ${k.line}: ${e.message}`);
    }
  }
  const status = $('vkeys-status');
  if (problems.length) {
    status.textContent = `Ignored ${problems.length} unusable key(s): ${problems.join('; ')}`;
    status.className = 'hint status-fail';
  } else {
    status.textContent = parsed.length
      ? `${parsed.length} key(s): ${parsed.map((k) => `${k.name} (${k.typeName}, ${k.keyIdHex})`).join(', ')}`
      : 'No verifier keys: paste the log\u2019s keys to verify anything.';
    status.className = parsed.length ? 'hint' : 'hint status-fail';
  }
  return parsed;
}

function signatureTable(signatures) {
  const label = {
    verified: 'verified',
    invalid: 'does not verify',
    'unknown-key': 'unknown key (ignored)',
    duplicate: 'duplicate (ignored)',
    unsupported: ED25519_UNSUPPORTED,
  };
  const rows = signatures.map((s) => el('tr', {},
    el('td', {}, ident(s.name)),
    el('td', { class: 'nowrap' }, ident(s.keyIdHex)),
    el('td', {}, (s.typeName || '—') + (s.timestamp !== undefined ? `, time ${s.timestamp} (${new Date(Number(s.timestamp) * 1000).toISOString()})` : '')),
    el('td', { class: `status-${s.status}` }, label[s.status])));
  return el('div', { class: 'table-wrap' }, labelCells(el('table', {},
    el('caption', { class: 'muted caption-left' }, 'Signature lines'),
    el('thead', {}, el('tr', {}, ['Signer', 'Key ID', 'Kind', 'Result'].map((h) => el('th', { scope: 'col' }, h)))),
    el('tbody', {}, rows))));
}

function checkpointFacts(cp) {
  return el('dl', { class: 'facts' },
    el('dt', {}, 'Origin'), el('dd', {}, cp.origin),
    el('dt', {}, 'Tree size'), el('dd', { 'data-field': 'size' }, formatInt(cp.size)),
    el('dt', {}, 'Root hash'), el('dd', {}, code(toBase64(cp.rootHash))),
    cp.extensions.length ? [el('dt', {}, 'Extension lines'), el('dd', {}, cp.extensions.join(' · '))] : null);
}

function checksList(checks) {
  return el('ol', { class: 'checks' }, checks.map((c) => el('li', { class: c.ok ? 'status-ok' : 'status-fail' },
    el('span', { 'aria-hidden': 'true' }, c.ok ? '\u2714 ' : '\u2718 '),
    el('span', { class: 'visually-hidden' }, c.ok ? 'passed: ' : 'failed: '),
    el('strong', {}, `${c.label}: `), c.detail)));
}

function stepsTable(report) {
  if (!report.leafHash || !report.checkpoint) return null;
  const rows = [el('tr', {},
    el('td', { class: 'num' }, '0'), el('td', { class: 'num' }, '0'), el('td', {}, 'leaf'), el('td', {}, '—'),
    el('td', {}, code(toBase64(report.leafHash))))];
  for (const s of report.steps) {
    rows.push(el('tr', {},
      el('td', { class: 'num' }, String(s.step)),
      el('td', { class: 'num' }, String(s.level)),
      el('td', {}, s.side === 'left' ? 'proof hash on the left' : 'proof hash on the right'),
      el('td', {}, code(toBase64(s.sibling))),
      el('td', {}, code(toBase64(s.result)))));
  }
  const match = report.computedRoot && toBase64(report.computedRoot) === toBase64(report.checkpoint.rootHash);
  return el('div', {},
    el('h3', {}, 'Merkle path, step by step'),
    el('p', { class: 'hint' }, 'Each step hashes 0x01 || left || right with SHA-256 (RFC 9162 §2.1.3.2). Level 0 holds the leaves; a proof hash at level k covers 2^k leaves.'),
    el('div', { class: 'table-wrap' }, labelCells(el('table', {},
      el('thead', {}, el('tr', {}, ['Step', 'Proof hash level', 'Position', 'Proof hash', 'Result'].map((h) => el('th', { scope: 'col' }, h)))),
      el('tbody', {}, rows)))),
    el('dl', { class: 'facts facts-spaced' },
      el('dt', {}, 'Computed root'), el('dd', {}, report.computedRoot ? code(toBase64(report.computedRoot)) : '—'),
      el('dt', {}, 'Checkpoint root'), el('dd', {}, code(toBase64(report.checkpoint.rootHash))),
      el('dt', {}, 'Match'), el('dd', { class: match ? 'status-ok' : 'status-fail' }, match ? 'yes' : 'no')));
}

function renderInclusion(container, report, what) {
  clear(container);
  const box = el('div');
  container.append(box);
  if (report.ok) {
    showVerdict(box, 'ok', `${what} verifies`, `The leaf is included in the checkpoint of size ${formatInt(report.checkpoint.size)} signed by ${report.note.signatures.filter((s) => s.status === 'verified').map((s) => s.name).join(', ')}.`);
  } else {
    showVerdict(box, 'fail', `${what} does not verify`, report.error);
  }
  container.append(checksList(report.checks));
  const steps = stepsTable(report);
  if (steps) container.append(steps);
  if (report.note && report.note.signatures) container.append(signatureTable(report.note.signatures));
}

function renderError(container, title, message) {
  clear(container);
  const box = el('div');
  container.append(box);
  showVerdict(box, 'fail', title, message);
}

// ---- section 1: checkpoint -------------------------------------------------

async function verifyCheckpointSection() {
  const out = $('checkpoint-result');
  const keys = await readKeys();
  const text = $('checkpoint').value;
  if (!text.trim()) return renderError(out, 'No checkpoint', 'Paste a signed checkpoint or load the latest from the log.');
  let report;
  try {
    report = await checkCheckpoint(normalizeNote(text), keys);
  } catch (e) {
    return renderError(out, 'Note does not verify', e.message);
  }
  clear(out);
  const box = el('div');
  out.append(box);
  const signers = report.signatures.filter((s) => s.status === 'verified').map((s) => s.name).join(', ');
  if (report.ok) {
    const w = report.witnesses.length;
    showVerdict(box, 'ok', 'Checkpoint verifies',
      `Signed by ${signers}${w ? ` (${w} witness cosignature${w > 1 ? 's' : ''})` : ''}.`);
  } else if (!report.checkpoint && signers && !report.signatures.some((s) => s.status === 'invalid')) {
    // The signatures are fine but the text is some other signed note.
    showVerdict(box, 'ok', 'Signed note verifies',
      `Signed by ${signers}. Its text is not a checkpoint (${report.error}), so it cannot anchor proofs.`);
  } else {
    showVerdict(box, 'fail', report.checkpoint ? 'Checkpoint does not verify' : 'Note does not verify', report.error);
  }
  if (report.checkpoint) out.append(checkpointFacts(report.checkpoint));
  out.append(signatureTable(report.signatures));
  return report;
}

async function loadFromLog({ keysToo }) {
  const status = $('vkeys-status');
  try {
    if (keysToo) {
      const log = await getLog();
      const vkeys = vkeysFromLog(log);
      if (vkeys.length) {
        $('vkeys').value = vkeys.join('\n');
        const warn = $('keys-source');
        showVerdict(warn, 'warn', 'These keys came from the server you are checking',
          'A server that lies could also lie about its keys, so checks with them show only that its answers agree with each other. Replace them with keys you obtained independently (from the operator, a witness, or an earlier copy).');
        warn.dataset.source = 'server';
      }
    }
    const cp = await getCheckpoint();
    $('checkpoint').value = cp.note;
    await readKeys();
    return true;
  } catch (e) {
    status.textContent = `Could not load from the log (${e.message}). Paste the keys and checkpoint instead.`;
    status.className = 'hint';
    return false;
  }
}

async function rememberCheckpoint() {
  const report = await verifyCheckpointSection();
  const box = $('checkpoint-result').querySelector('[data-verdict]');
  if (!report || !report.ok) {
    if (box) box.append(el('p', {}, 'Not remembered: only a checkpoint that verifies can be remembered.'));
    return;
  }
  storage.set(SAVED_CHECKPOINT_KEY, { note: normalizeNote($('checkpoint').value), savedAtMs: Date.now() });
  showEarlier();
  box.append(el('p', {}, `Remembered in this browser (size ${formatInt(report.checkpoint.size)}). Use section 4 later to check the log only grew.`));
}

// ---- sections 2 and 3: inclusion -------------------------------------------

async function verifyReceiptSection() {
  const out = $('receipt-result');
  const keys = await readKeys();
  let receipt;
  try {
    receipt = parseReceipt($('receipt').value);
  } catch (e) {
    return renderError(out, 'Receipt does not verify', e.message);
  }
  const report = await verifyInclusionEvidence({ ...receipt, checkpoint: normalizeNote(receipt.checkpoint) }, keys);
  renderInclusion(out, report, 'Receipt');
}

async function verifyTlogProofSection() {
  const out = $('tlogproof-result');
  const keys = await readKeys();
  let proof;
  let leaf;
  try {
    proof = parseTlogProof(normalizeNote($('tlogproof').value));
    leaf = await readLeafInput($('tlogproof-leaf').value);
  } catch (e) {
    return renderError(out, 'tlog-proof does not verify', e.message);
  }
  const report = await verifyInclusionEvidence({
    leafIndex: proof.index,
    treeSize: null,
    leafHash: leaf.hash,
    auditPath: proof.path,
    checkpoint: proof.checkpoint,
  }, keys);
  report.checks.unshift({ label: 'leaf', ok: true, detail: leaf.kind === 'record' ? `leaf hash SHA-256(0x00 || record) = ${toBase64(leaf.hash)}` : `leaf hash given: ${toBase64(leaf.hash)}` });
  renderInclusion(out, report, 'tlog-proof');
}

// ---- section 4: consistency ------------------------------------------------

function showEarlier() {
  const saved = storage.get(SAVED_CHECKPOINT_KEY);
  const status = $('earlier-status');
  if (saved && typeof saved.note === 'string') {
    $('earlier').value = saved.note;
    status.textContent = `Filled in with the checkpoint you remembered on ${new Date(saved.savedAtMs).toLocaleString()}.`;
  } else {
    status.textContent = 'No remembered checkpoint in this browser: paste an earlier one, or remember one in section 1.';
  }
}

function sizeOf(noteText) {
  return parseCheckpoint(parseNote(noteText).text).size;
}

async function verifyConsistencySection() {
  const out = $('consistency-result');
  const keys = await readKeys();
  const earlier = $('earlier').value;
  const current = $('checkpoint').value;
  if (!earlier.trim()) return renderError(out, 'Nothing to compare', 'Paste an earlier checkpoint (or remember one in section 1 first).');
  if (!current.trim()) return renderError(out, 'Nothing to compare', 'Section 1 has no current checkpoint.');
  const a = normalizeNote(earlier);
  const b = normalizeNote(current);
  let proof = [];
  let source = 'none needed';
  try {
    const m = sizeOf(a);
    const n = sizeOf(b);
    const pasted = $('consistency-proof').value.split('\n').map((l) => l.trim()).filter(Boolean);
    if (pasted.length) {
      proof = pasted.map((h, i) => fromBase64(h, `consistency proof line ${i + 1}`));
      source = 'pasted';
    } else if (m > 0n && m < n) {
      const res = await getConsistencyProof(m, n);
      if (String(res.first) !== String(m) || String(res.second) !== String(n)) {
        throw new Error(`the log answered for sizes ${res.first} → ${res.second}, not ${m} → ${n}`);
      }
      proof = (res.consistency || []).map((h, i) => fromBase64(h, `consistency proof hash ${i + 1}`));
      source = 'fetched from the log';
    }
  } catch (e) {
    return renderError(out, 'Consistency not shown', e.message);
  }
  const report = await verifyConsistencyEvidence(a, b, proof, keys);
  clear(out);
  const box = el('div');
  out.append(box);
  if (report.ok) {
    showVerdict(box, 'ok', 'The log only grew', `The checkpoint of size ${formatInt(report.second.size)} extends the one of size ${formatInt(report.first.size)}.`);
  } else {
    showVerdict(box, 'fail', 'Consistency does not verify', report.error);
  }
  out.append(checksList(report.checks));
  out.append(el('p', { class: 'hint' }, `Consistency proof: ${proof.length} hash(es), ${source}.`));
  if (report.steps.length) {
    out.append(el('div', { class: 'table-wrap' }, labelCells(el('table', {},
      el('thead', {}, el('tr', {}, ['Step', 'Position', 'Proof hash', 'Earlier root so far', 'Current root so far'].map((h) => el('th', { scope: 'col' }, h)))),
      el('tbody', {}, report.steps.map((s) => el('tr', {},
        el('td', { class: 'num' }, String(s.step)),
        el('td', {}, s.side === 'left' ? 'left' : 'right'),
        el('td', {}, code(toBase64(s.sibling))),
        el('td', {}, code(toBase64(s.first))),
        el('td', {}, code(toBase64(s.second))))))))));
  }
}

// ---- section 5: evidence bundle -------------------------------------------

async function verifyBundleSection() {
  const out = $('bundle-result');
  const keys = await readKeys();
  let text = $('bundle').value;
  if (!text.trim()) return renderError(out, 'No bundle', 'Paste an evidence bundle or load it from a file.');
  // An HTML evidence report verifies as the bundle it embeds.
  let fromReport = false;
  try {
    const embedded = bundleFromReport(text);
    if (embedded !== null) [text, fromReport] = [embedded, true];
  } catch (e) {
    return renderError(out, 'Evidence report is damaged', e.message);
  }
  const report = await verifyEvidenceBundle(text, keys);
  renderBundleReport(out, report);
  out.dataset.source = fromReport ? 'report' : 'bundle';
  if (fromReport) out.append(el('p', { class: 'hint' }, 'The bundle embedded in the HTML evidence report was verified; the report’s tables are a rendering of it.'));
}

// ---- wiring ----------------------------------------------------------------

function onSubmit(formId, fn) {
  $(formId).addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const button = $(formId).querySelector('button[type="submit"]');
    button.disabled = true;
    try {
      await fn();
    } catch (e) {
      renderError($(formId).nextElementSibling, 'Verification failed', `unexpected error: ${e.message}`);
    } finally {
      button.disabled = false;
    }
  });
}

async function init() {
  onSubmit('checkpoint-form', verifyCheckpointSection);
  onSubmit('receipt-form', verifyReceiptSection);
  onSubmit('tlogproof-form', verifyTlogProofSection);
  onSubmit('consistency-form', verifyConsistencySection);
  onSubmit('bundle-form', verifyBundleSection);
  $('reload-from-log').addEventListener('click', async () => {
    if (await loadFromLog({ keysToo: true })) await verifyCheckpointSection();
  });
  $('remember-checkpoint').addEventListener('click', rememberCheckpoint);
  wireFileInput($('checkpoint-file'), $('checkpoint'));
  wireFileInput($('receipt-file'), $('receipt'));
  wireFileInput($('tlogproof-file'), $('tlogproof'));
  wireFileInput($('bundle-file'), $('bundle'));
  $('vkeys').addEventListener('change', readKeys);
  // Keys the person typed or pasted are theirs: the server warning goes.
  $('vkeys').addEventListener('input', () => {
    const warn = $('keys-source');
    clear(warn);
    warn.className = '';
    delete warn.dataset.verdict;
    warn.dataset.source = 'given';
  });
  showEarlier();
  if (!(await ed25519Supported())) {
    const b = $('ed25519-banner');
    b.className = 'banner verdict-warn';
    b.textContent = `${ED25519_UNSUPPORTED}: Ed25519 signatures and witness cosignatures cannot be checked here; ECDSA signatures still are.`;
  }
  // Prefill from the log, unless the person already typed something.
  if (!$('vkeys').value.trim() && !$('checkpoint').value.trim()) {
    if (await loadFromLog({ keysToo: true })) {
      const report = await verifyCheckpointSection();
      // A remembered checkpoint is re-checked at once: the log must only have grown since.
      if (report && report.ok && $('earlier').value.trim()) await verifyConsistencySection();
    }
  }
  document.body.dataset.ready = 'true';
}

init();
