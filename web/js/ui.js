// Small DOM helpers shared by the console's pages: element building,
// verdict boxes, hash display, relative times, file loading, storage.
// No verification logic lives here.

export function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'class') e.className = v;
    else if (k === 'text') e.textContent = v;
    else if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return e;
}

export function clear(node) {
  while (node.firstChild) node.removeChild(node.firstChild);
  return node;
}

/**
 * Shows a verdict in `box`: state is 'ok', 'fail', 'warn' or 'busy'. The
 * box carries data-verdict for tests and is a live region for screen readers.
 */
export function showVerdict(box, state, title, detail) {
  clear(box);
  box.dataset.verdict = state;
  box.className = `verdict verdict-${state}`;
  const icon = { ok: '\u2714', fail: '\u2718', warn: '!', busy: '\u2026' }[state] || '';
  box.append(el('p', { class: 'verdict-title' }, el('span', { class: 'verdict-icon', 'aria-hidden': 'true' }, icon), ' ', title));
  if (detail) box.append(el('p', { class: 'verdict-detail' }, detail));
}

/**
 * Shows the outcome of a query (not a verdict) in `box`: neutral styling,
 * no check mark; state is 'ok' (answered) or 'busy'. Errors still use
 * showVerdict(box, 'fail', ...).
 */
export function showSummary(box, state, title, detail) {
  clear(box);
  box.dataset.verdict = state;
  box.className = `summary summary-${state}`;
  box.append(el('p', { class: 'summary-title' }, title));
  if (detail) box.append(el('p', { class: 'verdict-detail' }, detail));
}

/** A hash (or other long token) in a monospace element that wraps. */
export function code(text, title) {
  return el('code', { class: 'hash', title: title || null }, text);
}

export function ago(ms) {
  if (ms === null || ms === undefined || Number.isNaN(ms)) return 'unknown';
  const s = Math.max(0, Math.round((Date.now() - ms) / 1000));
  if (s < 60) return `${s} s ago`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} min ${s % 60} s ago`;
  const h = Math.floor(m / 60);
  if (h < 48) return `${h} h ${m % 60} min ago`;
  return `${Math.floor(h / 24)} days ago`;
}

export function formatInt(n) {
  return BigInt(n).toLocaleString('en-US');
}

/** Loads a chosen file into a textarea (as UTF-8 text). */
export function wireFileInput(input, textarea, onLoaded) {
  input.addEventListener('change', async () => {
    const f = input.files && input.files[0];
    if (!f) return;
    const buf = new Uint8Array(await f.arrayBuffer());
    let text;
    try {
      text = new TextDecoder('utf-8', { fatal: true }).decode(buf);
    } catch {
      text = null;
    }
    if (text === null) {
      textarea.value = '';
      textarea.setCustomValidity('this file is not UTF-8 text');
      textarea.reportValidity();
      return;
    }
    textarea.setCustomValidity('');
    textarea.value = text;
    if (onLoaded) onLoaded(text);
  });
}

export const storage = {
  get(key) {
    try {
      return JSON.parse(localStorage.getItem(key));
    } catch {
      return null;
    }
  },
  set(key, value) {
    try {
      localStorage.setItem(key, JSON.stringify(value));
      return true;
    } catch {
      return false;
    }
  },
};

export const SAVED_CHECKPOINT_KEY = 'veritrail.savedCheckpoint';

/**
 * Copies each column header into its cells' data-label, so narrow screens
 * can show a table as stacked "label: value" cards (see style.css).
 */
export function labelCells(table) {
  const heads = [...table.querySelectorAll('thead th')].map((th) => th.textContent);
  table.classList.add('stack');
  for (const tr of table.querySelectorAll('tbody tr')) {
    [...tr.children].forEach((td, i) => {
      if (heads[i]) td.dataset.label = heads[i];
    });
  }
  return table;
}

/** A key name or other identifier: monospace, wraps only where it must. */
export function ident(text) {
  return el('code', { class: 'ident' }, text);
}
