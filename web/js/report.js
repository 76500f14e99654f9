// Evidence reports: a printable, self-contained HTML page and a CSV made
// from an evidence bundle and its verification in this browser
// (evidence-bundle.js). The page embeds the exact NDJSON bundle, base64,
// in one inert element, so the report verifies as the bundle does: on the
// verify page and with `veritrail verify-bundle report.html` (src/evidence/report.rs
// reads the same element). Everything else in the page is a rendering.
//
// Pure: no DOM, no network; strings in, strings out. Every value from the
// bundle is HTML-escaped; CSV cells that a spreadsheet would run as a
// formula are prefixed with an apostrophe.

import { toBase64, utf8 } from './b64.js';

export const BUNDLE_ELEMENT_ID = 'veritrail-evidence-bundle';
const MARKER = `id="${BUNDLE_ELEMENT_ID}"`;

/** The NDJSON bundle embedded in an HTML report, or null when `text` is not one. Throws when it is damaged. */
export function bundleFromReport(text) {
  if (typeof text !== 'string' || !/^\s*<!doctype html/i.test(text)) return null;
  const at = text.indexOf(MARKER);
  if (at < 0) return null;
  if (text.indexOf(MARKER, at + 1) >= 0) throw new Error('the report holds more than one embedded bundle');
  const open = text.indexOf('>', at);
  const close = open < 0 ? -1 : text.indexOf('</script>', open);
  if (close < 0) throw new Error('the report\u2019s embedded bundle is not closed');
  const b64 = text.slice(open + 1, close).replace(/\s+/g, '');
  let bin;
  try {
    bin = atob(b64);
  } catch {
    throw new Error('the report\u2019s embedded bundle is not base64');
  }
  const bytes = Uint8Array.from(bin, (c) => c.charCodeAt(0));
  return new TextDecoder('utf-8', { fatal: true }).decode(bytes);
}

const esc = (v) => String(v ?? '').replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' }[c]));

const COLUMNS = [
  ['index', (l) => l.index],
  ['occurred_at', (l) => l.event.occurred_at],
  ['received', (l) => l.received],
  ['actor_id', (l) => l.event.actor && l.event.actor.id],
  ['actor_type', (l) => l.event.actor && l.event.actor.type],
  ['actor_ip', (l) => l.event.actor && l.event.actor.ip],
  ['action', (l) => l.event.action],
  ['resource_type', (l) => l.event.resource && l.event.resource.type],
  ['resource_id', (l) => l.event.resource && l.event.resource.id],
  ['subject', (l) => l.event.subject],
  ['purpose', (l) => l.event.purpose],
  ['outcome', (l) => l.event.outcome],
  ['context', (l) => (l.event.context ? JSON.stringify(l.event.context) : '')],
  ['verified', (l) => (l.ok ? 'yes' : 'no')],
];

function csvCell(v) {
  let s = v === undefined || v === null ? '' : String(v);
  if (/^[=+\-@\t\r]/.test(s)) s = `'${s}`;
  return /[",\r\n]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
}

/** The events of a verified bundle as CSV (RFC 4180, CRLF). */
export function reportCsv(verification) {
  const rows = [COLUMNS.map(([name]) => name)];
  for (const l of verification.lines.filter((x) => x.event)) rows.push(COLUMNS.map(([, get]) => get(l)));
  return `${rows.map((r) => r.map(csvCell).join(',')).join('\r\n')}\r\n`;
}

function countBy(lines, key) {
  const m = new Map();
  for (const l of lines) {
    const k = key(l) ?? '(none)';
    m.set(k, (m.get(k) || 0) + 1);
  }
  return [...m.entries()].sort((a, b) => b[1] - a[1] || String(a[0]).localeCompare(String(b[0])));
}

function table(head, rows, cls = '') {
  return `<table class="${cls}"><thead><tr>${head.map((h) => `<th>${esc(h)}</th>`).join('')}</tr></thead><tbody>${rows.map((r) => `<tr>${r.map((c) => `<td>${esc(c)}</td>`).join('')}</tr>`).join('')}</tbody></table>`;
}

/**
 * The plain-language paragraph on what was verified, from a verification
 * report, the log keys it used (parsed vkeys) and where they came from.
 */
export function verificationParagraph(v, keys, { keysFrom, checkedAt }) {
  if (!v.ok) return `This bundle did NOT verify in the browser at ${checkedAt}: ${v.error}. Do not rely on the events below.`;
  const cp = v.checkpoint;
  const logSigs = v.signatures.filter((s) => s.status === 'verified');
  const others = v.signatures.filter((s) => s.status !== 'verified');
  const fingerprints = logSigs.map((s) => `${s.name} (key ID ${s.keyIdHex})`).join(' and ');
  const witness = others.length
    ? `The checkpoint also carries ${others.length} signature(s) from other keys, such as witness cosignatures; they were not checked, because no witness key was given.`
    : 'No independent witness has co-signed this checkpoint: only the log operator vouches for it.';
  const source = keysFrom === 'server'
    ? 'The log\u2019s keys were taken from the log server itself, so this check shows the server\u2019s answers agree with each other, not that they are the keys you trust; check the key IDs against a copy obtained independently.'
    : 'The log\u2019s keys were supplied by the person who ran the check.';
  return `Each of the ${v.count} events below was checked in a web browser at ${checkedAt}: its content and salt reproduce the commitment in its log entry, and that entry is proven included in the log\u2019s checkpoint of ${cp.size} entries, whose root hash is ${toBase64(cp.rootHash)}. The checkpoint carries ${logSigs.length} valid signature(s) by the log operator\u2019s keys: ${fingerprints}. ${witness} ${source}`;
}

export const COMPLETENESS = 'What completeness means here: every event in this report is proven to be in the log, unaltered. The report cannot prove that the log holds no other events matching the query: the server chose which events to export. The checkpoint size bounds what could be missing (only events among its entries), and the same query exported later by anyone, against the same or a larger checkpoint, must contain at least these events; an omission would show as a difference.';

/**
 * The HTML report. `meta`: {query (object), ranAt, ranBy, auditIndex,
 * keysFrom ('server' | 'given'), checkedAt}.
 */
export function reportHtml(bundleText, v, keys, meta) {
  const lines = v.lines.filter((l) => l.event);
  const origin = v.checkpoint ? v.checkpoint.origin : (v.header && v.header.origin) || 'unknown log';
  const query = Object.entries(meta.query || {}).filter(([, x]) => x !== null && x !== undefined && x !== '');
  const byOutcome = countBy(lines, (l) => l.event.outcome);
  const byActor = countBy(lines, (l) => l.event.actor && l.event.actor.id);
  const subjects = countBy(lines, (l) => l.event.subject).map(([s]) => s);
  const timeline = subjects.map((s) => {
    const evs = lines.filter((l) => (l.event.subject ?? '(none)') === s)
      .sort((a, b) => String(a.event.occurred_at).localeCompare(String(b.event.occurred_at)));
    return `<section class="subject"><h3>${esc(s)}</h3><ol class="timeline">${evs.map((l) => `<li class="o-${esc(l.event.outcome)}"><span class="when">${esc(l.event.occurred_at)}</span> <span class="what">${esc(l.event.actor && l.event.actor.id)} \u2014 ${esc(l.event.action)} ${esc(l.event.resource ? `${l.event.resource.type}/${l.event.resource.id}` : '')}</span> <span class="outcome">${esc(l.event.outcome)}</span> <span class="why">(${esc(l.event.purpose)})</span></li>`).join('')}</ol></section>`;
  }).join('');
  const paragraph = verificationParagraph(v, keys, meta);
  const b64 = toBase64(utf8(bundleText)).replace(/.{1,76}/g, '$&\n');
  const leafHashes = new Map();
  for (const row of bundleText.split('\n').slice(1)) {
    try {
      const o = JSON.parse(row);
      if (o && o.type === 'event') leafHashes.set(o.index, o.leaf_hash);
    } catch {
      // not an event line
    }
  }
  const cpText = v.header && typeof v.header.checkpoint === 'string' ? v.header.checkpoint : '';
  return `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Evidence report \u2014 ${esc(origin)}</title>
<style>
body { font-family: system-ui, "DejaVu Sans", sans-serif; color: #111; margin: 2rem auto; max-width: 60rem; padding: 0 1rem; line-height: 1.45; }
h1 { font-size: 1.5rem; } h2 { font-size: 1.15rem; margin-top: 1.8rem; border-bottom: 1px solid #999; } h3 { font-size: 1rem; margin: 1rem 0 .3rem; }
table { border-collapse: collapse; width: 100%; font-size: .85rem; } th, td { border: 1px solid #bbb; padding: .2rem .4rem; text-align: left; vertical-align: top; }
th { background: #eee; } table.events td { white-space: nowrap; } table.events td.wrap { white-space: normal; } code, .hash { font-family: "DejaVu Sans Mono", monospace; font-size: .8rem; overflow-wrap: anywhere; }
.verdict { border: 2px solid #555; padding: .6rem .8rem; overflow-wrap: anywhere; } .verdict.bad { border-color: #a00; color: #a00; }
ol.timeline { list-style: none; padding-left: 0; margin: 0; } ol.timeline li { border-left: 6px solid #2e7d32; padding: .1rem .5rem; margin: .15rem 0; }
ol.timeline li.o-denied { border-left-color: #c62828; } ol.timeline li.o-failure { border-left-color: #ef6c00; }
.outcome { font-weight: 600; } .o-denied .outcome { color: #b71c1c; } .o-failure .outcome { color: #e65100; }
.muted { color: #555; } td.o-denied { color: #b71c1c; font-weight: 600; }
@media print { body { margin: 0; max-width: none; } h2 { break-after: avoid; } tr, li, section.subject { break-inside: avoid; } .noprint { display: none; } }
</style>
</head>
<body>
<h1>Evidence report: ${esc(origin)}</h1>
<p class="muted">Made by the Veritrail console at ${esc(meta.ranAt)}.</p>
<h2>Query</h2>
${table(['Filter', 'Value'], query.length ? query.map(([k, x]) => [k, x]) : [['(none)', 'every event']])}
<p>Run by ${esc(meta.ranBy)} at ${esc(meta.ranAt)}.${meta.auditIndex !== null && meta.auditIndex !== undefined ? ` The log recorded this export as its own event ${esc(meta.auditIndex)}, naming the API key that ran it.` : ''}</p>
<h2>What was verified</h2>
<p class="verdict${v.ok ? '' : ' bad'}" id="verification">${esc(paragraph)}</p>
<p id="completeness">${esc(COMPLETENESS)}</p>
<h2>Counts</h2>
<p id="counts">${esc(lines.length)} event(s): ${byOutcome.map(([k, n]) => `${esc(n)} ${esc(k)}`).join(', ') || 'none'}.</p>
<h3>By outcome</h3>
${table(['Outcome', 'Events'], byOutcome)}
<h3>By actor</h3>
${table(['Actor', 'Events'], byActor)}
<h2>Timeline by data subject</h2>
<p class="muted">Green: success; red: denied; orange: failure. Times are when the events occurred, as the writing application stated.</p>
${timeline || '<p>No events.</p>'}
<h2>Events</h2>
<table class="events"><thead><tr><th>Index</th><th>Occurred</th><th>Actor</th><th>Action</th><th>Subject</th><th>Resource</th><th>Purpose</th><th>Outcome</th><th>Received by the log</th></tr></thead><tbody>
${lines.map((l) => `<tr><td>${esc(l.index)}</td><td>${esc(l.event.occurred_at)}</td><td>${esc(l.event.actor && l.event.actor.id)}</td><td>${esc(l.event.action)}</td><td>${esc(l.event.subject)}</td><td>${esc(l.event.resource ? `${l.event.resource.type}/${l.event.resource.id}` : '')}</td><td>${esc(l.event.purpose)}</td><td class="o-${esc(l.event.outcome)}">${esc(l.event.outcome)}</td><td>${esc(l.received)}</td></tr>`).join('\n')}
</tbody></table>
<h2>Appendix: hashes</h2>
<p>The signed checkpoint (a C2SP signed note):</p>
<pre class="hash">${esc(cpText)}</pre>
<p>Verifier keys used:</p>
<ul>${keys.map((k) => `<li><code>${esc(k.vkey || `${k.name}+${k.keyIdHex}`)}</code></li>`).join('')}</ul>
${table(['Index', 'Leaf hash (SHA-256, base64)'], lines.map((l) => [l.index, leafHashes.get(l.index) || '']), 'hashes')}
<p class="muted">This file embeds the complete evidence bundle it was made from. To check it yourself: open the console\u2019s Verify page and load this file, or run <code>veritrail verify-bundle --vkey KEY this-file.html</code> with keys you obtained independently.</p>
<script type="application/x-ndjson;base64" ${MARKER}>
${b64}</script>
</body>
</html>
`;
}
