// The admin page: retention policies (list, create, delete), legal holds
// (list, create, release) and erasure (by subject or leaf indexes). Every
// request that can destroy data — a new policy, removing one, releasing a
// hold, an erasure — is sent only after confirmAction() says yes, and the
// dialog names what will be destroyed. API errors are shown as the server
// worded them.

import { authJson } from './api.js';
import { confirmAction } from './confirm.js';
import { getKey, whoAmI, wireKeyPanel } from './session-key.js';
import { clear, el, ident, labelCells, showVerdict } from './ui.js';

const $ = (id) => document.getElementById(id);

function needKey(box) {
  const key = getKey();
  if (!key) showVerdict(box, 'fail', 'No API key', 'Enter an admin key above first.');
  return key;
}

function failed(box, title, e) {
  showVerdict(box, 'fail', title, e.message);
  box.dataset.status = e.status ? String(e.status) : '';
}

/** Empties a status box and drops its verdict look. */
function reset(box) {
  clear(box);
  box.className = '';
  delete box.dataset.verdict;
}

function td(v, cls) {
  return el('td', { class: cls || null }, v === undefined || v === null || v === '' ? '—' : v);
}

// ---- retention ----------------------------------------------------------

function policyScope(p) {
  return `${p.app ? `app ${p.app}` : 'every app'}, ${p.action ? `action ${p.action}` : 'every action'}`;
}

async function loadPolicies() {
  const box = $('policy-status');
  const key = needKey(box);
  if (!key) return;
  let list;
  try {
    list = (await authJson('v1/admin/retention', key)).json.policies || [];
  } catch (e) {
    return failed(box, 'Could not list retention policies', e);
  }
  reset(box);
  const rows = list.map((p) => el('tr', { 'data-id': p.id },
    td(ident(p.id)), td(p.app), td(p.action), td(String(p.keep_days), 'num'), td(p.created_at), td(p.created_by),
    el('td', {}, el('button', { type: 'button', class: 'secondary small', 'aria-label': `Delete policy ${p.id}`, onclick: () => deletePolicy(p) }, 'Delete…'))));
  clear($('policy-rows')).append(...rows);
  if (!rows.length) $('policy-rows').append(el('tr', {}, el('td', { colspan: '7', class: 'muted' }, 'No retention policy: events are kept forever.')));
  labelCells($('policies'));
  $('policies').dataset.loaded = 'true';
}

async function createPolicy() {
  const box = $('policy-status');
  const key = needKey(box);
  if (!key) return;
  const app = $('p-app').value.trim();
  const action = $('p-action').value.trim();
  const daysText = $('p-days').value.trim();
  if (!/^\d+$/.test(daysText)) return showVerdict(box, 'fail', 'Policy not created', 'Keep for (days): a whole number of days, 0 to 36500.');
  const days = Number(daysText);
  const body = { keep_days: days };
  if (app) body.app = app;
  if (action) body.action = action;
  const scope = policyScope(body);
  const yes = await confirmAction({
    title: 'Create this retention policy?',
    lines: [
      `Events of ${scope} older than ${days} day(s) will be erased at the next retention run: their bodies and salts are destroyed permanently (legal holds excepted).`,
      'Their leaves and proofs stay in the log. This cannot be undone for events already erased.',
    ],
    confirmLabel: 'Create policy',
  });
  if (!yes) return showVerdict(box, 'warn', 'Cancelled', 'No policy was created.');
  try {
    const r = await authJson('v1/admin/retention', key, { method: 'POST', body });
    showVerdict(box, 'ok', `Policy ${r.json.id} created`, `Keeps events of ${scope} for ${days} day(s).${r.auditIndex !== null ? ` Recorded in the log as event ${r.auditIndex}.` : ''}`);
  } catch (e) {
    return failed(box, 'Policy not created', e);
  }
  $('policy-form').reset();
  await withStatusKept(box, loadPolicies);
}

async function deletePolicy(p) {
  const box = $('policy-status');
  const key = needKey(box);
  if (!key) return;
  const yes = await confirmAction({
    title: `Delete retention policy ${p.id}?`,
    lines: [`Events of ${policyScope(p)} will no longer expire after ${p.keep_days} day(s). Nothing is destroyed.`],
    confirmLabel: 'Delete policy',
  });
  if (!yes) return showVerdict(box, 'warn', 'Cancelled', 'The policy was kept.');
  try {
    await authJson(`v1/admin/retention/${encodeURIComponent(p.id)}`, key, { method: 'DELETE' });
    showVerdict(box, 'ok', `Policy ${p.id} deleted`, '');
  } catch (e) {
    return failed(box, 'Policy not deleted', e);
  }
  await withStatusKept(box, loadPolicies);
}

// ---- holds ----------------------------------------------------------------

async function loadHolds() {
  const box = $('hold-status');
  const key = needKey(box);
  if (!key) return;
  let list;
  try {
    list = (await authJson('v1/admin/holds', key)).json.holds || [];
  } catch (e) {
    return failed(box, 'Could not list legal holds', e);
  }
  reset(box);
  const rows = list.map((h) => el('tr', { 'data-id': h.id },
    td(ident(h.id)),
    td(h.app ? `app ${h.app}` : heldSubject(h)),
    td(h.reason), td(h.created_at), td(h.created_by),
    el('td', {}, el('button', { type: 'button', class: 'secondary small', 'aria-label': `Release hold ${h.id}`, onclick: () => releaseHold(h) }, 'Release…'))));
  clear($('hold-rows')).append(...rows);
  if (!rows.length) $('hold-rows').append(el('tr', {}, el('td', { colspan: '6', class: 'muted' }, 'No legal hold.')));
  labelCells($('holds'));
  $('holds').dataset.loaded = 'true';
}

/** A subject hold's subject: as the admin typed it, or else its
 * pseudonym, marked as such (a hold made before subjects were kept, or
 * one whose subject key is gone). */
function heldSubject(h) {
  if (h.subject_form === 'typed' && h.subject) {
    return el('span', { class: 'held-subject' }, 'subject ', el('strong', {}, h.subject));
  }
  const why = h.subject_form === 'unreadable'
    ? 'the subject as typed no longer opens: its key was destroyed'
    : 'held before subjects were kept: only the pseudonym is known';
  return el('span', { class: 'held-subject' }, 'subject ', ident(h.subject_pseudonym || '?'), ' ',
    el('span', { class: 'badge', title: why }, 'pseudonym'), ' ', el('span', { class: 'hint' }, why));
}

async function withStatusKept(box, fn) {
  const saved = [...box.childNodes];
  const cls = box.className;
  const verdict = box.dataset.verdict;
  await fn();
  if (!box.childNodes.length) {
    box.append(...saved);
    box.className = cls;
    if (verdict) box.dataset.verdict = verdict;
  }
}

async function createHold() {
  const box = $('hold-status');
  const key = needKey(box);
  if (!key) return;
  const kind = document.querySelector('input[name="hold-kind"]:checked').value;
  const target = $('h-target').value.trim();
  const reason = $('h-reason').value.trim();
  if (!target || !reason) return showVerdict(box, 'fail', 'Hold not created', `Give the ${kind} and a reason.`);
  try {
    const r = await authJson('v1/admin/holds', key, { method: 'POST', body: { [kind]: target, reason } });
    showVerdict(box, 'ok', `Hold ${r.json.id} created`, `Events of ${kind} ${target} cannot be erased until it is released.${r.auditIndex !== null ? ` Recorded in the log as event ${r.auditIndex}.` : ''}`);
  } catch (e) {
    return failed(box, 'Hold not created', e);
  }
  $('hold-form').reset();
  await withStatusKept(box, loadHolds);
}

async function releaseHold(h) {
  const box = $('hold-status');
  const key = needKey(box);
  if (!key) return;
  const what = h.app ? `app ${h.app}` : `the subject with pseudonym ${h.subject_pseudonym}`;
  const yes = await confirmAction({
    title: `Release legal hold ${h.id}?`,
    lines: [`Events of ${what} (held for: ${h.reason}) become subject to retention and erasure again; retention may then destroy them at its next run.`],
    confirmLabel: 'Release hold',
  });
  if (!yes) return showVerdict(box, 'warn', 'Cancelled', 'The hold stays in place.');
  try {
    await authJson(`v1/admin/holds/${encodeURIComponent(h.id)}`, key, { method: 'DELETE' });
    showVerdict(box, 'ok', `Hold ${h.id} released`, '');
  } catch (e) {
    return failed(box, 'Hold not released', e);
  }
  await withStatusKept(box, loadHolds);
}

// ---- erasure --------------------------------------------------------------

/** Parses "1, 2 3" into [1, 2, 3]; throws naming the bad item. */
export function parseIndexes(text) {
  const items = text.split(/[\s,]+/).filter(Boolean);
  if (!items.length) throw new Error('give at least one leaf index');
  return items.map((t) => {
    if (!/^\d+$/.test(t) || !Number.isSafeInteger(Number(t))) throw new Error(`"${t}" is not a leaf index`);
    return Number(t);
  });
}

async function erase() {
  const box = $('erasure-status');
  const key = needKey(box);
  if (!key) return;
  const kind = document.querySelector('input[name="erase-kind"]:checked').value;
  const target = $('e-target').value.trim();
  const reason = $('e-reason').value.trim();
  if (!target || !reason) return showVerdict(box, 'fail', 'Nothing erased', `Give the ${kind === 'subject' ? 'subject' : 'leaf indexes'} and a reason.`);
  let body;
  let what;
  try {
    if (kind === 'subject') {
      body = { subject: target, reason };
      what = `every event of data subject "${target}" — their bodies and salts, and the subject's data key`;
    } else {
      const indexes = parseIndexes(target);
      body = { indexes, reason };
      what = `the bodies and salts of ${indexes.length} event(s): leaf index ${indexes.join(', ')}`;
    }
  } catch (e) {
    return showVerdict(box, 'fail', 'Nothing erased', e.message);
  }
  const yes = await confirmAction({
    title: 'Erase permanently?',
    lines: [
      `This destroys ${what}.`,
      `Reason recorded in the log: ${reason}`,
      'It cannot be undone. The leaves and proofs stay; reading these events will answer 410 Gone.',
    ],
    confirmLabel: 'Erase permanently',
  });
  if (!yes) return showVerdict(box, 'warn', 'Cancelled', 'Nothing was sent; nothing was erased.');
  showVerdict(box, 'busy', 'Erasing…');
  try {
    const r = await authJson('v1/erasure', key, { method: 'POST', body });
    const erased = r.json.erased || [];
    const recorded = `Data keys destroyed: ${r.json.keys_destroyed ?? 0}. Recorded in the log as event ${r.json.audit_index}.`;
    if (kind === 'subject') {
      // A subject's events are not listed: its key is destroyed, so every
      // one of them reads as erased now, and their bodies go in the background.
      showVerdict(box, 'ok', `Erased subject ${target}`,
        `Its key is destroyed: every event of it now answers 410 Gone.${r.json.cleanup === 'pending' ? ' Its stored bodies are being deleted in the background.' : ''} ${recorded}`);
    } else {
      showVerdict(box, 'ok', `Erased ${erased.length} event(s)`, `Leaf index(es): ${erased.join(', ') || 'none'}. ${recorded}`);
    }
    box.dataset.erased = erased.join(',');
  } catch (e) {
    failed(box, 'Nothing erased', e);
  }
}

function onSubmit(formId, fn) {
  $(formId).addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const b = $(formId).querySelector('button[type="submit"]');
    b.disabled = true;
    try {
      await fn();
    } finally {
      b.disabled = false;
    }
  });
}

/**
 * Loads the lists when the key may administer; otherwise says once, at the
 * top, what the key is and that it cannot do admin work, and marks each
 * section instead of letting every request fail with a bare 403.
 */
async function loadAll() {
  const who = await whoAmI();
  const note = $('role-note');
  clear(note);
  note.className = '';
  if (who && who.role !== 'admin') {
    showVerdict(note, 'warn', `This is ${who.role === 'auditor' ? 'an auditor' : 'a writer'} key (${who.name}): it cannot do admin work`,
      'Policies, holds and erasure need an admin key. Enter one above; the auditor pages accept this key.');
    for (const id of ['policy-status', 'hold-status', 'erasure-status']) {
      const box = $(id);
      if (!box) continue;
      showVerdict(box, 'fail', 'Needs an admin key', `This ${who.role} key’s role is insufficient (the log would answer 403).`);
      box.dataset.status = '403';
    }
    document.body.dataset.adminBlocked = 'true';
    return;
  }
  delete document.body.dataset.adminBlocked;
  loadPolicies();
  loadHolds();
}

function init() {
  const key = wireKeyPanel((k) => {
    if (k) loadAll();
  });
  onSubmit('policy-form', createPolicy);
  onSubmit('hold-form', createHold);
  onSubmit('erasure-form', erase);
  $('reload-policies').addEventListener('click', loadPolicies);
  $('reload-holds').addEventListener('click', loadHolds);
  document.body.dataset.ready = 'true';
  if (key) loadAll();
}

init();
