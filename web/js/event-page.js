// The event detail page: GET /v1/events/{index} with the session's key,
// then every claim checked here — the checkpoint's signatures against the
// log's published keys (GET /v1/log), the commitment recomputed from the
// event and its salt, the leaf hash and the Merkle path. An erased event
// (410) is shown with when, why and by whom.
//
// The page reads as an auditor asks: what happened (who, what, whose data,
// when, why, outcome, where, and the event's context as fields), then the
// verification in one plain paragraph, with the hash-level steps folded.
// The log's keys come from the server unless the auditor pastes keys they
// trust (kept in localStorage); the page says which, and says plainly when
// no witness has cosigned the checkpoint.

import { authFetch, errorFrom, getLog, vkeysFromLog } from './api.js';
import { toBase64 } from './b64.js';
import { verifyAuditedEvent } from './evidence-bundle.js';
import { parseVkey } from './note.js';
import { getKey, wireKeyPanel } from './session-key.js';
import { clear, code, el, ident, labelCells, showVerdict, storage } from './ui.js';

const TRUSTED_KEYS = 'veritrail.trustedKeys';

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

/** `context` as readable label/value pairs; nested values as compact JSON. */
function contextFacts(ctx, prefix = '') {
  if (!ctx || typeof ctx !== 'object') return [];
  return Object.entries(ctx).flatMap(([k, v]) => {
    const label = `${prefix}${k.replace(/_/g, ' ')}`;
    if (v && typeof v === 'object' && !Array.isArray(v) && prefix === '') return contextFacts(v, `${label} › `);
    return fact(label, typeof v === 'string' ? v : JSON.stringify(v));
  });
}

/** Links to the log's own records about this event and its subject. */
function relatedLinks(body) {
  const ev = body.event || {};
  const q = (params) => `auditor.html?${new URLSearchParams(params)}`;
  const links = [];
  if (ev.subject) {
    links.push(el('li', {}, el('a', { href: q({ subject: ev.subject, app: 'veritrail' }) }, `Who searched, read or exported ${ev.subject}’s data (the log’s audit records)`)));
    links.push(el('li', {}, el('a', { href: q({ subject: ev.subject }) }, `Everything else about ${ev.subject}`)));
  }
  links.push(el('li', {}, el('a', { href: q({ action: 'audit.read', app: 'veritrail' }) }, 'Reads of single events')));
  links.push(el('li', {}, el('a', { href: q({ action: 'admin.erasure' }) }, 'Erasures')));
  links.push(el('li', {}, el('a', { href: q({ outcome: 'denied', ...(ev.subject ? { subject: ev.subject } : {}) }) }, 'Denied accesses (alerts)')));
  return el('ul', { id: 'related-links', class: 'link-list' }, links);
}

function renderEvent(body) {
  const ev = body.event || {};
  const out = clear($('event-body'));
  const actor = ev.actor ? `${ev.actor.id} (${ev.actor.type})` : null;
  out.append(el('dl', { class: 'facts', id: 'event-facts' },
    fact('Who', actor),
    fact('Did what', ev.action),
    fact('To what', ev.resource ? `${ev.resource.type} ${ev.resource.id}` : null),
    fact('Whose data', ev.subject || 'no data subject named'),
    fact('When', ev.occurred_at),
    fact('Why (purpose)', ev.purpose),
    fact('Outcome', ev.outcome ? el('span', { class: { denied: 'outcome-denied', failure: 'outcome-failure' }[ev.outcome] || null }, ev.outcome) : null),
    fact('From where', ev.actor && ev.actor.ip ? ev.actor.ip : 'not recorded'),
    ...contextFacts(ev.context),
    fact('Written by app', body.audit_record ? el('span', {}, body.app, ' ', el('span', { class: 'badge' }, 'the log’s own record')) : body.app),
    fact('Received by the log', body.received),
    fact('Position in the log', `leaf ${body.index}`)));
  out.append(el('h3', {}, 'Related'), relatedLinks(body));
  out.append(el('details', { class: 'hash-details' }, el('summary', {}, 'Salt, commitment, leaf and the raw event'),
    el('dl', { class: 'facts' },
      fact('Salt', code(body.salt || '')),
      fact('Commitment', code(body.commitment || '')),
      fact('Leaf', code(body.leaf || '')),
      fact('Leaf hash', code(body.leaf_hash || ''))),
    el('h3', {}, 'Event (JSON)'), el('pre', { class: 'json', tabindex: '0', 'aria-label': 'Event as JSON' }, JSON.stringify(ev, null, 2)),
    body.checkpoint ? [el('h3', {}, 'Checkpoint'), el('pre', { class: 'json', tabindex: '0', 'aria-label': 'Signed checkpoint' }, body.checkpoint)] : null));
}

/** The keys to verify with: the auditor's own, or the server's. */
async function verifierKeys() {
  const own = (storage.get(TRUSTED_KEYS) || []).filter((k) => typeof k === 'string' && k.trim());
  if (own.length) return { keys: await Promise.all(own.map(parseVkey)), from: 'own' };
  return { keys: await Promise.all(vkeysFromLog(await getLog()).map(parseVkey)), from: 'server' };
}

/** Plain words on whose keys were used and whether a witness cosigned. */
function trustNote(report, from) {
  const box = $('trust-note');
  const unknown = report.signatures.filter((s) => s.status !== 'verified').length;
  const parts = [];
  if (from === 'server') parts.push('The log’s keys were taken from this server itself, so a server that lies could also lie about its keys. Paste keys you obtained independently below to rule that out.');
  else parts.push('Checked with the keys you pasted, not the server’s.');
  if (unknown === 0) parts.push('No independent witness has co-signed this checkpoint: only the log operator vouches for it.');
  else parts.push(`The checkpoint carries ${unknown} further signature(s), such as witness cosignatures, not checked here (no key for them was given).`);
  if (from === 'server' || unknown === 0) showVerdict(box, 'warn', from === 'server' ? 'Keys from the server itself' : 'No witness cosignature', parts.join(' '));
  else showVerdict(box, 'ok', 'Your own keys', parts.join(' '));
  box.dataset.keysFrom = from;
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
  clear($('trust-note'));
  let keys;
  let from;
  let res;
  try {
    ({ keys, from } = await verifierKeys());
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
    const signed = report.signatures.filter((s) => s.status === 'verified').length;
    showVerdict(verdict, 'ok', 'Inclusion proof verified in this browser',
      `The log holds this event exactly as shown: it is entry ${index} of ${report.checkpoint.size}, and its content and salt reproduce the entry's commitment. The operator's ${signed} signature(s) on that checkpoint were checked in this browser at ${new Date().toISOString().slice(11, 16)} UTC, with ${from === 'own' ? 'the keys you pasted' : 'the keys this server publishes'}.${audit !== null ? ` This read was recorded in the log as event ${audit}.` : ''}`);
    trustNote(report, from);
  } else {
    showVerdict(verdict, 'fail', 'Verification FAILED', report.error);
  }
  $('event-checks').append(checksList(report.checks));
  const steps = stepsTable(report);
  const sigs = signatureTable(report.signatures);
  if (steps || sigs) $('event-checks').append(el('details', { class: 'hash-details' }, el('summary', {}, 'Hash-level steps and signatures'), steps, sigs));
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
  $('trusted-keys').value = (storage.get(TRUSTED_KEYS) || []).join('\n');
  if ($('trusted-keys').value) $('own-keys').open = true;
  $('use-trusted-keys').addEventListener('click', async () => {
    const lines = $('trusted-keys').value.split('\n').map((l) => l.trim()).filter(Boolean);
    try {
      await Promise.all(lines.map(parseVkey));
    } catch (e) {
      showVerdict($('trust-note'), 'fail', 'Not a verifier key', e.message);
      return;
    }
    storage.set(TRUSTED_KEYS, lines);
    const i = $('open-index').value.trim();
    if (/^\d+$/.test(i)) load(i);
  });
  $('clear-trusted-keys').addEventListener('click', () => {
    storage.set(TRUSTED_KEYS, []);
    $('trusted-keys').value = '';
    const i = $('open-index').value.trim();
    if (/^\d+$/.test(i)) load(i);
  });
  const index = indexFromUrl();
  document.body.dataset.ready = 'true';
  if (index !== null) load(index);
}

init();
