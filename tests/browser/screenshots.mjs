#!/usr/bin/env node
// The console's pictures in docs/img/, taken from the real server
// ($VERITRAIL_BIN serve, on 127.0.0.1:0 with a throwaway data directory)
// holding realistic events: eight patients, eight staff, several actions,
// some denied, all of which occurred in March and were received now, with
// an alert rule that fires on repeated denials. Each page is taken at a
// laptop size (1366×768) and a phone size (390×844): the search for what
// happened in March (occurred column, outcome filter), an event, the
// verification of an export, the alerts, and the printable evidence report.
// Run by scripts/screenshots.sh; not part of the tests.

import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const REPO = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const OUT = process.env.SCREENSHOTS_OUT || join(REPO, 'docs', 'img');
const BIN = process.env.VERITRAIL_BIN;
const WAIT_MS = 30000;
const LAPTOP = { width: 1366, height: 768 };
const PHONE = { width: 390, height: 844 };

const RULES = `
[alerts]
[[alerts.rule]]
name = "repeated-denials"
kind = "threshold"
match = { outcome = "denied" }
group_by = "actor"
more_than = 2
window = "1h"
`;

/** Starts the server; resolves with its URL, data directory, printed keys and a stop function. */
async function startServer() {
  const dir = mkdtempSync(join(tmpdir(), 'veritrail-screenshots-'));
  const data = join(dir, 'data');
  const config = join(dir, 'veritrail.toml');
  writeFileSync(config, RULES);
  const child = spawn(BIN, ['serve', '--data', data, '--listen', '127.0.0.1:0', '--origin', 'audit.hospital.example/log', '--config', config], { stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  const stop = async () => {
    child.kill('SIGTERM');
    await new Promise((ok) => (child.exitCode !== null ? ok() : child.on('exit', ok)));
    rmSync(dir, { recursive: true, force: true });
  };
  const base = await new Promise((ok, fail) => {
    const timer = setTimeout(() => fail(new Error(`no "listening on" within 60 s:\n${output}`)), 60000);
    child.stdout.on('data', (c) => {
      output += c;
      const m = /listening on (http:\/\/127\.0\.0\.1:\d+)/.exec(output);
      if (m) { clearTimeout(timer); ok(`${m[1]}/`); }
    });
    child.stderr.on('data', (c) => (output += c));
    child.on('exit', (code) => fail(new Error(`server exited with ${code}:\n${output}`)));
  });
  // The verifier keys as the server printed them at start: what an
  // operator hands an auditor out of band.
  const printed = [...output.matchAll(/^\s+(?:ecdsa|ed25519)\s+(\S+)$/gm)].map((m) => m[1]);
  return { base, data, printed, stop };
}

const STAFF = ['dr-martin', 'dr-okafor', 'dr-lindqvist', 'nurse-dubois', 'nurse-haddad', 'clerk-novak', 'pharm-silva', 'dr-moreau'];
const PATIENTS = ['patient-1042', 'patient-2210', 'patient-3307', 'patient-4481', 'patient-5129', 'patient-6630', 'patient-7712', 'patient-8895'];
const ACTIONS = [
  ['record.read', 'patient_record', 'treatment'],
  ['record.write', 'patient_record', 'treatment'],
  ['lab_result.read', 'lab_result', 'treatment'],
  ['prescription.create', 'prescription', 'treatment'],
  ['invoice.read', 'invoice', 'billing'],
  ['record.print', 'patient_record', 'continuity of care'],
  ['record.export', 'patient_record', 'research'],
];
const WARDS = ['A-2', 'B-4', 'C-1', 'ICU'];

/** About 120 events spread over March 2026; one in seven denied, and a burst of denials by one person. */
function marchEvents() {
  const events = [];
  for (let i = 0; i < 112; i++) {
    const [action, type, purpose] = ACTIONS[(i * 5) % ACTIONS.length];
    const day = 1 + ((i * 7) % 31);
    const hour = 7 + ((i * 3) % 12);
    const denied = i % 7 === 3;
    events.push({
      actor: { id: STAFF[i % STAFF.length], type: 'user', ip: `10.20.${1 + (i % 4)}.${10 + (i % 40)}` },
      action,
      resource: { type, id: `${type.split('_')[0]}-${4000 + i}` },
      subject: PATIENTS[(i * 3) % PATIENTS.length],
      purpose,
      outcome: denied ? 'denied' : i % 23 === 5 ? 'failure' : 'success',
      occurred_at: `2026-03-${String(day).padStart(2, '0')}T${String(hour).padStart(2, '0')}:${String((i * 13) % 60).padStart(2, '0')}:00Z`,
      id: `his-${i}`,
      context: { ward: WARDS[i % WARDS.length], ...(denied ? { reason: 'no care relationship' } : {}) },
    });
  }
  // A clerk opening records of patients in another ward, four times in an hour.
  for (let k = 0; k < 4; k++) {
    events.push({
      actor: { id: 'clerk-novak', type: 'user', ip: '10.20.3.41' },
      action: 'record.read',
      resource: { type: 'patient_record', id: `patient-${5000 + k}` },
      subject: PATIENTS[(k * 2 + 1) % PATIENTS.length],
      purpose: 'billing',
      outcome: 'denied',
      occurred_at: `2026-03-14T22:${String(5 + k * 12).padStart(2, '0')}:00Z`,
      id: `his-burst-${k}`,
      context: { ward: 'ICU', reason: 'no care relationship' },
    });
  }
  // Shipped in the order they occurred, as the hospital's system would.
  return events.sort((a, b) => a.occurred_at.localeCompare(b.occurred_at));
}

async function main() {
  if (!BIN) throw new Error('set VERITRAIL_BIN to the veritrail binary');
  mkdirSync(OUT, { recursive: true });
  const srv = await startServer();
  const browser = await chromium.launch({
    executablePath: '/usr/bin/chromium',
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  const work = mkdtempSync(join(tmpdir(), 'veritrail-screenshots-files-'));
  const errors = [];
  try {
    const { base } = srv;
    const call = async (method, path, token, body) => {
      const res = await fetch(new URL(path, base), { method, headers: { Authorization: `Bearer ${token}`, 'Content-Type': 'application/json' }, body: body ? JSON.stringify(body) : undefined });
      const json = await res.json();
      if (res.status >= 300) throw new Error(`${method} ${path}: ${res.status} ${JSON.stringify(json)}`);
      return json;
    };
    const admin = readFileSync(join(srv.data, 'admin.key'), 'utf8').trim();
    const writer = (await call('POST', 'v1/admin/keys', admin, { name: 'hospital-his', role: 'writer', app: 'his' })).key;
    const auditor = (await call('POST', 'v1/admin/keys', admin, { name: 'compliance-office', role: 'auditor' })).key;
    const receipts = (await call('POST', 'v1/events?wait=checkpoint', writer, { events: marchEvents() })).events;

    const context = await browser.newContext({ viewport: LAPTOP, acceptDownloads: true });
    context.on('page', (p) => p.on('console', (m) => { if (m.type() === 'error') errors.push(`${p.url()}: ${m.text()}`); }));
    const open = async (path) => {
      const page = await context.newPage();
      await page.goto(new URL(path, base).href);
      // Module scripts have run by the load event; the pages that set up
      // more than their key panel say when they are ready.
      await page.waitForLoadState('load');
      if (!path.startsWith('alerts')) await page.waitForSelector('body[data-ready="true"]', { timeout: WAIT_MS });
      await page.fill('#api-key', auditor);
      await page.click('#use-key');
      await page.waitForSelector('body[data-has-key="true"]', { timeout: WAIT_MS });
      return page;
    };
    const settled = (page, sel) => page.waitForSelector(`${sel}[data-verdict]:not([data-verdict="busy"])`, { timeout: WAIT_MS });
    // Laptop: the whole page (or from `at`, one screen); phone: one screen
    // from `at`, or from the top.
    const shots = async (page, name, { at = null, laptopAt = null } = {}) => {
      for (const [size, viewport] of [['laptop', LAPTOP], ['phone', PHONE]]) {
        await page.setViewportSize(viewport);
        await page.waitForTimeout(200);
        const from = size === 'phone' ? at : laptopAt;
        if (from) await page.locator(from).evaluate((e) => e.scrollIntoView({ block: 'start' }));
        else await page.evaluate(() => window.scrollTo(0, 0));
        const path = join(OUT, `${name}-${size}.png`);
        await page.screenshot({ path, fullPage: size === 'laptop' && !laptopAt });
        console.log(`wrote ${path}`);
      }
      await page.setViewportSize(LAPTOP);
    };

    // What happened in March: the denied accesses, by when they occurred.
    const search = await open('auditor.html');
    await search.fill('#f-occurred-since', '2026-03-01');
    await search.fill('#f-occurred-until', '2026-04-01');
    await search.selectOption('#f-outcome', 'denied');
    await search.fill('#f-limit', '10');
    await search.click('#search');
    await settled(search, '#search-status');
    await shots(search, 'console-search-march', { at: '#search-status' });

    // The export of that query, verified in the browser, and its report.
    const files = {};
    search.on('download', (d) => { files[d.suggestedFilename().split('.').pop()] = d; });
    await search.click('#export');
    await search.waitForFunction(() => document.querySelectorAll('#report-links a').length === 3, null, { timeout: WAIT_MS });
    await settled(search, '#report-status');
    await search.click('#verify-export');
    await settled(search, '#export-result > div');
    await shots(search, 'console-export-verified', { at: '#export-result', laptopAt: '#h-export' });
    const report = join(work, 'report.html');
    await files.html.saveAs(report);
    const rp = await context.newPage();
    await rp.goto(`file://${report}`);
    await shots(rp, 'evidence-report');
    await rp.close();
    await search.close();

    // One event, checked with keys the auditor pasted (as the server printed them).
    const denied = receipts[marchEvents().findIndex((e) => e.outcome === 'denied')].index;
    const event = await open(`event.html?index=${denied}`);
    await settled(event, '#event-verdict');
    if (srv.printed.length === 2) {
      await event.click('#own-keys summary');
      await event.fill('#trusted-keys', srv.printed.join('\n'));
      await event.evaluate(() => delete document.getElementById('event-verdict').dataset.verdict);
      await event.click('#use-trusted-keys');
      await settled(event, '#event-verdict');
    }
    await shots(event, 'console-event', { at: '#event-section' });
    await event.close();

    // The alerts the rule raised.
    const raised = await call('GET', 'v1/alerts?limit=50', auditor);
    if (raised.alerts.length === 0) throw new Error(`the rule raised no alert: ${JSON.stringify(raised)}`);
    const alerts = await open('alerts.html');
    await alerts.waitForSelector('#alerts-table tbody tr', { timeout: WAIT_MS });
    await shots(alerts, 'console-alerts', { at: '#h-alerts' });
    await alerts.close();
    await context.close();
    if (errors.length) throw new Error(`console errors:\n${errors.join('\n')}`);
  } finally {
    await browser.close();
    await srv.stop();
    rmSync(work, { recursive: true, force: true });
  }
}

main().catch((e) => {
  console.error(e && e.stack ? e.stack : e);
  process.exit(1);
});
