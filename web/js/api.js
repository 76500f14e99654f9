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

/** The ApiError for a response that is not ok, from its JSON error body when there is one. */
export async function errorFrom(res, path) {
  let detail = `${res.status} ${res.statusText}`.trim();
  let code = String(res.status);
  let serverMessage = null;
  try {
    const body = await res.json();
    if (body && body.error) {
      code = body.error.code || code;
      serverMessage = body.error.message || body.error.code;
      detail = `${detail}: ${serverMessage}`;
    }
  } catch {
    // not a JSON error body
  }
  let hint = '';
  if (res.status === 401) hint = ' — the key was not accepted: it is wrong, mistyped or revoked';
  else if (res.status === 403) hint = ' — the key is valid but its role is insufficient for this';
  const err = new ApiError(`${path} failed (${detail})${hint}`, res.status, code);
  err.serverMessage = serverMessage;
  return err;
}

async function request(path, accept) {
  let res;
  try {
    res = await fetch(apiUrl(path), { headers: { Accept: accept }, cache: 'no-store' });
  } catch (e) {
    throw new ApiError(`could not reach the log at ${path} (${e.message})`, 0, 'network');
  }
  if (!res.ok) throw await errorFrom(res, path);
  return res;
}

/**
 * An authenticated request with an API key (Bearer). Returns the Response,
 * whatever its status; only a network failure throws. The key goes in the
 * Authorization header, never in the URL.
 */
export async function authFetch(path, key, { method = 'GET', body, accept = 'application/json' } = {}) {
  const headers = { Accept: accept, Authorization: `Bearer ${key}` };
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  try {
    return await fetch(apiUrl(path), {
      method, headers, cache: 'no-store', credentials: 'omit',
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch (e) {
    throw new ApiError(`could not reach the log at ${path} (${e.message})`, 0, 'network');
  }
}

/** Like authFetch, but answers the parsed JSON body and throws ApiError unless ok. */
export async function authJson(path, key, opts = {}) {
  const res = await authFetch(path, key, opts);
  if (!res.ok) throw await errorFrom(res, path);
  const text = await res.text();
  try {
    return { json: JSON.parse(text), auditIndex: res.headers.get('veritrail-audit-index'), status: res.status };
  } catch {
    throw new ApiError(`${path} did not return JSON`, res.status, 'bad-json');
  }
}

/** A query string from the non-empty values of `params`. */
export function queryString(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) {
    if (v !== undefined && v !== null && String(v) !== '') q.set(k, String(v));
  }
  const s = q.toString();
  return s ? `?${s}` : '';
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
