// Reads the log's public HTTP API. URLs are relative to the page, so the
// console works wherever the log serves it (the pages sit next to the API).
// The only module of the console that touches the network.

export class ApiError extends Error {
  constructor(message, status, code) {
    super(message);
    this.name = 'ApiError';
    this.status = status;
    this.code = code;
  }
}

export function apiUrl(path) {
  return new URL(path, document.baseURI).href;
}

async function request(path, accept) {
  let res;
  try {
    res = await fetch(apiUrl(path), { headers: { Accept: accept }, cache: 'no-store' });
  } catch (e) {
    throw new ApiError(`could not reach the log at ${path} (${e.message})`, 0, 'network');
  }
  if (!res.ok) {
    let detail = `${res.status} ${res.statusText}`.trim();
    let code = String(res.status);
    try {
      const body = await res.json();
      if (body && body.error) {
        code = body.error.code || code;
        detail = `${detail}: ${body.error.message || body.error.code}`;
      }
    } catch {
      // not a JSON error body
    }
    throw new ApiError(`${path} failed (${detail})`, res.status, code);
  }
  return res;
}

export async function getJson(path) {
  const res = await request(path, 'application/json');
  const text = await res.text();
  try {
    return JSON.parse(text);
  } catch {
    throw new ApiError(`${path} did not return JSON`, res.status, 'bad-json');
  }
}

export async function getText(path) {
  const res = await request(path, 'text/plain');
  return res.text();
}

export async function getBytes(path) {
  const res = await request(path, 'application/octet-stream');
  return new Uint8Array(await res.arrayBuffer());
}

/** GET /v1/log → {origin, tree_size, verifier_keys: {name: vkey}}. */
export function getLog() {
  return getJson('v1/log');
}

/**
 * The latest checkpoint: /v1/checkpoint (JSON with note and publication
 * time), falling back to the plain C2SP /checkpoint.
 */
export async function getCheckpoint() {
  try {
    const j = await getJson('v1/checkpoint');
    if (j && typeof j.note === 'string') return { note: j.note, publishedAtMs: j.published_at_ms ?? null, json: j };
  } catch (e) {
    if (!(e instanceof ApiError) || e.status !== 404) throw e;
  }
  return { note: await getText('checkpoint'), publishedAtMs: null, json: null };
}

export function getConsistencyProof(first, second) {
  return getJson(`v1/proof/consistency?first=${encodeURIComponent(String(first))}&second=${encodeURIComponent(String(second))}`);
}

/** All verifier keys the log publishes, as a list of vkey strings. */
export function vkeysFromLog(log) {
  const keys = [];
  const add = (v) => {
    if (typeof v === 'string' && v.trim() && !keys.includes(v.trim())) keys.push(v.trim());
  };
  const vk = log && log.verifier_keys;
  if (vk && typeof vk === 'object') Object.values(vk).forEach((v) => (Array.isArray(v) ? v.forEach(add) : add(v)));
  for (const field of ['witness_keys', 'witnesses']) {
    const w = log && log[field];
    if (Array.isArray(w)) w.forEach((x) => add(typeof x === 'string' ? x : x && x.vkey));
  }
  return keys;
}
