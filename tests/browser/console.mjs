// Browser tests of the auditor console (auditor.html, event.html,
// admin.html) and of evidence bundles on the verify page, against the real
// server ($VERITRAIL_BIN serve) with seeded events. Imported by run.mjs,
// which passes its runner and helpers in.

import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** Starts `bin serve` on 127.0.0.1:0 with a fresh data dir; resolves once it listens. */
async function startRealServer(bin) {
  const data = mkdtempSync(join(tmpdir(), 'veritrail-console-'));
  const child = spawn(bin, ['serve', '--data', data, '--listen', '127.0.0.1:0'], { stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  const stop = async () => {
    child.kill('SIGTERM');
    await new Promise((ok) => {
      if (child.exitCode !== null) return ok();
      const t = setTimeout(() => { child.kill('SIGKILL'); ok(); }, 5000);
      child.on('exit', () => { clearTimeout(t); ok(); });
    });
    rmSync(data, { recursive: true, force: true });
    rmSync(`${data}.master.key`, { force: true });
  };
  try {
    const base = await new Promise((ok, fail) => {
      const timer = setTimeout(() => fail(new Error(`server did not say "listening on" within 30 s; output:\n${output}`)), 30000);
      child.stdout.on('data', (chunk) => {
        output += chunk;
        const m = /listening on (http:\/\/127\.0\.0\.1:\d+)/.exec(output);
        if (m) {
          clearTimeout(timer);
          ok(`${m[1]}/`);
        }
      });
      child.stderr.on('data', (c) => (output += c));
      child.on('exit', (code) => fail(new Error(`server exited with ${code}; output:\n${output}`)));
    });
    return { base, data, stop };
  } catch (e) {
    await stop();
    throw e;
  }
}

const sleep = (ms) => new Promise((ok) => setTimeout(ok, ms));

/** Changes the hex digit at `i` into another hex digit. */
function flipHex(text, i) {
  return text.slice(0, i) + (parseInt(text[i], 16) ^ 1).toString(16) + text.slice(i + 1);
}

export async function consoleTests(browser, h) {
  const { test, skip, assert, assertIncludes, shot, tamper, WAIT_MS } = h;
  const group = 'console';
  const bin = process.env.VERITRAIL_BIN;
  if (!bin) return skip(`${group}: auditor, event, export and admin pages`, 'VERITRAIL_BIN is not set');
  if (!existsSync(bin)) return skip(`${group}: auditor, event, export and admin pages`, `VERITRAIL_BIN (${bin}) does not exist`);
  const help = spawnSync(bin, ['serve', '--help'], { encoding: 'utf8', timeout: 10000 });
  if (help.status !== 0) return skip(`${group}: auditor, event, export and admin pages`, `"${bin} serve --help" failed`);

  let srv;
  try {
    srv = await startRealServer(bin);
  } catch (e) {
    return test(`${group}: the real server starts`, async () => { throw e; });
  }
  const { base } = srv;
  const api = async (method, path, token, body) => {
    const res = await fetch(new URL(path, base), {
      method,
      headers: { Authorization: `Bearer ${token}`, 'Content-Type': 'application/json' },
      body: body ? JSON.stringify(body) : undefined,
    });
    const text = await res.text();
    return { status: res.status, json: text ? JSON.parse(text) : null };
  };
  const ok = async (...args) => {
    const r = await api(...args);
    if (r.status >= 300) throw new Error(`${args[0]} ${args[1]}: ${r.status} ${JSON.stringify(r.json)}`);
    return r.json;
  };

  // ---- seed ----------------------------------------------------------------
  const admin = readFileSync(join(srv.data, 'admin.key'), 'utf8').trim();
  const writer = (await ok('POST', 'v1/admin/keys', admin, { name: 'console-writer', role: 'writer', app: 'clinic' })).key;
  const auditor = (await ok('POST', 'v1/admin/keys', admin, { name: 'console-auditor', role: 'auditor' })).key;
  const ev = (subject, action, id) => ({
    actor: { id: `dr-${id}`, type: 'user' }, action, resource: { type: 'record', id: `rec-${id}` },
    subject, purpose: 'treatment', outcome: 'success', occurred_at: '2026-11-25T10:00:00Z',
  });
  const submit = async (events) => (await ok('POST', 'v1/events?wait=checkpoint', writer, { events })).events.map((e) => e.index);
  const early = await submit([ev('alice', 'record.read', 1), ev('bob', 'record.read', 2), ev('alice', 'record.write', 3), ev('carol', 'record.read', 4), ev('alice', 'record.read', 5), ev('carol', 'record.print', 6), ev('bob', 'record.write', 7)]);
  await sleep(30);
  const boundary = new Date().toISOString();
  await sleep(30);
  const late = await submit([ev('alice', 'record.read', 8), ev('dave', 'record.read', 9), ev('alice', 'record.export', 10)]);
  const aliceEarly = [early[0], early[2], early[4]];
  const aliceLate = [late[0], late[2]];
  const alice = [...aliceLate, ...aliceEarly].sort((a, b) => b - a);
  const carol = [early[3], early[5]];

  // Erin's events occurred in March (received today): denied when i % 3 == 0, for billing when i % 2 == 0.
  const erinEvent = (i) => ({
    actor: { id: `dr-erin-${i % 2}`, type: 'user', ip: '192.0.2.44' }, action: 'record.read', resource: { type: 'record', id: `rec-erin-${i}` },
    subject: 'erin', purpose: i % 2 === 0 ? 'billing' : 'treatment', outcome: i % 3 === 0 ? 'denied' : 'success',
    occurred_at: `2026-03-${String(i + 1).padStart(2, '0')}T08:15:00Z`, context: { ward: 'B-4', reason_code: `R${i}` },
  });
  const erin = (await submit([0, 1, 2, 3, 4, 5].map(erinEvent))).slice().reverse();
  const erinDenied = erin.filter((_, k) => (5 - k) % 3 === 0);

  const context = await browser.newContext({ viewport: { width: 1280, height: 900 }, acceptDownloads: true });
  // Every console error and failed request on any page of the console, for the last test.
  const consoleErrors = [];
  const pagesSeen = new Set();
  context.on('page', (p) => {
    // API refusals the tests provoke on purpose (400, 401, 403, 409, 410) are shown on the page; anything else is a fault.
    const provoked = /status of 4(00|01|03|09|10)\b/;
    p.on('console', (m) => {
      if (m.type() === 'error' && !provoked.test(m.text())) consoleErrors.push(`${p.url()}: ${m.text()}`);
    });
    p.on('response', (r) => {
      if (r.status() >= 400 && !provoked.test(`status of ${r.status()}`)) consoleErrors.push(`${p.url()}: ${r.status()} from ${r.url()}`);
    });
    p.on('framenavigated', (f) => { if (f === p.mainFrame()) pagesSeen.add(new URL(f.url()).pathname); });
  });
  const open = async (path) => {
    const page = await context.newPage();
    page.on('pageerror', (e) => console.log(`    [page error] ${e.message}`));
    await page.goto(new URL(path, base).href);
    await page.waitForSelector('body[data-ready="true"]', { timeout: WAIT_MS });
    return page;
  };
  const useKey = async (page, key) => {
    await page.fill('#api-key', key);
    await page.click('#use-key');
    await page.waitForSelector('body[data-has-key="true"]', { timeout: WAIT_MS });
  };
  const settled = async (page, sel) => {
    const box = await page.waitForSelector(`${sel}[data-verdict]:not([data-verdict="busy"])`, { timeout: WAIT_MS });
    return { verdict: await box.getAttribute('data-verdict'), text: await box.innerText() };
  };
  const search = async (page, fields) => {
    // since/until here are the receive-time fields, folded away by default.
    await page.evaluate(() => { document.querySelector('details.more-filters').open = true; });
    const { outcome = '', audit = false, ...rest } = fields;
    for (const [k, v] of Object.entries({ subject: '', actor: '', action: '', resource: '', app: '', purpose: '', 'occurred-since': '', 'occurred-until': '', since: '', until: '', limit: '50', ...rest })) {
      await page.fill(`#f-${k}`, v);
    }
    await page.selectOption('#f-outcome', outcome);
    await page.setChecked('#f-include-audit', audit);
    await page.evaluate(() => delete document.getElementById('search-status').dataset.verdict);
    await page.click('#search');
    return settled(page, '#search-status');
  };
  const rowIndexes = (page) => page.$$eval('#result-rows tr', (rows) => rows.map((r) => Number(r.dataset.index)));
  const twoShots = async (page, name) => {
    await shot(page, `${name}-laptop`);
    await page.setViewportSize({ width: 390, height: 844 });
    await shot(page, `${name}-phone`);
    await page.setViewportSize({ width: 1280, height: 900 });
  };

  try {
    await test(`${group}: a wrong key gets a clear 401 message; the key is kept in sessionStorage only`, async () => {
      const page = await open('auditor.html');
      const wrong = `vt_${'0'.repeat(16)}_${'1'.repeat(64)}`;
      await useKey(page, wrong);
      const r = await search(page, { subject: 'alice' });
      assert(r.verdict === 'fail', `verdict ${r.verdict}: ${r.text}`);
      assert((await page.getAttribute('#search-status', 'data-status')) === '401', 'status should be 401');
      assertIncludes(r.text, 'the key was not accepted', 'verdict');
      assert((await page.locator('#result-rows tr').count()) === 0, 'no rows for a wrong key');
      await useKey(page, auditor);
      const r2 = await search(page, { subject: 'alice' });
      assert(r2.verdict === 'ok', `verdict ${r2.verdict}: ${r2.text}`);
      const where = await page.evaluate(() => ({
        session: sessionStorage.getItem('veritrail.apiKey'),
        local: Object.keys(localStorage).map((k) => localStorage.getItem(k)).join('\n'),
        url: location.href,
        cookies: document.cookie,
      }));
      assert(where.session === auditor, 'the key should be in sessionStorage');
      assert(!where.local.includes(auditor.slice(20)), 'the key must not be in localStorage');
      assert(!where.url.includes(auditor.slice(20)) && !where.cookies.includes(auditor.slice(20)), 'the key must not be in the URL or a cookie');
      // A different tab does not see it.
      const other = await open('auditor.html');
      assert((await other.evaluate(() => sessionStorage.getItem('veritrail.apiKey'))) === null, 'another tab should not have the key');
      await other.close();
      // Forgetting removes it.
      await page.click('#forget-key');
      assert((await page.evaluate(() => sessionStorage.getItem('veritrail.apiKey'))) === null, 'forget should remove the key');
      await page.close();
    });

    await test(`${group}: auditor search finds exactly a subject's events; time range narrows; "more" pages`, async () => {
      const page = await open('auditor.html');
      await useKey(page, auditor);
      // The subject's history also holds the log's record of earlier reads about it (audit.*).
      let r = await search(page, { subject: 'alice' });
      assert(r.verdict === 'ok', `verdict ${r.verdict}: ${r.text}`);
      let got = await rowIndexes(page);
      assert(alice.every((i) => got.includes(i)), `every seeded alice event is found: want ${alice} in ${got}`);
      const others = await page.$$eval('#result-rows tr', (rows) => rows.map((r) => ({ i: Number(r.dataset.index), action: r.children[4].textContent, subject: r.children[5].textContent })));
      assert(others.every((o) => o.subject === 'alice'), `every row is alice's: ${JSON.stringify(others)}`);
      assert(others.filter((o) => !alice.includes(o.i)).every((o) => o.action.startsWith('audit.')), `the extra rows are audit records: ${JSON.stringify(others)}`);
      assert(JSON.stringify(got) === JSON.stringify(got.slice().sort((a, b) => b - a)), `newest first: ${got}`);
      // Restricted to the seeding app: exactly the seeded events.
      r = await search(page, { subject: 'alice', app: 'clinic' });
      got = await rowIndexes(page);
      assert(JSON.stringify(got) === JSON.stringify(alice), `alice's events newest first: want ${alice}, got ${got}`);
      const first = await page.locator('#result-rows tr').first().innerText();
      for (const part of [String(alice[0]), 'clinic', 'record.export', 'dr-10', 'alice', 'record/rec-10', 'success']) assertIncludes(first, part, 'newest row');
      await twoShots(page, 'console-auditor-search');
      r = await search(page, { subject: 'bob', app: 'clinic' });
      got = await rowIndexes(page);
      assert(JSON.stringify(got) === JSON.stringify([early[6], early[1]]), `bob's events: ${got}`);
      r = await search(page, { subject: 'alice', app: 'clinic', since: boundary });
      got = await rowIndexes(page);
      assert(JSON.stringify(got) === JSON.stringify(aliceLate.slice().reverse()), `since ${boundary}: want ${aliceLate.slice().reverse()}, got ${got}`);
      r = await search(page, { subject: 'alice', app: 'clinic', until: boundary });
      got = await rowIndexes(page);
      assert(JSON.stringify(got) === JSON.stringify(aliceEarly.slice().reverse()), `until ${boundary}: got ${got}`);
      r = await search(page, { subject: 'alice', app: 'clinic', action: 'record.read' });
      got = await rowIndexes(page);
      assert(JSON.stringify(got) === JSON.stringify([late[0], early[4], early[0]]), `alice + record.read: ${got}`);
      r = await search(page, { since: 'yesterday' });
      assert(r.verdict === 'fail' && r.text.includes('since'), `a bad time is refused before sending: ${r.text}`);
      // Pagination: two per page.
      r = await search(page, { subject: 'alice', app: 'clinic', limit: '2' });
      assert((await rowIndexes(page)).length === 2, 'first page holds 2');
      assert(await page.isVisible('#more'), 'a "more" button after a full page');
      for (const want of [4, 5]) {
        await page.evaluate(() => delete document.getElementById('search-status').dataset.verdict);
        await page.click('#more');
        await settled(page, '#search-status');
        got = await rowIndexes(page);
        assert(got.length === want, `after "more": ${got.length} rows, want ${want}`);
      }
      assert(JSON.stringify(got) === JSON.stringify(alice), `all pages: ${got}`);
      assert(!(await page.isVisible('#more')), 'no "more" after the last page');
      // An API error is shown, not swallowed.
      r = await search(page, { subject: 'x'.repeat(300) });
      assert(r.verdict === 'fail', 'an over-long subject is refused');
      assertIncludes(r.text, '400', 'verdict');
      await page.close();
    });

    await test(`${group}: event detail verifies the proof and signatures in the browser; tampered answers are rejected`, async () => {
      const page = await open(`event.html?index=${aliceLate[0]}`);
      let r = await settled(page, '#event-verdict');
      assert(r.verdict === 'fail' && r.text.includes('No API key'), `without a key: ${r.text}`);
      await useKey(page, auditor);
      r = await settled(page, '#event-verdict');
      assert(r.verdict === 'ok', `verdict ${r.verdict}: ${r.text}`);
      assertIncludes(r.text, 'Inclusion proof verified in this browser', 'verdict');
      const checks = await page.locator('#event-checks').innerText();
      for (const c of ['checkpoint signatures', 'commitment', 'leaf hash', 'audit path']) assertIncludes(checks, c, 'checks');
      assert((await page.locator('#event-checks td.status-verified').count()) === 2, 'both log signatures verified');
      assertIncludes(await page.locator('#event-facts').innerText(), 'record.read', 'facts');
      await twoShots(page, 'console-event-detail');

      const path = `**/v1/events/${aliceLate[0]}`;
      const tamperWith = async (change, expect) => {
        await page.route(path, async (route) => {
          const res = await route.fetch();
          const body = await res.json();
          change(body);
          await route.fulfill({ response: res, body: JSON.stringify(body) });
        });
        await page.reload();
        await page.waitForSelector('body[data-ready="true"]', { timeout: WAIT_MS });
        const t = await settled(page, '#event-verdict');
        await page.unroute(path);
        assert(t.verdict === 'fail', `tampered (${expect}) verdict ${t.verdict}: ${t.text}`);
        assertIncludes(t.text, expect, 'verdict');
        return t;
      };
      await tamperWith((b) => {
        const p = b.inclusion_proof.audit_path;
        p[0] = tamper(p[0], 10);
      }, 'audit path does not lead to the checkpoint root');
      await tamperWith((b) => {
        const sig = b.checkpoint.lastIndexOf(' ') + 20;
        b.checkpoint = tamper(b.checkpoint, sig);
      }, 'does not verify');
      await tamperWith((b) => {
        const i = b.checkpoint.indexOf('\n') + 1; // first digit of the tree size
        b.checkpoint = tamper(b.checkpoint, i);
      }, 'checkpoint signatures');
      await tamperWith((b) => { b.event.action = tamper(b.event.action, 2); }, 'commitment');
      await tamperWith((b) => { b.salt = flipHex(b.salt, 5); }, 'the commitment recomputed from event and salt');
      await shot(page, 'console-event-tampered');
      // Untampered again: verifies.
      await page.reload();
      await page.waitForSelector('body[data-ready="true"]', { timeout: WAIT_MS });
      r = await settled(page, '#event-verdict');
      assert(r.verdict === 'ok', `after unroute: ${r.text}`);
      await page.close();
    });

    let bundleText = null;
    await test(`${group}: export downloads an evidence bundle that verifies in the browser`, async () => {
      const page = await open('auditor.html');
      await useKey(page, auditor);
      await page.fill('#f-subject', 'alice');
      await page.fill('#f-app', 'clinic');
      const [download] = await Promise.all([page.waitForEvent('download', { timeout: WAIT_MS }), page.click('#export')]);
      assert(/^veritrail-evidence-alice-.*\.ndjson$/.test(download.suggestedFilename()), `file name ${download.suggestedFilename()}`);
      bundleText = readFileSync(await download.path(), 'utf8');
      const lines = bundleText.trim().split('\n').map((l) => JSON.parse(l));
      assert(lines.length === alice.length + 2, `header + ${alice.length} events + end, got ${lines.length} lines`);
      assert(JSON.stringify(lines.slice(1, -1).map((l) => l.index)) === JSON.stringify(alice), 'the bundle holds alice\'s events newest first');
      assert((await settled(page, '#export-status')).verdict === 'ok', 'export status');
      await page.click('#verify-export');
      const r = await settled(page, '#export-result > div');
      assert(r.verdict === 'ok', `bundle verdict ${r.verdict}: ${r.text}`);
      assertIncludes(r.text, `${alice.length} event(s)`, 'verdict');
      assert((await page.locator('#export-result tbody tr').count()) === alice.length, 'one row per event line');
      assertIncludes(await page.locator('#bundle-header-keys').innerText(), 'the same keys', 'header keys');
      await twoShots(page, 'console-auditor-export');
      await page.close();
    });

    await test(`${group}: the verify page checks a bundle line by line and names the tampered line`, async () => {
      assert(bundleText, 'needs the bundle from the export test');
      const page = await open('verify.html');
      await page.waitForSelector('#checkpoint-result [data-verdict="ok"]', { timeout: WAIT_MS });
      const check = async (text) => {
        await page.fill('#bundle', text);
        await page.evaluate(() => document.getElementById('bundle-result').replaceChildren());
        await page.click('#verify-bundle');
        return settled(page, '#bundle-result > div');
      };
      let r = await check(bundleText);
      assert(r.verdict === 'ok', `valid bundle: ${r.text}`);
      await shot(page, 'console-verify-bundle-ok');
      // One of the log's keys suffices on the verify page; with requireEveryKey (the auditor
      // page, like verify-bundle) every given key must have signed.
      const strict = await page.evaluate(async ({ text, extra }) => {
        const eb = await import(new URL('js/evidence-bundle.js', document.baseURI).href);
        const n = await import(new URL('js/note.js', document.baseURI).href);
        const logKeys = document.getElementById('vkeys').value.split('\n').filter(Boolean);
        const keys = await Promise.all([...logKeys, extra].map(n.parseVkey));
        const one = await eb.verifyEvidenceBundle(text, [await n.parseVkey(logKeys[0])]);
        const all = await eb.verifyEvidenceBundle(text, keys.slice(0, 2), { requireEveryKey: true });
        const more = await eb.verifyEvidenceBundle(text, keys, { requireEveryKey: true });
        return { one: one.ok, all: all.ok, more: more.error };
      }, { text: bundleText, extra: 'PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW' });
      assert(strict.one && strict.all, `one log key, or both: ${JSON.stringify(strict)}`);
      assertIncludes(strict.more, 'line 1: the checkpoint is not signed by the given key PeterNeumann+c74f20a3', 'requireEveryKey');
      const lines = bundleText.split('\n');
      const edit = (n, fn) => {
        const copy = lines.slice();
        copy[n - 1] = fn(copy[n - 1]);
        return copy.join('\n');
      };
      // One character changed in a salt (line 3), a proof hash (line 2), an event body (line 4).
      r = await check(edit(3, (l) => flipHex(l, l.indexOf('"salt":"') + 12)));
      assert(r.verdict === 'fail', `tampered salt: ${r.text}`);
      assertIncludes(r.text, 'line 3: the commitment recomputed from event and salt', 'verdict');
      assert((await page.locator('#bundle-result tr.row-fail').count()) === 1, 'exactly one failing row');
      await shot(page, 'console-verify-bundle-tampered');
      r = await check(edit(2, (l) => tamper(l, l.indexOf('"inclusion_proof":["') + 25)));
      assert(r.verdict === 'fail', `tampered proof: ${r.text}`);
      assertIncludes(r.text, 'line 2: inclusion proof of leaf', 'verdict');
      r = await check(edit(4, (l) => tamper(l, l.indexOf('"action":"record.') + 11)));
      assert(r.verdict === 'fail', `tampered body: ${r.text}`);
      assertIncludes(r.text, 'line 4: the commitment recomputed', 'verdict');
      r = await check(edit(1, (l) => {
        const at = l.indexOf('\\n\\n\\u2014') >= 0 ? l.indexOf('\\n\\n\\u2014') - 5 : l.indexOf('\\n\\n') - 5;
        return tamper(l, at);
      }));
      assert(r.verdict === 'fail', `tampered checkpoint root: ${r.text}`);
      assertIncludes(r.text, 'line 1: checkpoint signature does not verify', 'verdict');
      // A dropped event line is caught by the end line's count.
      const dropped = lines.filter((_, i) => i !== 2).join('\n');
      r = await check(dropped);
      assert(r.verdict === 'fail' && r.text.includes('events were added or removed'), `dropped line: ${r.text}`);
      // The bundle's own keys are not trusted: without the log's keys, nothing verifies.
      await page.fill('#vkeys', '');
      r = await check(bundleText);
      assert(r.verdict === 'fail' && r.text.includes('line 1'), `no keys: ${r.text}`);
      await page.close();
    });

    await test(`${group}: admin creates a hold and a policy; erasure sends nothing until confirmed`, async () => {
      const page = await open('admin.html');
      const sent = [];
      page.on('request', (req) => { if (req.method() !== 'GET') sent.push(`${req.method()} ${new URL(req.url()).pathname}`); });
      await useKey(page, admin);
      await page.waitForSelector('#holds[data-loaded="true"]', { timeout: WAIT_MS });
      await page.waitForSelector('#policies[data-loaded="true"]', { timeout: WAIT_MS });
      // Legal hold on bob.
      await page.fill('#h-target', 'bob');
      await page.fill('#h-reason', 'case 2026-17');
      await page.click('#create-hold');
      let r = await settled(page, '#hold-status');
      assert(r.verdict === 'ok', `hold: ${r.text}`);
      await page.waitForFunction(() => document.querySelectorAll('#hold-rows tr[data-id]').length === 1, null, { timeout: WAIT_MS });
      assertIncludes(await page.locator('#hold-rows').innerText(), 'case 2026-17', 'hold row');
      // Listed by the subject as typed, not by its pseudonym.
      const held = await page.locator('#hold-rows .held-subject').innerText();
      assert(held.includes('bob') && !/[0-9a-f]{64}/.test(held) && !held.includes('pseudonym'), `hold subject: ${held}`);
      const listed = (await api('GET', 'v1/admin/holds', admin)).json.holds[0];
      assert(listed.subject === 'bob' && listed.subject_form === 'typed' && /^[0-9a-f]{64}$/.test(listed.subject_pseudonym), `listed hold: ${JSON.stringify(listed)}`);
      // A hold made before subjects were kept (the API's earlier shape): its
      // pseudonym, marked as such.
      await page.route('**/v1/admin/holds', (route) => route.fulfill({
        status: 200,
        contentType: 'application/json',
        body: JSON.stringify({ holds: [{ ...listed, subject: undefined, subject_form: 'pseudonym_only' }] }),
      }));
      await page.click('#reload-holds');
      await page.waitForFunction(() => document.querySelector('#hold-rows .badge') !== null, null, { timeout: WAIT_MS });
      const old = await page.locator('#hold-rows .held-subject').innerText();
      assert(old.includes(listed.subject_pseudonym) && old.includes('pseudonym') && old.includes('before subjects were kept') && !old.includes('bob'), `earlier hold: ${old}`);
      await page.unroute('**/v1/admin/holds');
      await page.click('#reload-holds');
      await page.waitForFunction(() => document.querySelector('#hold-rows .badge') === null, null, { timeout: WAIT_MS });
      const holdRecords = await api('GET', 'v1/events?action=admin.hold.create', auditor);
      assert(holdRecords.json.events.length > 0 && !JSON.stringify(holdRecords.json.events).includes('"bob"'), 'the log records the hold by pseudonym only');
      // Retention policy: confirmation first.
      await page.fill('#p-app', 'clinic');
      await page.fill('#p-days', '3650');
      await page.click('#create-policy');
      await page.waitForSelector('#confirm-dialog[open]', { timeout: WAIT_MS });
      assertIncludes(await page.locator('#confirm-dialog').innerText(), 'older than 3650 day(s) will be erased', 'policy dialog');
      await page.click('#confirm-ok');
      r = await settled(page, '#policy-status');
      assert(r.verdict === 'ok', `policy: ${r.text}`);
      await page.waitForFunction(() => document.querySelectorAll('#policy-rows tr[data-id]').length === 1, null, { timeout: WAIT_MS });
      // Erasure of a held subject is refused with the server's reason.
      await page.fill('#e-target', 'bob');
      await page.fill('#e-reason', 'subject request');
      await page.click('#erase');
      await page.click('#confirm-ok');
      r = await settled(page, '#erasure-status');
      assert(r.verdict === 'fail' && r.text.includes('legal hold'), `held erasure: ${r.text}`);
      // Erasure of carol: cancel sends nothing.
      await page.fill('#e-target', 'carol');
      await page.fill('#e-reason', 'GDPR art. 17 request 42');
      const before = sent.length;
      await page.click('#erase');
      await page.waitForSelector('#confirm-dialog[open]', { timeout: WAIT_MS });
      const dialog = await page.locator('#confirm-dialog').innerText();
      assertIncludes(dialog, 'every event of data subject "carol"', 'erasure dialog');
      assertIncludes(dialog, 'GDPR art. 17 request 42', 'erasure dialog');
      assert(await page.evaluate(() => document.activeElement.id === 'confirm-cancel'), 'focus starts on Cancel');
      await shot(page, 'console-admin-confirm');
      await page.keyboard.press('Escape');
      r = await settled(page, '#erasure-status');
      assert(r.verdict === 'warn' && r.text.includes('Nothing was sent'), `cancelled: ${r.text}`);
      await page.click('#erase');
      await page.click('#confirm-cancel');
      await sleep(200);
      assert(sent.length === before, `cancel must send nothing, sent: ${sent.slice(before)}`);
      const still = await api('GET', `v1/events/${carol[0]}`, auditor);
      assert(still.status === 200 && still.json.event.subject === 'carol', `carol's event still reads: ${still.status}`);
      // Confirm: erased.
      await page.click('#erase');
      await page.click('#confirm-ok');
      r = await settled(page, '#erasure-status');
      assert(r.verdict === 'ok', `erasure: ${r.text}`);
      assertIncludes(r.text, 'every event of it now answers 410 Gone', 'subject erasure');
      for (const i of carol) {
        const gone = await api('GET', `v1/events/${i}`, auditor);
        assert(gone.status === 410, `carol's event ${i} erased: ${gone.status}`);
      }
      for (const i of [...alice, early[1]]) {
        const kept = await api('GET', `v1/events/${i}`, auditor);
        assert(kept.status === 200, `only carol's events erased: event ${i} reads ${kept.status}`);
      }
      assert(sent.slice(before).filter((s) => s === 'POST /v1/erasure').length === 1, `one erasure request: ${sent.slice(before)}`);
      // Erasure by leaf index, confirmed.
      await page.check('#e-kind-indexes');
      await page.fill('#e-target', `${late[1]}`);
      await page.fill('#e-reason', 'test data');
      await page.click('#erase');
      assertIncludes(await page.locator('#confirm-dialog').innerText(), `1 event(s): leaf index ${late[1]}`, 'index erasure dialog');
      await page.click('#confirm-ok');
      r = await settled(page, '#erasure-status');
      assert(r.verdict === 'ok' && (await page.getAttribute('#erasure-status', 'data-erased')) === String(late[1]), `index erasure: ${r.text}`);
      await twoShots(page, 'console-admin');
      // Releasing the hold and deleting the policy ask first too; cancel keeps them.
      await page.click('#hold-rows button');
      assertIncludes(await page.locator('#confirm-dialog').innerText(), 'case 2026-17', 'release dialog');
      await page.click('#confirm-cancel');
      assert((await page.locator('#hold-rows tr[data-id]').count()) === 1, 'the hold stays after cancel');
      await page.click('#hold-rows button');
      await page.click('#confirm-ok');
      await page.waitForFunction(() => document.querySelectorAll('#hold-rows tr[data-id]').length === 0, null, { timeout: WAIT_MS });
      assert((await api('GET', 'v1/admin/holds', admin)).json.holds.length === 0, 'the hold is released on the server');
      await page.click('#policy-rows button');
      await page.click('#confirm-ok');
      await page.waitForFunction(() => document.querySelectorAll('#policy-rows tr[data-id]').length === 0, null, { timeout: WAIT_MS });
      assert((await api('GET', 'v1/admin/retention', admin)).json.policies.length === 0, 'the policy is deleted on the server');
      // The event page now shows it erased (410), with the reason.
      await page.goto(new URL(`event.html?index=${carol[0]}`, base).href);
      r = await settled(page, '#event-verdict');
      assert(r.verdict === 'warn', `erased event verdict ${r.verdict}: ${r.text}`);
      assertIncludes(r.text, 'was erased (410 Gone)', 'erased verdict');
      assertIncludes(r.text, 'GDPR art. 17 request 42', 'erased verdict');
      await twoShots(page, 'console-event-erased');
      // An auditor key may not administer: 403 is explained.
      await useKey(page, auditor);
      await page.goto(new URL('admin.html', base).href);
      r = await settled(page, '#hold-status');
      assert(r.verdict === 'fail' && r.text.includes('403') && r.text.includes('role is insufficient'), `auditor on admin page: ${r.text}`);
      await page.close();
    });

    await test(`${group}: search by when events occurred, outcome and purpose; the console's own activity is hidden until asked for`, async () => {
      const page = await open('auditor.html');
      await useKey(page, auditor);
      let r = await search(page, { 'occurred-since': '2026-03-01', 'occurred-until': '2026-04-01' });
      assert(r.verdict === 'ok', `March: ${r.text}`);
      assert(JSON.stringify(await rowIndexes(page)) === JSON.stringify(erin), `March finds erin's events: ${await rowIndexes(page)} want ${erin}`);
      assertIncludes(r.text, `${erin.length} of ${erin.length}`, 'exact count');
      assert(await page.$eval('#search-status', (b) => b.classList.contains('summary') && !b.classList.contains('verdict-ok')), 'results are styled neutrally, not as a verdict');
      const head = await page.$$eval('#results thead th', (ths) => ths.map((t) => t.textContent));
      for (const col of ['Occurred', 'Purpose', 'Outcome', 'Received']) assert(head.includes(col), `column ${col} in ${head}`);
      assert(head.indexOf('Occurred') < head.indexOf('Received'), 'occurred comes before received');
      const firstRow = await page.locator('#result-rows tr').first().innerText();
      for (const part of ['2026-03-06T08:15:00', 'treatment', 'success']) assertIncludes(firstRow, part, 'newest March row');
      r = await search(page, { 'occurred-since': '2026-12-01', 'occurred-until': '2027-01-01', subject: 'erin' });
      assert((await rowIndexes(page)).length === 0 && /No matching events/.test(r.text), `December finds none of erin's: ${r.text}`);
      r = await search(page, { subject: 'erin', outcome: 'denied' });
      assert(JSON.stringify(await rowIndexes(page)) === JSON.stringify(erinDenied), `denied: ${await rowIndexes(page)} want ${erinDenied}`);
      assert((await page.locator('#result-rows td.outcome-denied').count()) === erinDenied.length, 'denied outcomes are marked');
      r = await search(page, { subject: 'erin', purpose: 'billing' });
      assert((await rowIndexes(page)).length === 3, `billing: ${await rowIndexes(page)}`);
      // The searches above named erin: they are audit records about erin, hidden by default.
      r = await search(page, { subject: 'erin' });
      assert(JSON.stringify(await rowIndexes(page)) === JSON.stringify(erin), `hidden by default: ${await rowIndexes(page)}`);
      assertIncludes(r.text, 'hidden', 'summary says audit records are hidden');
      r = await search(page, { subject: 'erin', audit: true });
      const rows = await page.$$eval('#result-rows tr', (trs) => trs.map((t) => ({ audit: t.classList.contains('audit-record'), text: t.innerText })));
      assert(rows.filter((x) => x.audit).length >= 4, `audit records shown with the toggle: ${rows.length} rows`);
      assert(rows.filter((x) => x.audit).every((x) => x.text.includes('log\u2019s own record') && x.text.includes('audit.search')), 'audit records are marked');
      await twoShots(page, 'console-auditor-occurred');
      // Paging with counts: 2 per page.
      r = await search(page, { subject: 'erin', limit: '2' });
      assertIncludes(r.text, `2 of ${erin.length}`, 'first page count');
      await page.click('#more');
      await page.waitForFunction(() => document.querySelectorAll('#result-rows tr').length === 4, null, { timeout: WAIT_MS });
      await page.close();
    });

    await test(`${group}: a search that matches little keeps going past empty pages, showing what it examined`, async () => {
      const page = await open('auditor.html');
      await useKey(page, auditor);
      // Each answer ends early with a cursor and no events, as the server does for a sparse query over a large log.
      let calls = 0;
      await page.route('**/v1/events?*', async (route) => {
        const url = new URL(route.request().url());
        calls += 1;
        if (calls < 3) {
          url.searchParams.set('limit', '1');
          url.searchParams.set('subject', 'nobody-at-all');
          const res = await route.fetch({ url: url.href });
          const body = await res.json();
          body.next_cursor = 'djE6MTAwMDAwMA'; // v1:1000000: older than everything after it
          body.examined = 20000 * calls;
          body.total = { count: 0, exact: false };
          return route.fulfill({ response: res, body: JSON.stringify(body) });
        }
        return route.continue();
      });
      const r = await search(page, { subject: 'erin' });
      assert(calls >= 3, `the console asked again after empty pages (${calls} requests)`);
      assert(r.verdict === 'ok' && (await rowIndexes(page)).length > 0, `found erin's events after empty pages: ${r.text}`);
      assertIncludes(r.text, 'examined so far', 'summary');
      await page.unroute('**/v1/events?*');
      await page.close();
    });

    await test(`${group}: one export gives a printable report, a CSV and the bundle; the report verifies like the bundle and prints to PDF`, async () => {
      const page = await open('auditor.html');
      await useKey(page, auditor);
      await page.fill('#f-subject', 'erin');
      const files = {};
      page.on('download', (d) => { files[d.suggestedFilename().split('.').pop()] = d; });
      await page.click('#export');
      await page.waitForFunction(() => document.querySelectorAll('#report-links a').length === 3, null, { timeout: WAIT_MS });
      const rs = await settled(page, '#report-status');
      assert(rs.verdict === 'ok', `report status: ${rs.text}`);
      for (const ext of ['ndjson', 'html', 'csv']) assert(files[ext], `a .${ext} download (${Object.keys(files)})`);
      const dir = mkdtempSync(join(tmpdir(), 'veritrail-report-'));
      try {
        const html = join(dir, 'report.html');
        await files.html.saveAs(html);
        const csvText = readFileSync(await files.csv.path(), 'utf8');
        const csvLines = csvText.trim().split('\r\n');
        assert(csvLines.length === erin.length + 1, `CSV header + ${erin.length} rows: ${csvLines.length}`);
        assertIncludes(csvLines[0], 'occurred_at', 'CSV header');
        const reportText = readFileSync(html, 'utf8');
        assert(!/<script(?![^>]*application\/x-ndjson;base64)/i.test(reportText), 'the report runs no script');
        // verify-bundle accepts the report and checks the bundle it embeds.
        const log = await (await fetch(new URL('v1/log', base))).json();
        const vkeys = Object.values(log.verifier_keys).flatMap((k) => ['--vkey', k]);
        const cli = spawnSync(bin, ['verify-bundle', html, ...vkeys], { encoding: 'utf8', timeout: 30000 });
        assert(cli.status === 0, `verify-bundle on the report: ${cli.stdout}${cli.stderr}`);
        assertIncludes(cli.stdout, `OK: ${erin.length} event(s)`, 'verify-bundle');
        // A changed byte in the embedded bundle is caught.
        const b64start = reportText.indexOf('>', reportText.indexOf('id="veritrail-evidence-bundle"')) + 200;
        const bad = join(dir, 'bad.html');
        writeFileSync(bad, reportText.slice(0, b64start) + (reportText[b64start] === 'A' ? 'B' : 'A') + reportText.slice(b64start + 1));
        const cliBad = spawnSync(bin, ['verify-bundle', bad, ...vkeys], { encoding: 'utf8', timeout: 30000 });
        assert(cliBad.status !== 0, 'a tampered report is rejected');
        // The verify page accepts the report file.
        const vp = await open('verify.html');
        await vp.fill('#vkeys', Object.values(log.verifier_keys).join('\n'));
        await vp.setInputFiles('#bundle-file', html);
        await vp.waitForFunction(() => document.getElementById('bundle').value.length > 0, null, { timeout: WAIT_MS });
        await vp.click('#verify-bundle');
        const vr = await settled(vp, '#bundle-result > div');
        assert(vr.verdict === 'ok', `verify page on the report: ${vr.text}`);
        assert((await vp.getAttribute('#bundle-result', 'data-source')) === 'report', 'verified from the report');
        await vp.close();
        // The report itself: screenshots, then print to PDF and read it back.
        const rp = await context.newPage();
        await rp.goto(`file://${html}`);
        await twoShots(rp, 'console-evidence-report');
        await rp.close();
        const pdf = join(dir, 'report.pdf');
        const print = spawnSync('/usr/bin/chromium', ['--headless', '--no-sandbox', '--disable-gpu', '--no-pdf-header-footer', `--print-to-pdf=${pdf}`, `file://${html}`], { encoding: 'utf8', timeout: 60000 });
        assert(existsSync(pdf), `chromium printed a PDF: ${print.stderr}`);
        const txt = spawnSync('pdftotext', ['-layout', pdf, '-'], { encoding: 'utf8', timeout: 30000 });
        assert(txt.status === 0, `pdftotext: ${txt.stderr}`);
        const text = txt.stdout.replace(/\s+/g, ' ');
        const denied = erinDenied.length;
        assertIncludes(text, `${erin.length} event(s): ${erin.length - denied} success, ${denied} denied`, 'PDF counts');
        assertIncludes(text, 'Each of the 6 events below was checked in a web browser', 'PDF verification paragraph');
        assertIncludes(text, 'No independent witness has co-signed this checkpoint', 'PDF witness sentence');
        assertIncludes(text, 'were taken from the log server itself', 'PDF key source warning');
        assertIncludes(text, 'What completeness means here', 'PDF completeness');
        assertIncludes(text, 'dr-erin-0', 'PDF actor counts');
        // The author is the key's name as the log knows it (GET /v1/whoami).
        const who = await (await fetch(new URL('v1/whoami', base), { headers: { authorization: `Bearer ${auditor}` } })).json();
        assertIncludes(text, `Run by console-auditor (auditor key ${who.id})`, 'PDF author');
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
      await page.close();
    });

    await test(`${group}: log and verify pages screenshots, and the console pages have labels, landmarks and keyboard access`, async () => {
      // The log's growth from its leaves' receive times: every point at or
      // below the tree size, never shrinking, ending at the checkpoint's size.
      const growth = await (await fetch(new URL('v1/growth?points=8', base))).json();
      const sizes = growth.points.map((p) => Number(p.size));
      assert(growth.points.length === 9 && sizes.every((n, i) => i === 0 || n >= sizes[i - 1]) && sizes[8] === Number(growth.tree_size) && sizes[8] > 0, `growth: ${JSON.stringify(growth)}`);
      assert((await fetch(new URL('v1/growth?points=65', base))).status === 400, 'at most 64 points');
      for (const [path, name] of [['', 'console-log'], ['verify.html', 'console-verify']]) {
        const page = await context.newPage();
        await page.goto(new URL(path, base).href);
        await page.waitForSelector('#sig-verdict[data-verdict="ok"], body[data-ready="true"]', { timeout: WAIT_MS });
        if (path === '') {
          // Drawn from the log's history as soon as the page opens.
          await page.waitForFunction(() => Number(document.getElementById('chart').dataset.history) >= 2, null, { timeout: WAIT_MS });
        }
        await twoShots(page, name);
        await page.close();
      }
      for (const path of ['auditor.html', `event.html?index=${early[0]}`, 'admin.html', 'alerts.html', 'verify.html', '']) {
        const page = await context.newPage();
        await page.goto(new URL(path, base).href);
        const problems = await page.evaluate(() => {
          const out = [];
          for (const f of document.querySelectorAll('textarea, input, select')) {
            if (f.type === 'hidden') continue;
            if ((!f.labels || f.labels.length === 0) && !f.getAttribute('aria-label')) out.push(`#${f.id} has no label`);
          }
          for (const b of document.querySelectorAll('button, a[href]')) {
            if (!(b.textContent.trim() || b.getAttribute('aria-label'))) out.push(`a ${b.tagName} without a name`);
          }
          for (const sel of ['header', 'main', 'nav[aria-label="Main"]', 'footer']) if (!document.querySelector(sel)) out.push(`no ${sel}`);
          if (document.querySelectorAll('h1').length !== 1) out.push('not exactly one h1');
          for (const nav of ['index.html', 'verify.html', 'auditor.html', 'alerts.html', 'admin.html']) {
            if (!document.querySelector(`nav.site-nav a[href="${nav}"]`)) out.push(`no link to ${nav}`);
          }
          return out;
        });
        assert(problems.length === 0, `${path || 'log page'}: ${problems.join('; ')}`);
        await page.keyboard.press('Tab');
        assert(await page.evaluate(() => document.activeElement.classList.contains('skip-link')), `${path}: first Tab reaches the skip link`);
        await page.close();
      }
      // Keyboard only: enter the key and search with Enter.
      const page = await open('auditor.html');
      await page.focus('#api-key');
      await page.keyboard.type(auditor);
      await page.keyboard.press('Enter');
      await page.waitForSelector('body[data-has-key="true"]', { timeout: WAIT_MS });
      await page.focus('#f-subject');
      await page.keyboard.type('alice');
      await page.keyboard.press('Tab');
      await page.keyboard.press('Tab');
      await page.keyboard.press('Tab');
      await page.keyboard.press('Tab');
      await page.keyboard.type('clinic');
      assert((await page.evaluate(() => document.activeElement.id)) === 'f-app', 'Tab order reaches the app field');
      await page.keyboard.press('Enter');
      const r = await settled(page, '#search-status');
      assert(r.verdict === 'ok', `keyboard search: ${r.text}`);
      assert(JSON.stringify(await rowIndexes(page)) === JSON.stringify(alice), `alice's events by keyboard: ${await rowIndexes(page)}`);
      // Focus is visible: the focused element gets an outline.
      await page.focus('#search');
      await page.keyboard.press('Shift+Tab');
      await page.keyboard.press('Tab');
      const outline = await page.evaluate(() => getComputedStyle(document.activeElement).outlineStyle);
      assert(outline !== 'none', `focused element has an outline (${outline})`);
      await page.close();
    });
    await test(`${group}: the event page says what happened first, links related records, and verifies with keys the auditor pastes`, async () => {
      const page = await open(`event.html?index=${erin[0]}`);
      await useKey(page, auditor);
      let r = await settled(page, '#event-verdict');
      assert(r.verdict === 'ok', `verdict: ${r.text}`);
      const order = await page.$$eval('main section', (ss) => ss.map((x) => x.id));
      assert(order.indexOf('event-section') < order.indexOf('proof-section'), `what happened comes before verification: ${order}`);
      const facts = await page.locator('#event-facts').innerText();
      for (const part of ['Who', 'dr-erin-1', 'Whose data', 'erin', 'When', '2026-03-06T08:15:00', 'Why (purpose)', 'treatment', 'From where', '192.0.2.44', 'ward', 'B-4', 'reason code', 'R5']) assertIncludes(facts, part, 'what happened');
      assert(!(await page.isVisible('#event-checks table')), 'hash-level steps are folded');
      const trust = await settled(page, '#trust-note');
      assert(trust.verdict === 'warn' && trust.text.includes('taken from this server itself') && trust.text.includes('No independent witness'), `server keys and no witness said plainly: ${trust.text}`);
      const related = await page.$$eval('#related-links a', (as) => as.map((a) => a.getAttribute('href')));
      assert(related.some((h) => h.includes('subject=erin') && h.includes('app=veritrail')), `a link to the audit records about erin: ${related}`);
      // Pasted keys: the right ones verify, and the page says whose keys were used.
      const log = await (await fetch(new URL('v1/log', base))).json();
      await page.click('#own-keys summary');
      await page.fill('#trusted-keys', Object.values(log.verifier_keys).join('\n'));
      await page.evaluate(() => delete document.getElementById('event-verdict').dataset.verdict);
      await page.click('#use-trusted-keys');
      r = await settled(page, '#event-verdict');
      assert(r.verdict === 'ok' && r.text.includes('the keys you pasted'), `own keys: ${r.text}`);
      assert((await page.getAttribute('#trust-note', 'data-keys-from')) === 'own', 'the trust note names the pasted keys');
      await twoShots(page, 'console-event-what-happened');
      // Someone else's key: the checkpoint does not verify.
      const other = 'vm/veritrail+00000000+Aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa';
      await page.fill('#trusted-keys', other);
      await page.evaluate(() => ['event-verdict', 'trust-note'].forEach((id) => delete document.getElementById(id).dataset.verdict));
      await page.click('#use-trusted-keys');
      const bad = await Promise.race([settled(page, '#event-verdict'), settled(page, '#trust-note')]);
      assert(bad.verdict === 'fail', `a key that did not sign is refused: ${bad.text}`);
      await page.click('#clear-trusted-keys');
      r = await settled(page, '#event-verdict');
      assert(r.verdict === 'ok', `back to the server's keys: ${r.text}`);
      // The related link opens the auditor page with the search run.
      await page.goto(new URL(related.find((h) => h.includes('app=veritrail')), new URL('event.html', base)).href);
      await page.waitForSelector('body[data-ready="true"]', { timeout: WAIT_MS });
      const s = await settled(page, '#search-status');
      assert(s.verdict === 'ok' && (await rowIndexes(page)).length > 0, `related audit records listed: ${s.text}`);
      await page.close();
    });

    await test(`${group}: an entered key is named with its role; the admin page says once that an auditor key cannot administer`, async () => {
      const page = await open('auditor.html');
      await useKey(page, auditor);
      await page.waitForSelector('body[data-key-role="auditor"]', { timeout: WAIT_MS });
      const who = await page.locator('#key-identity').innerText();
      assertIncludes(who, 'console-auditor', 'key name');
      assertIncludes(who, 'auditor key', 'key role');
      const refused = [];
      page.on('response', (r) => { if (r.status() === 403) refused.push(r.url()); });
      await page.goto(new URL('admin.html', base).href);
      await page.waitForSelector('body[data-admin-blocked="true"]', { timeout: WAIT_MS });
      const note = await page.locator('#role-note').innerText();
      assertIncludes(note, 'cannot do admin work', 'role note');
      assert((await page.locator('text=cannot do admin work').count()) === 1, 'said once');
      assert(refused.length === 0, `no request was refused with 403: ${refused}`);
      await shot(page, 'console-admin-auditor-key');
      await page.close();
    });

    await test(`${group}: every page says plainly what was checked, with whose keys, and that no witness cosigned`, async () => {
      const page = await context.newPage();
      await page.goto(new URL('index.html', base).href);
      // A first visit: nothing remembered in this browser yet. Wait for the
      // page to finish remembering what it loaded, or it could do so after
      // the clear below and make the reload a second visit.
      await page.waitForSelector('#trust-summary[data-verdict]', { timeout: WAIT_MS });
      await page.evaluate(() => localStorage.clear());
      await page.reload();
      await page.waitForSelector('#trust-summary[data-verdict]', { timeout: WAIT_MS });
      const summary = await page.locator('#trust-summary').innerText();
      assert(/\d+ entries\. The operator\u2019s two signatures were checked in this browser at \d\d:\d\d UTC\. No independent witness has co-signed yet\./.test(summary), `log page summary: ${summary}`);
      assert((await page.getAttribute('#trust-summary', 'data-verdict')) === 'warn', 'no witness is a warning');
      assert(!(await page.locator('#sig-verdict').innerText()).includes('Witness cosignatures verified: none'), 'no witness claim inside the green box');
      const first = await page.locator('#keys-note').innerText();
      assert(first.includes('First visit') && !first.includes('earlier visit'), `first visit wording: ${first}`);
      await page.reload();
      await page.waitForSelector('#trust-summary[data-verdict]', { timeout: WAIT_MS });
      await page.waitForFunction(() => /earlier visit/.test(document.getElementById('keys-note').textContent), null, { timeout: WAIT_MS });
      await twoShots(page, 'console-log-summary');
      await page.close();
      // The verify page: prefilled keys are flagged as the server's; a remembered checkpoint is re-checked on the next visit.
      const vp = await open('verify.html');
      const src = await settled(vp, '#keys-source');
      assert(src.verdict === 'warn' && src.text.includes('came from the server you are checking'), `key source: ${src.text}`);
      await vp.click('#remember-checkpoint');
      await vp.waitForFunction(() => /Remembered/.test(document.getElementById('checkpoint-result').textContent), null, { timeout: WAIT_MS });
      await submit([ev('frank', 'record.read', 90)]);
      await vp.reload();
      await vp.waitForSelector('body[data-ready="true"]', { timeout: WAIT_MS });
      const cons = await settled(vp, '#consistency-result [data-verdict]');
      assert(cons.verdict === 'ok', `the remembered checkpoint was re-checked on load: ${cons.text}`);
      await vp.fill('#vkeys', (await vp.inputValue('#vkeys')) + '\n');
      assert((await vp.getAttribute('#keys-source', 'data-source')) === 'given', 'edited keys are the person\u2019s own');
      await vp.close();
    });

    await test(`${group}: zero console errors (CSP, favicon, scripts) on every page visited`, async () => {
      for (const path of ['', 'verify.html', 'auditor.html', 'admin.html', `event.html?index=${erin[0]}`]) {
        const page = await context.newPage();
        await page.goto(new URL(path, base).href);
        await page.waitForLoadState('networkidle');
        await page.close();
      }
      for (const p of ['/', '/verify.html', '/auditor.html', '/admin.html', '/event.html']) assert(pagesSeen.has(p) || p === '/', `visited ${p}`);
      assert(consoleErrors.length === 0, `console errors:\n${consoleErrors.join('\n')}`);
    });
  } finally {
    await context.close();
    await srv.stop();
  }
}
