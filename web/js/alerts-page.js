// The alerts page: lists GET /v1/alerts newest first, page by page, each
// alert linking to its own event (inclusion proof) and to the events that
// triggered it. Values are inserted as text, never as HTML.

import { authJson, queryString } from './api.js';
import { el, clear, labelCells } from './ui.js';
import { getKey, wireKeyPanel } from './session-key.js';

const table = document.getElementById('alerts-table');
const body = table.querySelector('tbody');
const status = document.getElementById('alerts-status');
const more = document.getElementById('more');
let cursor = null;

function eventLink(index, text = `#${index}`) {
  return el('a', { href: `event.html?index=${encodeURIComponent(index)}` }, text);
}

function row(item) {
  const a = item.alert || {};
  const group = Object.entries(a.group || {}).map(([k, v]) => `${k}: ${v}`).join(', ') || 'all';
  const events = el('span');
  for (const i of a.events || []) {
    events.append(eventLink(i), ' ');
  }
  return el('tr', {},
    el('td', {}, eventLink(item.index, item.raised_at)),
    el('td', {}, `${a.rule} (${a.kind})`),
    el('td', {}, group),
    el('td', {}, String(a.count)),
    el('td', {}, `${a.window_start} – ${a.window_end}`),
    el('td', {}, events));
}

async function load(reset) {
  const key = getKey();
  if (!key) {
    status.textContent = 'Enter an auditor or admin key first.';
    return;
  }
  if (reset) {
    cursor = null;
    clear(body);
  }
  const rule = document.getElementById('f-rule').value.trim();
  status.textContent = 'Loading…';
  try {
    const { json } = await authJson(`v1/alerts${queryString({ rule, cursor, limit: 50 })}`, key);
    for (const item of json.alerts) body.append(row(item));
    labelCells(table);
    cursor = json.next_cursor;
    more.hidden = !cursor;
    table.hidden = body.children.length === 0;
    status.textContent = body.children.length === 0 ? 'No alerts.' : `${body.children.length} alert(s) shown.`;
  } catch (e) {
    status.textContent = e.message;
  }
}

wireKeyPanel((key) => { if (key) load(true); });
document.getElementById('alerts-form').addEventListener('submit', (e) => { e.preventDefault(); load(true); });
more.addEventListener('click', () => load(false));
document.body.dataset.ready = 'true';
