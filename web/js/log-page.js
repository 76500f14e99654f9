// The public log page: fetches the log's state every few seconds, verifies
// the checkpoint's signatures in the browser against the published keys,
// checks each new checkpoint is consistent with the previous one it saw,
// draws growth, and lists the newest leaves (public commitments).

import { getBytes, getCheckpoint, getConsistencyProof, getJson, getLog, vkeysFromLog, ApiError } from './api.js';
import { fromBase64, toBase64, toHex } from './b64.js';
import { decodeLeafRecord, lastBundles, parseEntryBundle } from './bundle.js';
import { renderGrowthChart } from './chart.js';
import { leafHash, verifyConsistency, verifyInclusion } from './merkle.js';
import { checkCheckpoint } from './checkpoint-policy.js';
import { ed25519Supported, ED25519_UNSUPPORTED, parseVkey } from './note.js';
import { ago, clear, code, el, formatInt, ident, labelCells, showVerdict, storage, SAVED_CHECKPOINT_KEY } from './ui.js';

const REFRESH_MS = 3000;
const HISTORY_REFRESH_MS = 60000;
const MAX_SAMPLES = 100;
const LEAVES_SHOWN = 10;

const $ = (id) => document.getElementById(id);

const state = {
  paused: false,
  timer: null,
  samples: [],
  history: [], // [{t, size}] from /v1/growth: before this page's own samples
  historyAt: 0,
  lastNote: null,
  verified: null, // {origin, size, rootHash, note}: the last checkpoint that verified
  leavesSize: null,
  publishedAtMs: null,
};

function banner(message, kind = 'fail', source = '') {
  const b = $('banner');
  clear(b);
  b.className = 'banner';
  b.dataset.source = source;
  if (message) {
    b.className = `banner verdict-${kind}`;
    b.append(message);
  }
}

async function loadKeys(vkeys) {
  const keys = [];
  const problems = [];
  for (const v of vkeys) {
    try {
      keys.push(await parseVkey(v));
    } catch (e) {
      problems.push(e.message);
    }
  }
  return { keys, problems };
}

// Set when this page load remembered the keys for the first time, so the
// refreshes that follow do not speak of "earlier visits" that never were.
let firstVisit = false;

function renderKeys(keys, problems, origin) {
  const list = clear($('keys'));
  for (const k of keys) {
    list.append(el('li', {}, code(k.vkey), el('span', { class: 'muted' }, ` — ${k.typeName}, key ID ${k.keyIdHex}`)));
  }
  for (const p of problems) list.append(el('li', { class: 'status-fail' }, p));
  // Trust on first use: remember the keys per origin and warn when they change.
  const pinKey = `veritrail.pinnedKeys.${origin}`;
  const now = keys.map((k) => k.vkey).sort();
  const pinned = storage.get(pinKey);
  if (!pinned || (firstVisit && JSON.stringify(pinned) === JSON.stringify(now))) {
    if (!pinned) storage.set(pinKey, now);
    firstVisit = true;
    $('keys-note').textContent = 'First visit from this browser: these keys, as this server gave them, are now remembered here; you will be warned if they ever change. Compare their key IDs with a copy from the operator or a witness to know they are the right ones.';
  } else if (JSON.stringify(pinned) !== JSON.stringify(now)) {
    $('keys-note').textContent = '';
    banner(`Warning: the log's verifier keys differ from the ones this browser saw before (${pinned.join(', ')}).`, 'warn');
  } else {
    $('keys-note').textContent = 'Same keys as this browser remembered on an earlier visit (they still came from this server).';
  }
}

function renderSignatures(report) {
  const rows = clear($('sig-rows'));
  for (const s of report.signatures || []) {
    const label = {
      verified: 'verified',
      invalid: 'does not verify',
      'unknown-key': 'unknown key (ignored)',
      duplicate: 'duplicate (ignored)',
      unsupported: ED25519_UNSUPPORTED,
    }[s.status];
    let kind = s.typeName || '—';
    if (s.timestamp !== undefined) kind += `, cosigned ${new Date(Number(s.timestamp) * 1000).toISOString()}`;
    rows.append(el('tr', {},
      el('td', {}, ident(s.name)),
      el('td', { class: 'nowrap' }, ident(s.keyIdHex)),
      el('td', {}, kind),
      el('td', { class: `status-${s.status}` }, label)));
  }
  labelCells(rows.closest('table'));
  const box = $('sig-verdict');
  if (report.ok) {
    const log = report.signatures.filter((s) => s.status === 'verified' && s.type !== 0x04).map((s) => s.typeName);
    const wit = report.witnesses ? report.witnesses.length : 0;
    const unknown = report.signatures.filter((s) => s.status === 'unknown-key').length;
    const at = new Date().toISOString().slice(11, 16);
    const words = ['no', 'one', 'two', 'three', 'four'];
    showVerdict(box, 'ok', 'Checkpoint signatures verify',
      `The operator\u2019s ${words[log.length] || log.length} signature${log.length === 1 ? '' : 's'} (${log.join(' and ')}) were checked in this browser at ${at} UTC.${unknown ? ` ${unknown} further signature${unknown > 1 ? 's' : ''} from keys the log does not publish (not checked).` : ''}`);
    // The plain summary at the top, and what independence is missing.
    const c = report.checkpoint;
    const summary = $('trust-summary');
    const witnessText = wit ? `${wit} independent witness${wit > 1 ? 'es have' : ' has'} co-signed it.` : 'No independent witness has co-signed yet.';
    showVerdict(summary, wit ? 'ok' : 'warn', `${formatInt(c.size)} entries. The operator\u2019s ${words[log.length] || log.length} signature${log.length === 1 ? ' was' : 's were'} checked in this browser at ${at} UTC. ${witnessText}`,
      'The log\u2019s keys came from this server itself: compare their key IDs (below) with a copy from the operator or a witness, or check on the Verify page with keys you trust.');
    summary.dataset.witnesses = String(wit);
  } else {
    showVerdict(box, 'fail', 'Checkpoint does not verify', report.error);
  }
}

async function checkConsistency(prev, cur) {
  const line = $('consistency-line');
  if (!prev || prev.origin !== cur.origin) return;
  if (prev.size === cur.size) {
    if (toHex(prev.rootHash) !== toHex(cur.rootHash)) {
      line.textContent = `ALARM: two checkpoints of size ${cur.size} with different roots (split view).`;
      line.className = 'status-fail';
      banner(line.textContent);
    }
    return;
  }
  if (prev.size === 0n) return;
  try {
    const p = await getConsistencyProof(prev.size, cur.size);
    const proof = (p.consistency || []).map((h) => fromBase64(h, 'consistency proof hash'));
    await verifyConsistency(prev.size, cur.size, prev.rootHash, cur.rootHash, proof);
    line.textContent = `Consistent with the checkpoint this page saw before (size ${formatInt(prev.size)} → ${formatInt(cur.size)}).`;
    line.className = 'status-ok';
  } catch (e) {
    line.textContent = `ALARM: checkpoint of size ${cur.size} is not shown consistent with size ${prev.size}: ${e.message}`;
    line.className = 'status-fail';
    banner(line.textContent);
  }
}

/**
 * Spot check: the newest leaf from the entry bundle is proven included in
 * the verified checkpoint, so the bundle and the signed root agree.
 */
async function proveNewestLeaf(leaf, checkpoint) {
  const size = checkpoint.size;
  const p = await getJson(`v1/proof/inclusion?index=${leaf.index}&tree_size=${size}`);
  const path = (p.audit_path || []).map((h) => fromBase64(h, 'audit path hash'));
  await verifyInclusion(leaf.index, size, await leafHash(leaf.bytes), path, checkpoint.rootHash);
}

async function renderLeaves(size) {
  const rows = $('leaf-rows');
  const note = $('leaves-note');
  if (size === 0n) {
    clear(rows);
    note.textContent = 'The log is empty.';
    return;
  }
  const leaves = [];
  for (const b of lastBundles(size, LEAVES_SHOWN)) {
    const bytes = await getBytes(b.path);
    const entries = parseEntryBundle(bytes, b.width);
    for (let i = entries.length - 1; i >= 0 && leaves.length < LEAVES_SHOWN; i--) {
      leaves.push({ index: b.first + BigInt(i), bytes: entries[i] });
    }
  }
  clear(rows);
  for (const leaf of leaves) {
    const d = decodeLeafRecord(leaf.bytes);
    const h = await leafHash(leaf.bytes);
    const r = d.record || {};
    rows.append(el('tr', {},
      el('td', { class: 'num' }, formatInt(leaf.index)),
      el('td', {}, typeof r.received === 'string' ? r.received : '—'),
      el('td', {}, typeof r.app === 'string' ? r.app : '—'),
      el('td', {}, d.record ? code(String(r.commitment).slice(0, 16) + '…', String(r.commitment)) : el('span', { class: 'status-fail' }, d.problems.join('; '))),
      el('td', {}, code(toBase64(h).slice(0, 12) + '…', toBase64(h)))));
    if (d.record && d.problems.length) rows.lastChild.append(el('td', { class: 'status-fail' }, d.problems.join('; ')));
  }
  labelCells(rows.closest('table'));
  note.textContent = `Showing ${leaves.length} of ${formatInt(size)} leaves, read from the entry bundles of the verified checkpoint.`;
  const check = $('leaves-proof');
  try {
    await proveNewestLeaf(leaves[0], state.verified);
    check.textContent = `\u2714 The newest leaf (index ${formatInt(leaves[0].index)}) is proven included in the verified checkpoint.`;
    check.className = 'status-ok';
  } catch (e) {
    check.textContent = `\u2718 The newest leaf (index ${formatInt(leaves[0].index)}) could not be proven included in the verified checkpoint: ${e.message}`;
    check.className = 'status-fail';
  }
}

async function refresh() {
  try {
    const [log, cp] = await Promise.all([getLog(), getCheckpoint()]);
    const size = Number(log.tree_size);
    state.samples.push({ t: Date.now(), size });
    if (state.samples.length > MAX_SAMPLES) state.samples.shift();
    $('live-size').textContent = `${formatInt(log.tree_size)} entries (from /v1/log)`;
    $('live-size').dataset.size = String(log.tree_size);

    const { keys, problems } = await loadKeys(vkeysFromLog(log));
    if (state.lastNote !== cp.note) {
      renderKeys(keys, problems, log.origin);
      const report = await checkCheckpoint(cp.note, keys);
      renderSignatures(report);
      const c = report.checkpoint;
      $('origin').textContent = c ? c.origin : log.origin;
      $('tree-size').textContent = c ? formatInt(c.size) : '—';
      if (c) $('tree-size').dataset.size = String(c.size);
      clear($('root-hash')).append(c ? code(toBase64(c.rootHash)) : '—');
      state.lastNote = cp.note;
      if (report.ok && c) {
        if (c.origin !== log.origin) banner(`Checkpoint origin "${c.origin}" differs from the log's origin "${log.origin}".`, 'warn');
        const prev = state.verified;
        state.verified = { origin: c.origin, size: c.size, rootHash: c.rootHash, note: cp.note };
        await checkConsistency(prev, state.verified);
      }
    }
    if (state.verified && state.leavesSize !== state.verified.size) {
      await renderLeaves(state.verified.size);
      state.leavesSize = state.verified.size;
    }
    state.publishedAtMs = cp.publishedAtMs;
    $('checkpoint-age').textContent = cp.publishedAtMs
      ? `${ago(cp.publishedAtMs)} (${new Date(cp.publishedAtMs).toISOString()})`
      : 'unknown (the log did not say)';
    await loadHistory();
    drawChart();
    if ($('banner').dataset.source === 'fetch') banner('');
  } catch (e) {
    banner(e instanceof ApiError ? `Could not read the log: ${e.message}` : `Error: ${e.message}`, 'fail', 'fetch');
  }
}

// The log's growth before this page opened, from the receive times in its
// leaves (server clock); refreshed once a minute.
async function loadHistory() {
  if (Date.now() - state.historyAt < HISTORY_REFRESH_MS) return;
  state.historyAt = Date.now();
  const g = await getJson('v1/growth?points=48');
  state.history = g.points.map((p) => ({ t: Number(p.t_ms), size: Number(p.size) }));
}

// History up to the page's first sample, then the page's samples.
function chartSamples() {
  const first = state.samples[0];
  if (!first) return state.history;
  return [...state.history.filter((p) => p.t < first.t && p.size <= first.size), ...state.samples];
}

function drawChart() {
  const samples = chartSamples();
  const { svg, summary } = renderGrowthChart(samples, $('chart').clientWidth);
  $('chart').dataset.history = String(samples.length - state.samples.length);
  clear($('chart')).append(svg);
  $('chart-summary').textContent = summary;
}

function schedule() {
  clearTimeout(state.timer);
  if (!state.paused) state.timer = setTimeout(async () => { await refresh(); schedule(); }, REFRESH_MS);
}

function init() {
  $('refresh-toggle').addEventListener('click', () => {
    state.paused = !state.paused;
    $('refresh-toggle').setAttribute('aria-pressed', String(state.paused));
    $('refresh-toggle').textContent = state.paused ? 'Resume auto-refresh' : 'Pause auto-refresh';
    if (!state.paused) refresh();
    schedule();
  });
  $('remember').addEventListener('click', () => {
    const msg = $('remember-status');
    if (!state.verified) {
      msg.textContent = 'No verified checkpoint to remember yet.';
      return;
    }
    storage.set(SAVED_CHECKPOINT_KEY, { note: state.verified.note, savedAtMs: Date.now() });
    msg.textContent = `Remembered (size ${formatInt(state.verified.size)}). Check it later on the verify page.`;
  });
  ed25519Supported().then((ok) => {
    if (!ok) banner(`${ED25519_UNSUPPORTED}: only the ECDSA signature can be checked here.`, 'warn');
  });
  let resizeTimer = null;
  window.addEventListener('resize', () => {
    clearTimeout(resizeTimer);
    resizeTimer = setTimeout(drawChart, 100);
  });
  refresh().then(schedule);
}

init();
