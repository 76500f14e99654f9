// Shows the report of an evidence-bundle verification (evidence-bundle.js):
// a verdict naming the first failing line, the checkpoint, and one row per
// event line with each check. Shared by the verify and auditor pages.

import { toBase64 } from './b64.js';
import { clear, code, el, formatInt, labelCells, showVerdict } from './ui.js';

function checkItems(checks) {
  return el('ul', { class: 'checks-inline' }, checks.map((c) => el('li', { class: c.ok ? 'status-ok' : 'status-fail' },
    el('span', { 'aria-hidden': 'true' }, c.ok ? '\u2714 ' : '\u2718 '),
    el('span', { class: 'visually-hidden' }, c.ok ? 'passed: ' : 'failed: '),
    el('strong', {}, `${c.label}: `), c.detail)));
}

/** Renders `report` into `container` (cleared first). */
export function renderBundleReport(container, report) {
  clear(container);
  const box = el('div');
  container.append(box);
  if (report.ok) {
    const signers = report.signatures.filter((s) => s.status === 'verified').map((s) => s.name);
    showVerdict(box, 'ok', 'Evidence bundle verifies',
      `${formatInt(report.count)} event(s) of ${report.checkpoint.origin}, each proven included in the checkpoint of size ${formatInt(report.checkpoint.size)} signed by ${[...new Set(signers)].join(', ')} (${signers.length} signature(s)). Completeness is not provable: the export is trusted to hold every matching event.`);
  } else {
    showVerdict(box, 'fail', 'Evidence bundle does not verify', report.error);
  }
  box.dataset.failedLine = report.failedLine === null ? '' : String(report.failedLine);
  if (report.checkpoint) {
    container.append(el('dl', { class: 'facts' },
      el('dt', {}, 'Origin'), el('dd', {}, report.checkpoint.origin),
      el('dt', {}, 'Checkpoint size'), el('dd', {}, formatInt(report.checkpoint.size)),
      el('dt', {}, 'Root hash'), el('dd', {}, code(toBase64(report.checkpoint.rootHash))),
      report.header && report.header.exported_at ? [el('dt', {}, 'Exported at'), el('dd', {}, `${report.header.exported_at} (not authenticated)`)] : null,
      report.headerKeys ? [el('dt', {}, 'Keys listed in the bundle'), el('dd', { id: 'bundle-header-keys' }, report.headerKeys.matches
        ? 'the same keys as those used to verify (informational only: the bundle\u2019s copy is never trusted)'
        : `${report.headerKeys.listed.length} key(s) that differ from those used to verify; only the keys you gave were used`)] : null,
      report.header && report.header.query ? [el('dt', {}, 'Query'), el('dd', {}, code(JSON.stringify(Object.fromEntries(Object.entries(report.header.query).filter(([, v]) => v !== null)))))] : null));
  }
  if (report.lines.length) {
    const rows = report.lines.map((l) => el('tr', { class: l.ok ? '' : 'row-fail', 'data-line': String(l.line) },
      el('td', { class: 'num' }, String(l.line)),
      el('td', { class: 'num' }, l.index === null ? '—' : String(l.index)),
      el('td', {}, l.event ? `${l.event.action || ''} on ${l.event.resource ? `${l.event.resource.type}/${l.event.resource.id}` : '?'}${l.event.subject ? `, subject ${l.event.subject}` : ''}` : '—'),
      el('td', { class: l.ok ? 'status-ok' : 'status-fail' }, l.ok ? 'verified' : 'FAILED'),
      el('td', {}, checkItems(l.checks.length ? l.checks : [{ label: 'line', ok: false, detail: l.error }]))));
    container.append(el('div', { class: 'table-wrap' }, labelCells(el('table', {},
      el('caption', { class: 'muted caption-left' }, 'Event lines, each verified in this browser'),
      el('thead', {}, el('tr', {}, ['Line', 'Index', 'Event', 'Result', 'Checks'].map((t) => el('th', { scope: 'col' }, t)))),
      el('tbody', {}, rows)))));
  }
}
