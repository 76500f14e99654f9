// The API key of the auditor and admin pages: entered once per browser
// tab and kept in sessionStorage only — never in localStorage, a cookie or
// a URL — so it is gone when the tab closes. Also wires the key panel the
// auditor and admin pages share. When a key is entered, the panel asks the
// log who it is (GET /v1/whoami: name and role, no data read) and shows it.

import { authJson } from './api.js';
import { el } from './ui.js';

const STORAGE_KEY = 'veritrail.apiKey';
const KEY_FORMAT = /^vt_[0-9a-f]{16}_[0-9a-f]{64}$/;

export function getKey() {
  try {
    return sessionStorage.getItem(STORAGE_KEY) || null;
  } catch {
    return null;
  }
}

export function setKey(key) {
  sessionStorage.setItem(STORAGE_KEY, key);
}

export function forgetKey() {
  try {
    sessionStorage.removeItem(STORAGE_KEY);
  } catch {
    // storage unavailable: nothing was kept
  }
}

/** The key's public id part, for display (the secret is never shown). */
export function keyLabel(key) {
  const m = /^vt_([0-9a-f]{16})_/.exec(key || '');
  return m ? `key ${m[1]}` : 'a key';
}

let info = null; // {key, promise} for the key in use

/** The key's {id, name, role, app} from the log, or null when it is not accepted. Cached per key. */
export function whoAmI(key = getKey()) {
  if (!key) return Promise.resolve(null);
  if (!info || info.key !== key) {
    info = { key, promise: authJson('v1/whoami', key).then((a) => a.json, () => null) };
  }
  return info.promise;
}

/**
 * Wires the key panel: form #key-form with input #api-key, button
 * #forget-key and status #key-status. `onChange(key|null)` runs when the
 * key is set or forgotten.
 */
export function wireKeyPanel(onChange) {
  const form = document.getElementById('key-form');
  const input = document.getElementById('api-key');
  const status = document.getElementById('key-status');
  const forget = document.getElementById('forget-key');
  const show = () => {
    const k = getKey();
    status.replaceChildren(k
      ? el('span', { class: 'status-ok' }, `Using ${keyLabel(k)} in this tab only (sessionStorage; closing the tab forgets it).`)
      : el('span', {}, 'No key entered yet. It is kept in this tab only, never saved to disk or put in a URL.'));
    forget.hidden = !k;
    document.body.dataset.hasKey = k ? 'true' : 'false';
    delete document.body.dataset.keyRole;
    if (k) {
      whoAmI(k).then((who) => {
        if (getKey() !== k) return;
        if (!who) {
          status.append(' ', el('span', { class: 'status-fail', id: 'key-identity' }, 'The log does not accept this key (wrong, mistyped or revoked).'));
          document.body.dataset.keyRole = 'none';
          return;
        }
        status.append(' ', el('span', { id: 'key-identity' }, 'It is ', el('code', { class: 'ident' }, who.name), `, ${/^[aeiou]/.test(who.role) ? 'an' : 'a'} ${who.role} key${who.app ? ` for app ${who.app}` : ''}.`));
        document.body.dataset.keyRole = who.role;
      });
    }
  };
  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    const k = input.value.trim();
    input.value = '';
    if (!k) {
      status.replaceChildren(el('span', { class: 'status-fail' }, 'Enter an API key first.'));
      return;
    }
    try {
      setKey(k);
    } catch (e) {
      status.replaceChildren(el('span', { class: 'status-fail' }, `This browser refuses session storage (${e.message}); the key cannot be kept.`));
      return;
    }
    show();
    if (!KEY_FORMAT.test(k)) {
      status.append(' ', el('span', { class: 'status-fail' }, 'This does not look like a Veritrail key (vt_<16 hex>_<64 hex>); the log will probably reject it.'));
    }
    onChange(k);
  });
  forget.addEventListener('click', () => {
    forgetKey();
    show();
    onChange(null);
    input.focus();
  });
  show();
  return getKey();
}
