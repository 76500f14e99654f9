#!/usr/bin/env node
// Browser tests for the web console: Debian's Chromium, driven by
// playwright-core, against the pages in web/ served by a small HTTP server
// on 127.0.0.1 (port 0). Sections:
//   1. the JavaScript verifier against every RFC 6962 proof vector, in the page;
//   2. the verify page with the published signed-note vectors and tampered copies;
//   3. both pages against a stand-in log (fakelog.mjs) that signs real checkpoints;
//   4. the real server ($VERITRAIL_BIN serve), skipped with a reason when absent;
//   5. the auditor console against the real server (console.mjs).
// Prints "N passed, M failed, K skipped" last and exits non-zero on failure.
// Screenshots go to test-output/browser/.

import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync } from 'node:fs';
import http from 'node:http';
import { tmpdir } from 'node:os';
import { dirname, extname, join, normalize, relative, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';
import { consoleTests } from './console.mjs';
import { FakeLog, makeEd25519Key, mth, signCheckpoint } from './fakelog.mjs';

const REPO = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const WEB = join(REPO, 'web');
const OUT = join(REPO, 'test-output', 'browser');
const CHROMIUM = '/usr/bin/chromium';
const WAIT_MS = 15000;

// ---- a minimal runner ---------------------------------------------------------

const counts = { passed: 0, failed: 0, skipped: 0 };
const failures = [];
const only = process.env.BROWSER_TEST_FILTER || '';

async function test(name, fn) {
  if (only && !name.includes(only)) return;
  const started = Date.now();
  try {
    await fn();
    counts.passed++;
    console.log(`ok - ${name} (${Date.now() - started} ms)`);
  } catch (e) {
    counts.failed++;
    failures.push(name);
    console.log(`FAIL - ${name}\n    ${String(e && e.stack ? e.stack : e).split('\n').slice(0, 6).join('\n    ')}`);
  }
}

function skip(name, reason) {
  counts.skipped++;
  console.log(`skip - ${name}: ${reason}`);
}

function assert(cond, message) {
  if (!cond) throw new Error(message);
}

function assertIncludes(text, part, what = 'text') {
  if (!String(text).includes(part)) throw new Error(`${what} should contain ${JSON.stringify(part)} but is ${JSON.stringify(text)}`);
}

// ---- what is served ---------------------------------------------------------------

function vectorsDir() {
  for (const d of [join(REPO, 'tests', 'vectors', 'rfc6962-proofs'), join(REPO, '..', 'shared', 'vectors', 'rfc6962-proofs')]) {
    if (existsSync(d)) return d;
  }
  return null;
}

function listJson(dir) {
  return readdirSync(dir).sort().flatMap((f) => {
    const p = join(dir, f);
    if (statSync(p).isDirectory()) return listJson(p);
    return p.endsWith('.json') ? [p] : [];
  });
}

const TYPES = {
  '.html': 'text/html; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.json': 'application/json',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
};

function serveFile(res, root, rel) {
  const file = normalize(join(root, rel));
  if (!file.startsWith(root + sep) || !existsSync(file) || !statSync(file).isFile()) {
    res.writeHead(404, { 'Content-Type': 'application/json' });
    res.end(JSON.stringify({ error: { code: 'not_found', message: `no file ${rel}` } }));
    return;
  }
  res.writeHead(200, { 'Content-Type': TYPES[extname(file)] || 'application/octet-stream', 'Cache-Control': 'no-store' });
  res.end(readFileSync(file));
}

/** Serves web/ at /, the vectors at /vectors/, and an optional API (a FakeLog). */
async function startServer(api = null) {
  const vdir = vectorsDir();
  const server = http.createServer((req, res) => {
    const url = new URL(req.url, 'http://127.0.0.1');
    if (server.api) {
      const r = server.api.handle(url);
      if (r) {
        res.writeHead(r.status, { 'Content-Type': r.type, 'Cache-Control': 'no-store' });
        res.end(r.body);
        return;
      }
    }
    if (url.pathname === '/vectors/index.json' && vdir) {
      res.writeHead(200, { 'Content-Type': 'application/json' });
      res.end(JSON.stringify(listJson(vdir).map((p) => relative(vdir, p).split(sep).join('/'))));
      return;
    }
    if (url.pathname.startsWith('/vectors/') && vdir) return serveFile(res, vdir, decodeURIComponent(url.pathname.slice(9)));
    if (url.pathname === '/') return serveFile(res, WEB, 'index.html');
    return serveFile(res, WEB, decodeURIComponent(url.pathname.slice(1)));
  });
  server.api = api;
  await new Promise((ok) => server.listen(0, '127.0.0.1', ok));
  return { url: `http://127.0.0.1:${server.address().port}/`, server, close: () => new Promise((ok) => server.close(ok)) };
}

// ---- page helpers --------------------------------------------------------------------

async function openVerifyPage(context, base) {
  const page = await context.newPage();
  page.on('pageerror', (e) => console.log(`    [page error] ${e.message}`));
  await page.goto(new URL('verify.html', base).href);
  await page.waitForSelector('body[data-ready="true"]', { timeout: WAIT_MS });
  return page;
}

/** Runs `action` and returns the verdict it produces in #resultId. */
async function verdictAfter(page, resultId, action) {
  await page.evaluate((id) => document.getElementById(id).replaceChildren(), resultId);
  await action();
  const box = await page.waitForSelector(`#${resultId} [data-verdict]:not([data-verdict="busy"])`, { timeout: WAIT_MS });
  return { verdict: await box.getAttribute('data-verdict'), text: await box.innerText(), all: await page.locator(`#${resultId}`).innerText() };
}

async function verifyCheckpointInUi(page, vkeys, note) {
  await page.fill('#vkeys', vkeys);
  await page.fill('#checkpoint', note);
  return verdictAfter(page, 'checkpoint-result', () => page.click('#verify-checkpoint'));
}

async function verifyReceiptInUi(page, receipt) {
  await page.fill('#receipt', typeof receipt === 'string' ? receipt : JSON.stringify(receipt, null, 2));
  return verdictAfter(page, 'receipt-result', () => page.click('#verify-receipt'));
}

async function shot(page, name, fullPage = true) {
  mkdirSync(OUT, { recursive: true });
  await page.screenshot({ path: join(OUT, `${name}.png`), fullPage });
}

/** Changes the character at `i` into another one of the same kind (so the input still parses). */
function tamper(text, i) {
  const c = text[i];
  let r;
  if (/[0-9]/.test(c)) r = c === '9' ? '8' : String.fromCharCode(c.charCodeAt(0) + 1);
  else if (/[A-Y]/.test(c) || /[a-y]/.test(c)) r = String.fromCharCode(c.charCodeAt(0) + 1);
  else if (c === 'Z' || c === 'z') r = c === 'Z' ? 'Y' : 'y';
  else r = 'A';
  return text.slice(0, i) + r + text.slice(i + 1);
}

// ---- published vectors (specs.md §6) --------------------------------------------------------

const NOTE_VECTORS = [
  {
    name: 'Rekor (ECDSA P-256)',
    signer: 'rekor.sigstore.dev',
    vkeys: 'rekor.sigstore.dev+c0d23d6a+AjBZMBMGByqGSM49AgEGCCqGSM49AwEHA0IABNhtmPtrWm3U1eQXBogSMdGvXwBcK5AW5i0hrZLOC96l+smGNM7nwZ4QvFK/4sueRoVj//QP22Ni4Qt9DPfkWLc=',
    note: 'Rekor\n798034\nf+7CoKgXKE/tNys9TTXcr/ad6U/K3xvznmzew9y6SP0=\n\n\u2014 rekor.sigstore.dev wNI9ajBEAiARInWIWyCdyG27CO6LPnPekyw20qO0YJfoaPaowGp/XgIgc+qEHS3+GKVClgqq20uDLet7MCoTURUCRdxwWBHHufk=\n',
    title: 'Checkpoint verifies',
  },
  {
    name: 'Pixel (ECDSA P-256)',
    signer: 'pixel6_transparency_log',
    vkeys: 'pixel6_transparency_log+91c16e30+AjBZMBMGByqGSM49AgEGCCqGSM49AwEHA0IABN+4x0Jk1yTwvLFI9A4NDdGZcX0aiWVdWM5XJVy0M4VWD3AvyW5Q6Hs9A0mcDkpUoYgn+KKPNzFC0H3nN3q6JQ8=',
    note: 'DEFAULT\n10\nbsWRucJU5xJPHb5eBdOm6+DM+VelCZBuvtI3sHERJ9Y=\n\n\u2014 pixel6_transparency_log kcFuMDBFAiEAhqMAP8P6qf6QxtUJhzMhbN+MbZ9dwfUHzGQJmffJHtoCIGD0cNe47dHWBoPwYdgBCepB06/+g5O1FmYjXl06owL4\n',
    title: 'Checkpoint verifies',
  },
  {
    name: 'PeterNeumann (Ed25519 signed note)',
    signer: 'PeterNeumann',
    vkeys: 'PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW',
    note: "If you think cryptography is the answer to your problem,\nthen you don't know what your problem is.\n\n\u2014 PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n",
    title: 'Signed note verifies',
  },
  {
    name: 'cosigned checkpoint (Ed25519 log + witness cosignature)',
    signer: 'example.com/log',
    vkeys: 'example.com/log+baa06b0f+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW\nexample.com/witness+fae09774+BNdamAGCsQq31Uv+08lkBzoO4XLz2qYjJa8CGmj3B1Ea',
    note: 'example.com/log\n8\nXcnaeacGWamtVZy3Ad7ZoqudgjqtL0lgz+Nw7/RgQyg=\n\n\u2014 example.com/log uqBrD8md6KH/K8nsTyCpMroEpsokvZnLjgKBwfmwqiP5VtzG9OOz0MvF+3swZXnW5cfj5dOF4rToWcwTH6a7b582ZAQ=\n\u2014 example.com/witness +uCXdAAAAABkGFDLlQZQvuYNLvJADN+UyFpNHIJPabSJaDfcB6hIIzyFCpmLbt/5ovcLcUgILRd3novhgzKaPo7CChtHr6DfOu8xAw==\n',
    title: 'Checkpoint verifies',
    verified: 2,
  },
  {
    name: 'derived ECDSA checkpoint (example.com/ecdsa-log)',
    signer: 'example.com/ecdsa-log',
    vkeys: 'example.com/ecdsa-log+5a7a78cc+AjBZMBMGByqGSM49AgEGCCqGSM49AwEHA0IABGD+1LolWp0xyWHrdMY1bWjASbiSO2H6bOZpYi5g8p+2eQP+EAi4vJmkGunpVii8ZPLxsgwtfp9Rd6PClNRGIpk=',
    note: 'example.com/log\n8\nXcnaeacGWamtVZy3Ad7ZoqudgjqtL0lgz+Nw7/RgQyg=\n\n\u2014 example.com/ecdsa-log Wnp4zDBEAiBwBNXruDOema1yxCT8VZ9oAPMfQ4Tmr6NMyekkCrJ/egIgdPfm5ETa/hcA8qDRZgptb7P6Iz7ccMjjPA3gzadw8DE=\n',
    title: 'Checkpoint verifies',
  },
];
const COSIGNED = NOTE_VECTORS[3];

// §6.1 inclusion happy paths 1 and 2 (tree of 8 leaves, root = the cosigned checkpoint's).
const RECEIPT_0 = {
  leaf_index: 0,
  tree_size: 8,
  leaf_hash: 'bjQLnP+zepicpUTmu3gKLHiQHT+zNzh2hRGjBhevoB0=',
  audit_path: ['lqKW0iTyhcZ77pPDD4owkVfw2qNdxbh+QQt4YwoJz8c=', 'Xwg/ChozygdqlSeYMlgNs+DvRYS9/x9UyKNg9Q3jAx4=', 'a0eq8p7jwq+a+Im8H7klTavTEXfxYjLdaqsDXKOb9uQ='],
  checkpoint: COSIGNED.note,
  leaf: '', // leaf 0 of the vectors is the empty entry
};
const PROOF_5 = {
  index: 5,
  leafHash: 'QnGia+DYqE8L1UyMMC58s6O10fpngKQLzOKHNHfatlg=',
  path: ['vBoGQ7EuTS18d5GPROD095qDi2z57FtcKD4fTYhZnms=', 'yoVOoSjtBQtBs1/8G4e46yveRh6eO1WW7Oa51ZdaCuA=', '037kGJdt2VdTwcc4Yrk5j6Kiz5tP8P3+izDNlSCWFLc='],
};
const tlogProof = (index, path, checkpoint) => `c2sp.org/tlog-proof@v1\nindex ${index}\n${path.join('\n')}\n\n${checkpoint}`;

// ---- the tests ------------------------------------------------------------------------------

async function vectorTests(browser) {
  const vdir = vectorsDir();
  const srv = await startServer();
  const context = await browser.newContext();
  try {
    await test('merkle: every RFC 6962 proof vector gives the expected verdict in the browser', async () => {
      assert(vdir, 'proof vectors not found (tests/vectors/rfc6962-proofs or ../shared/vectors/rfc6962-proofs)');
      const page = await openVerifyPage(context, srv.url);
      const out = await page.evaluate(async () => {
        const base = document.baseURI;
        const merkle = await import(new URL('js/merkle.js', base).href);
        const b64 = await import(new URL('js/b64.js', base).href);
        const files = await (await fetch('vectors/index.json')).json();
        const results = [];
        for (const f of files) {
          const v = b64.parseJsonExact(await (await fetch(`vectors/${f}`)).text());
          const dec = (s) => b64.fromBase64(s);
          let ok = true;
          let why = '';
          try {
            if (f.startsWith('inclusion/')) {
              await merkle.verifyInclusion(v.leafIdx, v.treeSize, dec(v.leafHash), (v.proof || []).map(dec), dec(v.root));
            } else {
              await merkle.verifyConsistency(v.size1, v.size2, dec(v.root1), dec(v.root2), (v.proof || []).map(dec));
            }
          } catch (e) {
            ok = false;
            why = e.message;
          }
          results.push({ f, ok, want: !v.wantErr, why, desc: v.desc });
        }
        return results;
      });
      const wrong = out.filter((r) => r.ok !== r.want);
      assert(out.length === 196, `expected 196 vectors, found ${out.length}`);
      assert(wrong.length === 0, `wrong verdicts: ${wrong.map((r) => `${r.f} (${r.desc}: ${r.why || 'accepted'})`).join('; ')}`);
      assert(out.filter((r) => !r.want).length > 150, 'most vectors are expected failures');
      await page.close();
    });

    await test('merkle: rootFromLeafHashes reproduces the published roots for sizes 0..8', async () => {
      const page = await openVerifyPage(context, srv.url);
      const roots = await page.evaluate(async () => {
        const merkle = await import(new URL('js/merkle.js', document.baseURI).href);
        const b64 = await import(new URL('js/b64.js', document.baseURI).href);
        const leaves = ['', '00', '10', '2021', '3031', '40414243', '5051525354555657', '606162636465666768696a6b6c6d6e6f'];
        const hashes = [];
        for (const l of leaves) hashes.push(await merkle.leafHash(b64.fromHex(l)));
        const out = [];
        for (let n = 0; n <= 8; n++) out.push(b64.toHex(await merkle.rootFromLeafHashes(hashes.slice(0, n))));
        return out;
      });
      const want = ['e3b0c442', '6e340b9c', 'fac54203', 'aeb6bcfe', 'd37ee418', '4e3bbb1f', '76e67dad', 'ddb89be4', '5dc9da79'];
      roots.forEach((r, n) => assert(r.startsWith(want[n]), `root of size ${n} is ${r}`));
      await page.close();
    });

    await test('note: ECDSA signatures must be strict DER before they reach WebCrypto', async () => {
      const page = await openVerifyPage(context, srv.url);
      const out = await page.evaluate(async (note) => {
        const n = await import(new URL('js/note.js', document.baseURI).href);
        const parsed = n.parseNote(note);
        const der = parsed.signatures[0].payload;
        const res = {};
        const attempt = (label, bytes) => {
          try {
            n.derToRawP256(bytes);
            res[label] = 'accepted';
          } catch (e) {
            res[label] = e.message;
          }
        };
        attempt('original', der);
        const withTrailing = new Uint8Array([...der, 0]);
        attempt('trailing byte', withTrailing);
        // r with a needless leading zero: SEQUENCE length +1, INTEGER length +1.
        const rLen = der[3];
        const padded = new Uint8Array([0x30, der[1] + 1, 0x02, rLen + 1, 0x00, ...der.subarray(4)]);
        attempt('non-minimal r', padded);
        const negative = new Uint8Array(der);
        negative[4] |= 0x80;
        attempt('negative r', negative);
        attempt('not a sequence', new Uint8Array([0x31, ...der.subarray(1)]));
        return res;
      }, NOTE_VECTORS[0].note);
      assert(out.original === 'accepted', `original: ${out.original}`);
      assertIncludes(out['trailing byte'], 'not valid DER', 'trailing byte');
      assertIncludes(out['non-minimal r'], 'not minimally encoded', 'non-minimal r');
      assertIncludes(out['negative r'], 'negative', 'negative r');
      assertIncludes(out['not a sequence'], 'SEQUENCE', 'not a sequence');
      await page.close();
    });

    const page = await openVerifyPage(context, srv.url);
    for (const v of NOTE_VECTORS) {
      await test(`verify page: ${v.name} verifies`, async () => {
        const r = await verifyCheckpointInUi(page, v.vkeys, v.note);
        assert(r.verdict === 'ok', `verdict ${r.verdict}: ${r.text}`);
        assertIncludes(r.text, v.title, 'verdict');
        const verified = await page.locator('#checkpoint-result td.status-verified').count();
        assert(verified === (v.verified || 1), `expected ${v.verified || 1} verified signature rows, saw ${verified}`);
      });
      await test(`verify page: ${v.name} with one byte changed is rejected`, async () => {
        const split = v.note.indexOf('\n\n');
        const r = await verifyCheckpointInUi(page, v.vkeys, tamper(v.note, split - 5));
        assert(r.verdict === 'fail', `verdict ${r.verdict}: ${r.text}`);
        assertIncludes(r.text, `signature by ${v.signer}`, 'verdict');
        assertIncludes(r.text, 'does not verify', 'verdict');
      });
    }
    await shot(page, 'verify-note-tampered');

    await test('verify page: a tampered witness cosignature is named', async () => {
      const lines = COSIGNED.note.split('\n');
      const w = lines.findIndex((l) => l.includes('example.com/witness'));
      lines[w] = tamper(lines[w], lines[w].length - 10);
      const r = await verifyCheckpointInUi(page, COSIGNED.vkeys, lines.join('\n'));
      assert(r.verdict === 'fail', `verdict ${r.verdict}`);
      assertIncludes(r.text, 'signature by example.com/witness', 'verdict');
    });

    await test('verify page: a signature from an unknown key name is ignored and the note rejected', async () => {
      const v = NOTE_VECTORS[0];
      const r = await verifyCheckpointInUi(page, v.vkeys.replace('rekor.sigstore.dev', 'bananas.sigstore.dev'), v.note);
      assert(r.verdict === 'fail', `verdict ${r.verdict}`);
      assertIncludes(r.text, 'no signature by a known key', 'verdict');
      assert((await page.locator('#checkpoint-result td.status-unknown-key').count()) === 1, 'unknown-key row');
    });

    await test('verify page: a verifier key whose key ID does not match is refused', async () => {
      const v = NOTE_VECTORS[0];
      const r = await verifyCheckpointInUi(page, v.vkeys.replace('c0d23d6a', '00000000'), v.note);
      assert(r.verdict === 'fail', `verdict ${r.verdict}`);
      assertIncludes(await page.locator('#vkeys-status').innerText(), 'does not match the key', 'key status');
    });

    await test('verify page: a receipt from the published vectors verifies, step by step', async () => {
      await page.fill('#vkeys', COSIGNED.vkeys);
      const r = await verifyReceiptInUi(page, RECEIPT_0);
      assert(r.verdict === 'ok', `verdict ${r.verdict}: ${r.text}`);
      const rows = await page.locator('#receipt-result tbody').first().locator('tr').count();
      assert(rows === 4, `expected the leaf row and 3 steps, saw ${rows}`);
      assertIncludes(r.all, 'XcnaeacGWamtVZy3Ad7ZoqudgjqtL0lgz+Nw7/RgQyg=', 'result');
      await shot(page, 'verify-receipt-ok');
    });

    await test('verify page: a receipt with one audit-path byte changed is rejected', async () => {
      const text = JSON.stringify(RECEIPT_0, null, 2);
      const i = text.indexOf('Xwg/Choz') + 3;
      const r = await verifyReceiptInUi(page, tamper(text, i));
      assert(r.verdict === 'fail', `verdict ${r.verdict}`);
      assertIncludes(r.text, 'audit path does not lead to the checkpoint root', 'verdict');
      await shot(page, 'verify-receipt-tampered');
    });

    await test('verify page: a receipt whose leaf does not match its leaf hash is rejected', async () => {
      const r = await verifyReceiptInUi(page, { ...RECEIPT_0, leaf: 'x' });
      assert(r.verdict === 'fail', `verdict ${r.verdict}`);
      assertIncludes(r.text, 'leaf hash does not match leaf', 'verdict');
    });

    await test('verify page: a receipt with a changed checkpoint is rejected by signature', async () => {
      const r = await verifyReceiptInUi(page, { ...RECEIPT_0, checkpoint: tamper(RECEIPT_0.checkpoint, 18) });
      assert(r.verdict === 'fail', `verdict ${r.verdict}`);
      assertIncludes(r.text, 'signature by example.com/log', 'verdict');
    });

    await test('verify page: a receipt whose tree size differs from its checkpoint is rejected', async () => {
      const r = await verifyReceiptInUi(page, { ...RECEIPT_0, tree_size: 9 });
      assert(r.verdict === 'fail', `verdict ${r.verdict}`);
      assertIncludes(r.text, 'does not match the checkpoint tree size', 'verdict');
    });

    await test('verify page: a tlog-proof file with the leaf hash verifies, a changed index does not', async () => {
      await page.fill('#vkeys', COSIGNED.vkeys);
      await page.fill('#tlogproof', tlogProof(PROOF_5.index, PROOF_5.path, COSIGNED.note));
      await page.fill('#tlogproof-leaf', PROOF_5.leafHash);
      let r = await verdictAfter(page, 'tlogproof-result', () => page.click('#verify-tlogproof'));
      assert(r.verdict === 'ok', `verdict ${r.verdict}: ${r.text}`);
      await shot(page, 'verify-tlogproof-ok');
      await page.fill('#tlogproof', tlogProof(4, PROOF_5.path, COSIGNED.note));
      r = await verdictAfter(page, 'tlogproof-result', () => page.click('#verify-tlogproof'));
      assert(r.verdict === 'fail', `verdict ${r.verdict}`);
      assertIncludes(r.text, 'audit path does not lead to the checkpoint root', 'verdict');
    });

    await test('verify page: a tlog-proof with the leaf record hashes the record', async () => {
      // Leaf 0 of the vector tree is the empty entry; "{}" is not it.
      await page.fill('#tlogproof', tlogProof(0, RECEIPT_0.audit_path, COSIGNED.note));
      await page.fill('#tlogproof-leaf', '{}');
      const r = await verdictAfter(page, 'tlogproof-result', () => page.click('#verify-tlogproof'));
      assert(r.verdict === 'fail', `verdict ${r.verdict}`);
      assertIncludes(r.text, 'audit path does not lead to the checkpoint root', 'verdict');
    });

    await test('verify page: form fields have labels and the page has landmarks', async () => {
      const problems = await page.evaluate(() => {
        const out = [];
        for (const f of document.querySelectorAll('textarea, input, select')) {
          if (!f.labels || f.labels.length === 0) out.push(`#${f.id} has no label`);
        }
        for (const sel of ['header', 'main', 'nav', 'footer', 'h1']) if (!document.querySelector(sel)) out.push(`no <${sel}>`);
        return out;
      });
      assert(problems.length === 0, problems.join('; '));
      // Keyboard: on a fresh page the first Tab reaches the skip link, and Enter on it moves to the main content.
      const fresh = await openVerifyPage(context, srv.url);
      await fresh.keyboard.press('Tab');
      assert(await fresh.evaluate(() => document.activeElement.classList.contains('skip-link')), 'first Tab should reach the skip link');
      await fresh.keyboard.press('Enter');
      assert(await fresh.evaluate(() => location.hash === '#main'), 'the skip link should lead to #main');
      await fresh.close();
    });

    await page.setViewportSize({ width: 390, height: 844 });
    await shot(page, 'verify-phone');
    await page.fill('#vkeys', COSIGNED.vkeys);
    await verifyReceiptInUi(page, RECEIPT_0);
    mkdirSync(OUT, { recursive: true });
    await page.locator('#receipt-section').screenshot({ path: join(OUT, 'verify-phone-receipt.png') });
    await page.evaluate(() => window.scrollTo(0, 0));
    await shot(page, 'verify-phone-top', false);
    await page.close();

    await test('verify page: without Ed25519 in WebCrypto it says so and still checks ECDSA', async () => {
      const ctx = await browser.newContext();
      await ctx.addInitScript(() => {
        const orig = crypto.subtle.importKey.bind(crypto.subtle);
        crypto.subtle.importKey = (fmt, data, alg, ...rest) => {
          const name = typeof alg === 'string' ? alg : alg && alg.name;
          if (name === 'Ed25519') return Promise.reject(new DOMException('Algorithm: Unrecognized name', 'NotSupportedError'));
          return orig(fmt, data, alg, ...rest);
        };
      });
      const p = await openVerifyPage(ctx, srv.url);
      assertIncludes(await p.locator('#ed25519-banner').innerText(), 'Ed25519 not supported by this browser', 'banner');
      const ed = NOTE_VECTORS[2];
      let r = await verifyCheckpointInUi(p, ed.vkeys, ed.note);
      assert(r.verdict === 'fail', `verdict ${r.verdict}`);
      assertIncludes(r.text, 'Ed25519 not supported by this browser', 'verdict');
      r = await verifyCheckpointInUi(p, NOTE_VECTORS[0].vkeys, NOTE_VECTORS[0].note);
      assert(r.verdict === 'ok', `ECDSA verdict ${r.verdict}: ${r.text}`);
      await ctx.close();
    });
  } finally {
    await context.close();
    await srv.close();
  }
}

async function fakeLogTests(browser) {
  const log = new FakeLog({ size: 300 });
  const srv = await startServer(log);
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  try {
    await test('log page: shows the checkpoint, verifies its signatures, lists the newest leaves', async () => {
      const page = await context.newPage();
      page.on('pageerror', (e) => console.log(`    [page error] ${e.message}`));
      await page.goto(srv.url);
      const box = await page.waitForSelector('#sig-verdict[data-verdict="ok"], #sig-verdict[data-verdict="fail"]', { timeout: WAIT_MS });
      assert((await box.getAttribute('data-verdict')) === 'ok', `verdict: ${await box.innerText()}`);
      assert((await page.locator('#sig-rows td.status-verified').count()) === 2, 'the ECDSA and Ed25519 log signatures should verify');
      // /v1/log publishes no witness keys, so the cosignature is shown but not counted.
      assert((await page.locator('#sig-rows td.status-unknown-key').count()) === 1, 'the witness cosignature is from a key the log does not vouch for');
      await page.waitForSelector('#tree-size[data-size="300"]', { timeout: WAIT_MS });
      assertIncludes(await page.locator('#origin').innerText(), log.origin, 'origin');
      await page.waitForFunction(() => document.querySelectorAll('#leaf-rows tr').length === 10, null, { timeout: WAIT_MS });
      assertIncludes(await page.locator('#leaf-rows tr').first().innerText(), '299', 'newest leaf row');
      await page.waitForFunction(() => /proven included/.test(document.getElementById('leaves-proof').textContent), null, { timeout: WAIT_MS });
      assert((await page.locator('#leaves-proof').getAttribute('class')) === 'status-ok', await page.locator('#leaves-proof').innerText());
      // The log grows: the page picks up the new size, checks consistency and redraws.
      log.append(45);
      await page.waitForSelector('#tree-size[data-size="345"]', { timeout: WAIT_MS });
      await page.waitForFunction(() => /Consistent/.test(document.getElementById('consistency-line').textContent), null, { timeout: WAIT_MS });
      log.append(30);
      await page.waitForSelector('#live-size[data-size="375"]', { timeout: WAIT_MS });
      await page.waitForFunction(() => document.querySelectorAll('#chart rect.bar').length >= 2, null, { timeout: WAIT_MS });
      // The chart starts from the log's history (/v1/growth), not from when the page opened.
      assert(Number(await page.locator('#chart').getAttribute('data-history')) >= 2, 'the growth chart starts from the log\'s history');
      const chartSummary = await page.locator('#chart-summary').innerText();
      assert(/over the last 6\d min/.test(chartSummary), `the chart spans the hour of history: ${chartSummary}`);
      await page.waitForFunction(() => document.querySelector('#leaf-rows tr td').textContent === '374', null, { timeout: WAIT_MS });
      await shot(page, 'log-page');
      await page.setViewportSize({ width: 390, height: 844 });
      await shot(page, 'log-page-phone');
      await page.close();
    });

    await test('log page: a rewritten history raises an alarm', async () => {
      const page = await context.newPage();
      await page.goto(srv.url);
      await page.waitForSelector(`#tree-size[data-size="${log.size}"]`, { timeout: WAIT_MS });
      // The operator rewrites leaf 3 and keeps signing: every signature is fine, the history is not.
      log.entries[3] = Buffer.from('{"app":"ehr","commitment":"00","received":"2026-11-25T10:00:00.000Z","v":1}');
      log.hashes[3] = (await import('node:crypto')).createHash('sha256').update(Buffer.concat([Buffer.from([0]), log.entries[3]])).digest();
      log.append(1);
      await page.waitForFunction(() => /ALARM/.test(document.getElementById('consistency-line').textContent), null, { timeout: WAIT_MS });
      assertIncludes(await page.locator('#banner').innerText(), 'not shown consistent', 'banner');
      await shot(page, 'log-page-alarm');
      await page.close();
    });

    const fresh = new FakeLog({ size: 40 });
    srv.server.api = fresh;
    await test('verify page: prefilled from the log, verifies a receipt from it and rejects a tampered one', async () => {
      const page = await openVerifyPage(context, srv.url);
      const r0 = await page.waitForSelector('#checkpoint-result [data-verdict]', { timeout: WAIT_MS });
      assert((await r0.getAttribute('data-verdict')) === 'ok', `prefilled checkpoint: ${await r0.innerText()}`);
      assertIncludes(await page.locator('#vkeys').inputValue(), fresh.ec.vkey, 'prefilled keys');
      // Add the witness key by hand, as an auditor would.
      await page.fill('#vkeys', fresh.vkeys().join('\n'));
      const receipt = fresh.receipt(17);
      let r = await verifyReceiptInUi(page, receipt);
      assert(r.verdict === 'ok', `verdict ${r.verdict}: ${r.text}`);
      assertIncludes(r.all, 'leaf hash', 'checks');
      const text = JSON.stringify(receipt, null, 2);
      r = await verifyReceiptInUi(page, tamper(text, text.indexOf(receipt.audit_path[2]) + 3));
      assert(r.verdict === 'fail', `tampered verdict ${r.verdict}`);
      assertIncludes(r.text, 'audit path does not lead to the checkpoint root', 'verdict');
      r = await verifyReceiptInUi(page, { ...receipt, leaf: tamper(receipt.leaf, 40) });
      assert(r.verdict === 'fail', `tampered leaf verdict ${r.verdict}`);
      assertIncludes(r.text, 'leaf hash does not match leaf', 'verdict');
      await page.close();
    });

    await test('verify page: a remembered checkpoint is shown consistent with a later one', async () => {
      const page = await openVerifyPage(context, srv.url);
      await page.waitForSelector('#checkpoint-result [data-verdict="ok"]', { timeout: WAIT_MS });
      await page.click('#remember-checkpoint');
      await page.waitForFunction(() => /Remembered/.test(document.getElementById('checkpoint-result').textContent), null, { timeout: WAIT_MS });
      fresh.append(25);
      await page.reload();
      await page.waitForSelector('body[data-ready="true"]', { timeout: WAIT_MS });
      assertIncludes(await page.locator('#earlier').inputValue(), '\n40\n', 'remembered checkpoint');
      assertIncludes(await page.locator('#checkpoint').inputValue(), '\n65\n', 'current checkpoint');
      const r = await verdictAfter(page, 'consistency-result', () => page.click('#verify-consistency'));
      assert(r.verdict === 'ok', `verdict ${r.verdict}: ${r.text}`);
      assertIncludes(r.all, 'fetched from the log', 'proof source');
      await shot(page, 'verify-consistency-ok');
      await page.close();
    });

    await test('verify page: an earlier checkpoint from a different history is not consistent', async () => {
      const page = await openVerifyPage(context, srv.url);
      // Properly signed by the log's keys, but over a different leaf 0.
      const forked = [Buffer.alloc(32, 7), ...fresh.hashes.slice(1, 20)];
      const note = signCheckpoint(fresh.origin, 20, mth(forked), [fresh.ec, fresh.ed]);
      await page.fill('#earlier', note);
      const r = await verdictAfter(page, 'consistency-result', () => page.click('#verify-consistency'));
      assert(r.verdict === 'fail', `verdict ${r.verdict}`);
      assertIncludes(r.text, 'consistency proof does not lead to the earlier root', 'verdict');
      await page.fill('#earlier', tamper(note, note.indexOf('\n\n') - 3));
      const r2 = await verdictAfter(page, 'consistency-result', () => page.click('#verify-consistency'));
      assert(r2.verdict === 'fail', `verdict ${r2.verdict}`);
      assertIncludes(r2.text, 'signature by', 'verdict');
      await page.close();
    });

    await test('verify page: a witness cosignature from an unknown witness is ignored', async () => {
      const page = await openVerifyPage(context, srv.url);
      const stranger = makeEd25519Key('stranger.example/w', 0x04);
      const text = fresh.note.slice(0, fresh.note.indexOf('\n\n') + 1);
      const { signLine } = await import('./fakelog.mjs');
      const r = await verifyCheckpointInUi(page, [fresh.ec.vkey, fresh.ed.vkey].join('\n'), fresh.note + signLine(stranger, text, 1700000000));
      assert(r.verdict === 'ok', `verdict ${r.verdict}: ${r.text}`);
      assert((await page.locator('#checkpoint-result td.status-unknown-key').count()) === 2, 'the fake witness and the stranger are unknown');
      await page.close();
    });
  } finally {
    await context.close();
    await srv.close();
  }
}

// ---- live server (needs $VERITRAIL_BIN) -----------------------------------------------------

async function liveServerTests(browser) {
  const bin = process.env.VERITRAIL_BIN;
  const name = 'live server: log page, receipt verification, tampered receipt';
  if (!bin) return skip(name, 'VERITRAIL_BIN is not set');
  if (!existsSync(bin)) return skip(name, `VERITRAIL_BIN (${bin}) does not exist`);
  const help = spawnSync(bin, ['serve', '--help'], { encoding: 'utf8', timeout: 10000 });
  if (help.status !== 0) return skip(name, `"${bin} serve --help" failed: the binary has no serve command yet`);

  const data = mkdtempSync(join(tmpdir(), 'veritrail-browser-'));
  const child = spawn(bin, ['serve', '--data', data, '--listen', '127.0.0.1:0'], { stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  try {
    const base = await new Promise((ok, fail) => {
      const timer = setTimeout(() => fail(new Error(`server did not say "listening on" within 30 s; output:\n${output}`)), 30000);
      const onData = (chunk) => {
        output += chunk;
        const m = /listening on (http:\/\/127\.0\.0\.1:\d+)/.exec(output);
        if (m) {
          clearTimeout(timer);
          ok(`${m[1]}/`);
        }
      };
      child.stdout.on('data', onData);
      child.stderr.on('data', (c) => (output += c));
      child.on('exit', (code) => fail(new Error(`server exited with ${code}; output:\n${output}`)));
    });
    const api = async (method, path, token, body) => {
      const res = await fetch(new URL(path, base), {
        method,
        headers: { Authorization: `Bearer ${token}`, 'Content-Type': 'application/json' },
        body: body ? JSON.stringify(body) : undefined,
      });
      const text = await res.text();
      if (!res.ok) throw new Error(`${method} ${path}: ${res.status} ${text}`);
      return JSON.parse(text);
    };
    await test(name, async () => {
      const admin = readFileSync(join(data, 'admin.key'), 'utf8').trim();
      const writer = await api('POST', 'v1/admin/keys', admin, { name: 'browser-test', role: 'writer' });
      const event = {
        actor: { id: 'u1', type: 'user' }, action: 'record.read', resource: { type: 'patient', id: 'p1' },
        subject: 'p1', purpose: 'treatment', outcome: 'success', occurred_at: '2026-11-25T10:00:00Z',
      };
      const submitted = await api('POST', 'v1/events?wait=checkpoint', writer.key, { events: [event, { ...event, subject: 'p2' }, { ...event, subject: 'p3' }] });
      const ev = submitted.events[1];
      const receipt = {
        leaf_index: ev.index,
        tree_size: ev.inclusion_proof.tree_size,
        leaf_hash: ev.leaf_hash,
        audit_path: ev.inclusion_proof.audit_path,
        checkpoint: submitted.checkpoint,
      };
      const context = await browser.newContext();
      try {
        const logPage = await context.newPage();
        await logPage.goto(base);
        const box = await logPage.waitForSelector('#sig-verdict[data-verdict="ok"], #sig-verdict[data-verdict="fail"]', { timeout: WAIT_MS });
        assert((await box.getAttribute('data-verdict')) === 'ok', `log page verdict: ${await box.innerText()}`);
        // The log's own records (its keys) come first: the page must show a
        // size that covers the last of the three events.
        const covering = submitted.events[2].index + 1;
        await logPage.waitForFunction((n) => Number(document.getElementById('live-size').dataset.size) >= n, covering, { timeout: WAIT_MS });
        await shot(logPage, 'live-log-page');

        const page = await openVerifyPage(context, base);
        await page.waitForSelector('#checkpoint-result [data-verdict="ok"]', { timeout: WAIT_MS });
        let r = await verifyReceiptInUi(page, receipt);
        assert(r.verdict === 'ok', `receipt verdict ${r.verdict}: ${r.text}`);
        await shot(page, 'live-verify-receipt');
        const text = JSON.stringify(receipt, null, 2);
        const at = receipt.audit_path.length ? text.indexOf(receipt.audit_path[0]) + 3 : text.indexOf(receipt.leaf_hash) + 3;
        r = await verifyReceiptInUi(page, tamper(text, at));
        assert(r.verdict === 'fail', `tampered receipt verdict ${r.verdict}`);
        assertIncludes(r.text, 'audit path does not lead to the checkpoint root', 'verdict');
      } finally {
        await context.close();
      }
    });
  } catch (e) {
    await test(name, async () => { throw e; });
  } finally {
    child.kill('SIGTERM');
    await new Promise((ok) => {
      if (child.exitCode !== null) return ok();
      const t = setTimeout(() => { child.kill('SIGKILL'); ok(); }, 5000);
      child.on('exit', () => { clearTimeout(t); ok(); });
    });
    rmSync(data, { recursive: true, force: true });
  }
}

// ---- main ----------------------------------------------------------------------------------

async function main() {
  if (!existsSync(CHROMIUM)) {
    console.log(`${CHROMIUM} is missing: run scripts/install-browser-deps.sh`);
    console.log('0 passed, 1 failed');
    process.exit(1);
  }
  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  try {
    await vectorTests(browser);
    await fakeLogTests(browser);
    await liveServerTests(browser);
    await consoleTests(browser, { test, skip, assert, assertIncludes, shot, tamper, WAIT_MS });
  } finally {
    await browser.close();
  }
  if (failures.length) console.log(`failed: ${failures.join(' | ')}`);
  console.log(`${counts.passed} passed, ${counts.failed} failed, ${counts.skipped} skipped`);
  process.exit(counts.failed ? 1 : 0);
}

main().catch((e) => {
  console.log(`harness error: ${e && e.stack ? e.stack : e}`);
  console.log(`${counts.passed} passed, ${counts.failed + 1} failed`);
  process.exit(1);
});
