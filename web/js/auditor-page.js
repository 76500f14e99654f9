// The auditor page: search (GET /v1/events, newest first, "more" follows
// the cursor), export (GET /v1/export with the same filters, downloaded as
// a file) and in-browser verification of the exported bundle against the
// log's published keys. The key comes from session-key.js.
//
// A search page examines a bounded number of candidates on the server, so
// an answer may hold fewer events than asked for (even none) and still
// carry a cursor: the page keeps asking, showing how many events it has
// examined, until the page is full, the log is exhausted, or it has asked
// MAX_ROUNDS times (then the auditor decides whether to keep searching).
// Results are facts about the query, shown neutrally: the green box is
// kept for cryptographic verdicts.

import { authFetch, authJson, errorFrom, getLog, queryString, vkeysFromLog } from './api.js';
import { renderBundleReport } from './bundle-view.js';
import { verifyEvidenceBundle } from './evidence-bundle.js';
import { parseVkey } from './note.js';
import { reportCsv, reportHtml } from './report.js';
import { getKey, keyLabel, whoAmI, wireKeyPanel } from './session-key.js';
import { clear, el, formatInt, labelCells, showSummary, showVerdict } from './ui.js';

const $ = (id) => document.getElementById(id);
const FIELDS = ['subject', 'actor', 'action', 'resource', 'app', 'purpose', 'outcome'];
const MAX_ROUNDS = 10;
const RFC3339 = /^\d{4}-\d\d-\d\dT\d\d:\d\d(:\d\d(\.\d+)?)?(Z|[+-]\d\d:\d\d)$/i;

let lastExport = null; // {text, name}
let nextCursor = null;
let currentFilters = null;
let lastTotal = null;

/** A time field as the API wants it: RFC 3339, or throws naming the field. */
export function normalizeTime(text, what) {
  const t = text.trim();
  if (!t) return '';
  if (RFC3339.test(t)) return t.toUpperCase();
  let ms = NaN;
  if (/^\d{4}-\d\d-\d\d$/.test(t)) ms = Date.parse(`${t}T00:00:00Z`);
  else if (/^\d{4}-\d\d-\d\d[T ]\d\d:\d\d(:\d\d(\.\d+)?)?$/.test(t)) ms = new Date(t.replace(' ', 'T')).getTime();
  if (Number.isNaN(ms)) throw new Error(`${what}: "${t}" is not a time (use RFC 3339, e.g. 2026-03-01T00:00:00Z)`);
  return new Date(ms).toISOString();
}

function readFilters() {
  const f = {};
  for (const name of FIELDS) f[name] = $(`f-${name}`).value.trim();
  f.since = normalizeTime($('f-occurred-since').value, 'occurred from');
  f.until = normalizeTime($('f-occurred-until').value, 'occurred before');
  f.received_since = normalizeTime($('f-since').value, 'received since');
  f.received_until = normalizeTime($('f-until').value, 'received until');
  if ($('f-include-audit').checked) f.include_audit = 'true';
  return f;
}

function needKey(box) {
  const key = getKey();
  if (!key) showVerdict(box, 'fail', 'No API key', 'Enter an auditor or admin key above first.');
  return key;
}

function showError(box, title, e) {
  showVerdict(box, 'fail', title, e.message);
  box.dataset.status = e.status ? String(e.status) : '';
}

function cell(text, cls) {
  return el('td', { class: cls || null }, text === undefined || text === null || text === '' ? '—' : String(text));
}

/** A cell whose text may wrap only after `sep` (the date before the time,
 * a resource's type before its id), never inside an identifier. */
function breakAfter(text, sep, cls) {
  if (text === undefined || text === null || text === '') return cell(text, cls);
  const parts = String(text).split(sep);
  // One child, so that a stacked cell (narrow screens: a grid) keeps the parts on one line.
  return el('td', { class: cls || null }, el('span', {}, parts.map((p, i) => (i < parts.length - 1
    ? [el('span', { class: 'nowrap' }, `${p}${sep}`), el('wbr')]
    : el('span', { class: 'nowrap' }, p))).flat()));
}

function resultRow(hit) {
  const ev = hit.event || {};
  // The actor's id whole, its type on the next line when space is short.
  const actor = ev.actor ? `${ev.actor.id}${ev.actor.type ? ` (${ev.actor.type})` : ''}` : null;
  const resource = ev.resource ? `${ev.resource.type}/${ev.resource.id}` : null;
  const outcomeClass = { denied: 'outcome-denied', failure: 'outcome-failure' }[ev.outcome] || null;
  return el('tr', { 'data-index': String(hit.index), class: hit.audit_record ? 'audit-record' : null },
    el('td', { class: 'num' }, el('a', { href: `event.html?index=${encodeURIComponent(hit.index)}` }, String(hit.index))),
    breakAfter(ev.occurred_at, 'T'),
    el('td', {}, hit.app, hit.audit_record ? [' ', el('span', { class: 'badge' }, 'log’s own record')] : null),
    breakAfter(actor, ' '),
    cell(ev.action, 'ident-cell'),
    cell(ev.subject, 'ident-cell'),
    breakAfter(resource, '/'),
    cell(ev.purpose),
    cell(ev.outcome, outcomeClass),
    breakAfter(hit.received, 'T', 'secondary-time'));
}

/** "12 of 40", "12 of at least 2,000". */
function countText(shown, total) {
  if (!total) return `${formatInt(shown)}`;
  return `${formatInt(shown)} of ${total.exact ? '' : 'at least '}${formatInt(total.count)}`;
}

async function runSearch({ more }) {
  const status = $('search-status');
  const key = needKey(status);
  if (!key) return;
  if (!more) {
    try {
      currentFilters = readFilters();
    } catch (e) {
      return showVerdict(status, 'fail', 'Search not sent', e.message);
    }
    nextCursor = null;
    lastTotal = null;
    clear($('result-rows'));
    $('results').hidden = true;
  }
  const limit = Number($('f-limit').value) || 50;
  $('more').hidden = true;
  $('keep-searching').hidden = true;
  const before = $('result-rows').children.length;
  let got = 0;
  let rounds = 0;
  let answer = null;
  let examined = null;
  do {
    const params = { ...currentFilters, limit: String(limit - got), cursor: nextCursor };
    showSummary(status, 'busy', more || rounds ? 'Searching older events…' : 'Searching…',
      examined === null ? null : `${formatInt(examined)} events examined so far, ${formatInt(before + got)} found.`);
    try {
      answer = await authJson(`v1/events${queryString(params)}`, key);
    } catch (e) {
      return showError(status, 'Search failed', e);
    }
    const events = answer.json.events || [];
    $('result-rows').append(...events.map(resultRow));
    got += events.length;
    rounds += 1;
    nextCursor = answer.json.next_cursor || null;
    examined = answer.json.examined ?? examined;
    lastTotal = answer.json.total || lastTotal;
  } while (nextCursor && got < limit && rounds < MAX_ROUNDS);
  labelCells($('results'));
  const shown = $('result-rows').children.length;
  $('results').hidden = shown === 0;
  const pageFull = got >= limit;
  $('more').hidden = !(nextCursor && pageFull);
  $('keep-searching').hidden = !(nextCursor && !pageFull);
  const recorded = answer.auditIndex !== null ? ` This search was recorded in the log as event ${answer.auditIndex}.` : '';
  const hidden = currentFilters.include_audit ? '' : ' The log’s own records of searches, reads and exports are hidden.';
  const scanned = examined !== null ? ` ${formatInt(examined)} events examined so far.` : '';
  let title;
  if (shown) title = `${countText(shown, lastTotal)} matching event(s) shown`;
  else if (nextCursor) title = 'No matching events yet';
  else title = 'No matching events';
  const partial = nextCursor && !pageFull ? ' The search stopped before reaching the oldest events; “Keep searching” goes on.' : '';
  showSummary(status, 'ok', title, `Newest first.${scanned}${partial}${hidden}${recorded}`);
  status.dataset.count = String(shown);
  status.dataset.total = lastTotal ? `${lastTotal.exact ? '' : '>='}${lastTotal.count}` : '';
}

function download(text, name, type = 'application/x-ndjson') {
  const url = URL.createObjectURL(new Blob([text], { type }));
  const a = el('a', { href: url, download: name, hidden: true });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 60000);
}

async function runExport() {
  const status = $('export-status');
  clear($('export-result'));
  $('verify-export').hidden = true;
  const key = needKey(status);
  if (!key) return;
  let filters;
  try {
    filters = readFilters();
  } catch (e) {
    return showVerdict(status, 'fail', 'Export not sent', e.message);
  }
  showSummary(status, 'busy', 'Exporting…');
  clear($('report-status'));
  clear($('report-links'));
  let text;
  let auditIndex;
  try {
    const res = await authFetch(`v1/export${queryString(filters)}`, key, { accept: 'application/x-ndjson' });
    if (!res.ok) throw await errorFrom(res, 'v1/export');
    auditIndex = res.headers.get('veritrail-audit-index');
    text = await res.text();
  } catch (e) {
    return showError(status, 'Export failed', e);
  }
  const ranAt = new Date().toISOString();
  const stamp = ranAt.replace(/[:.]/g, '-');
  const base = `veritrail-evidence-${filters.subject ? `${filters.subject.replace(/[^A-Za-z0-9._-]/g, '_')}-` : ''}${stamp}`;
  const name = `${base}.ndjson`;
  lastExport = { text, name };
  download(text, name);
  const events = Math.max(0, text.split('\n').filter(Boolean).length - 2);
  showSummary(status, 'ok', `Downloaded ${name}`, `${formatInt(events)} event line(s), ${formatInt(text.length)} bytes.${auditIndex !== null ? ` The export was recorded in the log as event ${auditIndex}.` : ''} Verifying it in this browser to write the report…`);
  $('verify-export').hidden = false;
  // The report and CSV are made from the bundle as verified here.
  let keys;
  try {
    keys = await Promise.all(vkeysFromLog(await getLog()).map(parseVkey));
  } catch (e) {
    return showVerdict($('report-status'), 'fail', 'No report', `the log's verifier keys could not be loaded: ${e.message}`);
  }
  const verification = await verifyEvidenceBundle(text, keys, { requireEveryKey: true });
  // The author as the log names the key (GET /v1/whoami), not as typed here.
  const who = await whoAmI(key);
  const meta = {
    query: verification.header ? verification.header.query : filters,
    ranAt,
    ranBy: who
      ? `${who.name} (${who.role} key ${who.id})`
      : `${keyLabel(key)} (the log did not say whose key it is)`,
    auditIndex,
    keysFrom: 'server',
    checkedAt: new Date().toISOString(),
  };
  const html = reportHtml(text, verification, keys, meta);
  const csv = reportCsv(verification);
  lastExport.report = { html, csv, name: `${base}.html`, csvName: `${base}.csv` };
  download(html, `${base}.html`, 'text/html');
  download(csv, `${base}.csv`, 'text/csv');
  const links = $('report-links');
  clear(links).append(
    el('li', {}, el('a', { href: URL.createObjectURL(new Blob([html], { type: 'text/html' })), download: `${base}.html`, id: 'report-link' }, 'Evidence report (HTML, printable; embeds the bundle)')),
    el('li', {}, el('a', { href: URL.createObjectURL(new Blob([csv], { type: 'text/csv' })), download: `${base}.csv` }, 'Events as CSV')),
    el('li', {}, el('a', { href: URL.createObjectURL(new Blob([text], { type: 'application/x-ndjson' })), download: name }, 'Evidence bundle (NDJSON)')));
  if (verification.ok) {
    showSummary($('report-status'), 'ok', 'Report, CSV and bundle downloaded', 'The report says what was verified in this browser. The keys came from the log server itself; the report says so.');
  } else {
    showVerdict($('report-status'), 'fail', 'The bundle does not verify; the report says so', verification.error);
  }
}

async function verifyExport() {
  const out = $('export-result');
  if (!lastExport) return;
  const box = el('div');
  clear(out).append(box);
  showVerdict(box, 'busy', 'Verifying…');
  let keys;
  try {
    const log = await getLog();
    keys = await Promise.all(vkeysFromLog(log).map(parseVkey));
  } catch (e) {
    return showVerdict(box, 'fail', 'Cannot verify', `the log's verifier keys could not be loaded: ${e.message}`);
  }
  renderBundleReport(out, await verifyEvidenceBundle(lastExport.text, keys, { requireEveryKey: true }));
  out.append(el('p', { class: 'hint' }, 'Checked with the keys the log publishes at /v1/log. For independence from the server, verify the file with keys obtained elsewhere (verify page, section 5, or veritrail verify-bundle).'));
}

function init() {
  wireKeyPanel(() => {
    clear($('search-status'));
  });
  $('search-form').addEventListener('submit', async (ev) => {
    ev.preventDefault();
    $('search').disabled = true;
    try {
      await runSearch({ more: false });
    } finally {
      $('search').disabled = false;
    }
  });
  $('more').addEventListener('click', () => runSearch({ more: true }));
  $('keep-searching').addEventListener('click', () => runSearch({ more: true }));
  $('export').addEventListener('click', runExport);
  $('verify-export').addEventListener('click', verifyExport);
  $('clear-search').addEventListener('click', () => {
    $('search-form').reset();
    clear($('result-rows'));
    $('results').hidden = true;
    $('more').hidden = true;
    $('keep-searching').hidden = true;
    clear($('search-status'));
  });
  // Links from other pages (an event's related records) arrive as a query string.
  const given = new URLSearchParams(location.search);
  let prefilled = false;
  for (const name of FIELDS) {
    const v = given.get(name);
    if (v) {
      $(`f-${name}`).value = v;
      prefilled = true;
    }
  }
  if (given.get('include_audit') === 'true') $('f-include-audit').checked = true;
  document.body.dataset.ready = 'true';
  if (prefilled && getKey()) runSearch({ more: false });
}

init();
