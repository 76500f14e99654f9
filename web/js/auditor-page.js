// The auditor page: search (GET /v1/events, newest first, "more" follows
// the cursor), export (GET /v1/export with the same filters, downloaded as
// a file) and in-browser verification of the exported bundle against the
// log's published keys. The key comes from session-key.js.

import { authFetch, authJson, errorFrom, getLog, queryString, vkeysFromLog } from './api.js';
import { renderBundleReport } from './bundle-view.js';
import { verifyEvidenceBundle } from './evidence-bundle.js';
import { parseVkey } from './note.js';
import { getKey, wireKeyPanel } from './session-key.js';
import { clear, el, formatInt, labelCells, showVerdict } from './ui.js';

const $ = (id) => document.getElementById(id);
const FIELDS = ['subject', 'actor', 'action', 'resource', 'app'];
const RFC3339 = /^\d{4}-\d\d-\d\dT\d\d:\d\d(:\d\d(\.\d+)?)?(Z|[+-]\d\d:\d\d)$/i;

let lastExport = null; // {text, name}
let nextCursor = null;
let currentFilters = null;

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
  f.since = normalizeTime($('f-since').value, 'since');
  f.until = normalizeTime($('f-until').value, 'until');
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

function resultRow(hit) {
  const ev = hit.event || {};
  const actor = ev.actor ? `${ev.actor.id}${ev.actor.type ? ` (${ev.actor.type})` : ''}` : null;
  const resource = ev.resource ? `${ev.resource.type}/${ev.resource.id}` : null;
  return el('tr', { 'data-index': String(hit.index) },
    el('td', { class: 'num' }, el('a', { href: `event.html?index=${encodeURIComponent(hit.index)}` }, String(hit.index))),
    cell(hit.received, 'nowrap'),
    cell(hit.app),
    cell(actor),
    cell(ev.action),
    cell(ev.subject),
    cell(resource),
    cell(ev.outcome, ev.outcome === 'success' ? null : 'status-fail'));
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
    clear($('result-rows'));
    $('results').hidden = true;
  }
  const params = { ...currentFilters, limit: $('f-limit').value, cursor: more ? nextCursor : null };
  showVerdict(status, 'busy', more ? 'Loading more…' : 'Searching…');
  $('more').hidden = true;
  let answer;
  try {
    answer = await authJson(`v1/events${queryString(params)}`, key);
  } catch (e) {
    return showError(status, 'Search failed', e);
  }
  const events = answer.json.events || [];
  const rows = events.map(resultRow);
  $('result-rows').append(...rows);
  labelCells($('results'));
  const shown = $('result-rows').children.length;
  $('results').hidden = shown === 0;
  nextCursor = answer.json.next_cursor || null;
  $('more').hidden = !nextCursor;
  const recorded = answer.auditIndex !== null ? ` This search was recorded in the log as event ${answer.auditIndex}.` : '';
  showVerdict(status, 'ok', shown ? `${formatInt(shown)} event(s) shown${nextCursor ? ', more available' : ''}` : 'No matching events', `Newest first.${recorded}`);
  status.dataset.count = String(shown);
}

function download(text, name) {
  const url = URL.createObjectURL(new Blob([text], { type: 'application/x-ndjson' }));
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
  showVerdict(status, 'busy', 'Exporting…');
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
  const stamp = new Date().toISOString().replace(/[:.]/g, '-');
  const name = `veritrail-evidence-${filters.subject ? `${filters.subject.replace(/[^A-Za-z0-9._-]/g, '_')}-` : ''}${stamp}.ndjson`;
  lastExport = { text, name };
  download(text, name);
  const events = Math.max(0, text.split('\n').filter(Boolean).length - 2);
  showVerdict(status, 'ok', `Downloaded ${name}`, `${formatInt(events)} event line(s), ${formatInt(text.length)} bytes.${auditIndex !== null ? ` The export was recorded in the log as event ${auditIndex}.` : ''}`);
  $('verify-export').hidden = false;
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
  $('export').addEventListener('click', runExport);
  $('verify-export').addEventListener('click', verifyExport);
  $('clear-search').addEventListener('click', () => {
    $('search-form').reset();
    clear($('result-rows'));
    $('results').hidden = true;
    $('more').hidden = true;
    clear($('search-status'));
  });
  document.body.dataset.ready = 'true';
}

init();
