// The event detail page: GET /v1/events/{index} with the session's key,
// then every claim checked here — the checkpoint's signatures against the
// log's published keys (GET /v1/log), the commitment recomputed from the
// event and its salt, the leaf hash and the Merkle path. An erased event
// (410) is shown with when, why and by whom.

import { authFetch, errorFrom, getLog, vkeysFromLog } from './api.js';
import { toBase64 } from './b64.js';
import { verifyAuditedEvent } from './evidence-bundle.js';
import { parseVkey } from './note.js';
import { getKey, wireKeyPanel } from './session-key.js';
import { clear, code, el, ident, labelCells, showVerdict } from './ui.js';

const $ = (id) => document.getElementById(id);

function indexFromUrl() {
  const v = new URLSearchParams(location.search).get('index');
  return v !== null && /^\d+$/.test(v) ? v : null;
}

function checksList(checks) {
  return el('ol', { class: 'checks' }, checks.map((c) => el('li', { class: c.ok ? 'status-ok' : 'status-fail' },
    el('span', { 'aria-hidden': 'true' }, c.ok ? '\u2714 ' : '\u2718 '),
    el('span', { class: 'visually-hidden' }, c.ok ? 'passed: ' : 'failed: '),
    el('strong', {}, `${c.label}: `), c.detail)));
}

function stepsTable(report) {
  if (!report.steps.length && !report.computedRoot) return null;
  const rows = report.steps.map((s) => el('tr', {},
    el('td', { class: 'num' }, String(s.step)),
    el('td', { class: 'num' }, String(s.level)),
    el('td', {}, s.side === 'left' ? 'proof hash on the left' : 'proof hash on the right'),
    el('td', {}, code(toBase64(s.sibling))),
    el('td', {}, code(toBase64(s.result)))));
  return el('div', {},
    el('h3', {}, 'Merkle path, step by step'),
    el('p', { class: 'hint' }, 'Each step hashes 0x01 || left || right with SHA-256 (RFC 9162 §2.1.3.2), starting from the leaf hash.'),
    el('div', { class: 'table-wrap' }, labelCells(el('table', {},
      el('thead', {}, el('tr', {}, ['Step', 'Level', 'Position', 'Proof hash', 'Result'].map((h) => el('th', { scope: 'col' }, h)))),
      el('tbody', {}, rows)))));
}

function signatureTable(signatures) {
  if (!signatures.length) return null;
  return el('div', { class: 'table-wrap' }, labelCells(el('table', {},
    el('caption', { class: 'muted caption-left' }, 'Checkpoint signatures'),
    el('thead', {}, el('tr', {}, ['Signer', 'Key ID', 'Kind', 'Result'].map((h) => el('th', { scope: 'col' }, h)))),
    el('tbody', {}, signatures.map((s) => el('tr', {},
      el('td', {}, ident(s.name)),
      el('td', { class: 'nowrap' }, ident(s.keyIdHex)),
      el('td', {}, s.typeName || '—'),
      el('td', { class: `status-${s.status}` }, s.status)))))));
}

function fact(label, value) {
  return [el('dt', {}, label), el('dd', {}, value === undefined || value === null || value === '' ? '—' : value)];
}

function renderEvent(body) {
  const ev = body.event || {};
  const out = clear($('event-body'));
  out.append(el('dl', { class: 'facts', id: 'event-facts' },
    fact('Index', String(body.index)),
    fact('App', body.app),
    fact('Received', body.received),
    fact('Occurred', ev.occurred_at),
    fact('Actor', ev.actor ? `${ev.actor.id} (${ev.actor.type})` : null),
    fact('Action', ev.action),
    fact('Subject', ev.subject),
    fact('Resource', ev.resource ? `${ev.resource.type}/${ev.resource.id}` : null),
    fact('Purpose', ev.purpose),
    fact('Outcome', ev.outcome),
    fact('Salt', code(body.salt || '')),
    fact('Commitment', code(body.commitment || '')),
    fact('Leaf', code(body.leaf || '')),
    fact('Leaf hash', code(body.leaf_hash || ''))));
  out.append(el('h3', {}, 'Event (JSON)'), el('pre', { class: 'json', tabindex: '0', 'aria-label': 'Event as JSON' }, JSON.stringify(ev, null, 2)));
  if (body.checkpoint) out.append(el('h3', {}, 'Checkpoint'), el('pre', { class: 'json', tabindex: '0', 'aria-label': 'Signed checkpoint' }, body.checkpoint));
}

function renderErased(index, body) {
  const e = (body && body.erased) || {};
  const verdict = $('event-verdict');
  showVerdict(verdict, 'warn', `Event ${index} was erased (410 Gone)`,
    `Erased at ${e.erased_at || '?'} by ${e.by || '?'} (${e.cause || 'erasure'}): ${e.reason || 'no reason given'}. Its body and salt no longer exist; its leaf and every proof stay valid.`);
  verdict.dataset.erased = 'true';
  clear($('event-checks'));
  const out = clear($('event-body'));
  out.append(el('dl', { class: 'facts', id: 'erased-facts' },
    fact('Index', String(index)), fact('Erased at', e.erased_at), fact('Cause', e.cause), fact('Reason', e.reason), fact('By', e.by)));
}

async function load(index) {
  const verdict = $('event-verdict');
  delete verdict.dataset.erased;
  $('event-title').textContent = `Event ${index}`;
  $('open-index').value = index;
  const key = getKey();
  if (!key) {
    showVerdict(verdict, 'fail', 'No API key', 'Enter an auditor or admin key above to open this event.');
    return;
  }
  showVerdict(verdict, 'busy', 'Loading and verifying…');
  clear($('event-checks'));
  let keys;
  let res;
  try {
    const log = await getLog();
    keys = await Promise.all(vkeysFromLog(log).map(parseVkey));
    res = await authFetch(`v1/events/${encodeURIComponent(index)}`, key);
  } catch (e) {
    showVerdict(verdict, 'fail', 'Could not load the event', e.message);
    return;
  }
  if (res.status === 410) {
    renderErased(index, await res.json().catch(() => null));
    return;
  }
  if (!res.ok) {
    const err = await errorFrom(res, `v1/events/${index}`);
    showVerdict(verdict, 'fail', 'Could not load the event', err.message);
    verdict.dataset.status = String(res.status);
    clear($('event-body')).append(el('p', { class: 'muted' }, 'Nothing loaded.'));
    return;
  }
  let body;
  try {
    body = await res.json();
  } catch {
    showVerdict(verdict, 'fail', 'Could not load the event', 'the answer is not JSON');
    return;
  }
  const audit = res.headers.get('veritrail-audit-index');
  renderEvent(body);
  const report = await verifyAuditedEvent(body, keys);
  if (report.ok) {
    showVerdict(verdict, 'ok', 'Inclusion proof verified in this browser',
      `Event ${index} is leaf ${index} of the checkpoint of size ${report.checkpoint.size}, signed by every key the log publishes; its body and salt open the leaf's commitment.${audit !== null ? ` This read was recorded in the log as event ${audit}.` : ''}`);
  } else {
    showVerdict(verdict, 'fail', 'Verification FAILED', report.error);
  }
  $('event-checks').append(checksList(report.checks));
  const steps = stepsTable(report);
  if (steps) $('event-checks').append(steps);
  const sigs = signatureTable(report.signatures);
  if (sigs) $('event-checks').append(sigs);
}

function init() {
  wireKeyPanel((k) => {
    const i = $('open-index').value.trim();
    if (k && /^\d+$/.test(i)) load(i);
  });
  $('open-form').addEventListener('submit', (ev) => {
    ev.preventDefault();
    const i = $('open-index').value.trim();
    if (!/^\d+$/.test(i)) {
      showVerdict($('event-verdict'), 'fail', 'Not a leaf index', `"${i}" is not a number`);
      return;
    }
    history.replaceState(null, '', `?index=${i}`);
    load(i);
  });
  const index = indexFromUrl();
  document.body.dataset.ready = 'true';
  if (index !== null) load(index);
}

init();
