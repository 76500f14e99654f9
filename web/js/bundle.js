// C2SP tlog-tiles paths and entry bundles, and Veritrail's public leaf
// records (the commitments the log stores instead of personal data).
//
// Pure: no DOM, no network. Invariant: a bundle parses only when its
// length prefixes account for every byte, so a truncated or padded bundle
// is never shown as if it were what the log served.

import { fromUtf8, toU64 } from './b64.js';

export const TILE_WIDTH = 256n; // tile height 8: 2^8 hashes or entries per full tile

export class BundleError extends Error {
  constructor(message) {
    super(message);
    this.name = 'BundleError';
  }
}

/** tlog-tiles §"Tile index": 1234067 → "x001/x234/067". */
export function encodeTileIndex(n) {
  let v = toU64(n, 'tile index');
  const groups = [];
  do {
    groups.unshift(String(v % 1000n).padStart(3, '0'));
    v /= 1000n;
  } while (v > 0n);
  return groups.map((g, i) => (i < groups.length - 1 ? `x${g}` : g)).join('/');
}

function widthSuffix(width) {
  if (width === undefined || width === null) return '';
  const w = toU64(width, 'tile width');
  if (w === TILE_WIDTH) return '';
  if (w < 1n || w > 255n) throw new BundleError(`partial tile width ${w} is not in 1..255`);
  return `.p/${w}`;
}

/** Path of a hash tile, relative to the log prefix: tile/<L>/<N>[.p/<W>]. */
export function tilePath(level, n, width) {
  const l = toU64(level, 'tile level');
  if (l > 63n) throw new BundleError(`tile level ${l} is above 63`);
  return `tile/${l}/${encodeTileIndex(n)}${widthSuffix(width)}`;
}

/** Path of an entry bundle, relative to the log prefix: tile/entries/<N>[.p/<W>]. */
export function entriesPath(n, width) {
  return `tile/entries/${encodeTileIndex(n)}${widthSuffix(width)}`;
}

/**
 * The entry bundles that hold the last `count` entries of a tree of `size`
 * entries, newest bundle first: [{n, width, first}] where `first` is the
 * index of the bundle's first entry and `width` its number of entries.
 */
export function lastBundles(size, count = 1) {
  let remaining = toU64(size, 'tree size');
  let want = BigInt(count);
  const out = [];
  while (remaining > 0n && want > 0n) {
    const n = (remaining - 1n) / TILE_WIDTH;
    const first = n * TILE_WIDTH;
    const width = remaining - first;
    out.push({ n, width, first, path: entriesPath(n, width) });
    want -= width;
    remaining = first;
  }
  return out;
}

/**
 * Splits an entry bundle (tlog-tiles §"Entry bundles": uint16 big-endian
 * length || entry, repeated) into its entries.
 */
export function parseEntryBundle(bytes, expectedCount) {
  const entries = [];
  let off = 0;
  while (off < bytes.length) {
    if (off + 2 > bytes.length) throw new BundleError(`entry bundle ends inside a length prefix at byte ${off}`);
    const len = (bytes[off] << 8) | bytes[off + 1];
    off += 2;
    if (off + len > bytes.length) {
      throw new BundleError(`entry ${entries.length} claims ${len} bytes but only ${bytes.length - off} remain`);
    }
    entries.push(bytes.subarray(off, off + len));
    off += len;
  }
  if (expectedCount !== undefined && BigInt(entries.length) !== BigInt(expectedCount)) {
    throw new BundleError(`entry bundle holds ${entries.length} entries, expected ${expectedCount}`);
  }
  return entries;
}

/** Canonical JSON of a leaf record, keys in order (as RFC 8785 sorts them). */
export function canonicalLeafJson(record) {
  return `{"app":${JSON.stringify(record.app)},"commitment":${JSON.stringify(record.commitment)},"received":${JSON.stringify(record.received)},"v":${JSON.stringify(record.v)}}`;
}

/**
 * Decodes a Veritrail leaf record: canonical JSON
 * {"app":…,"commitment":"<hex>","received":"<RFC 3339>","v":1}.
 * Returns {record, canonical, problems[]}; never throws on odd content,
 * because a monitor wants to see a strange leaf, not hide it.
 */
export function decodeLeafRecord(bytes) {
  const problems = [];
  let text;
  try {
    text = fromUtf8(bytes, 'leaf');
  } catch (e) {
    return { record: null, canonical: false, text: null, problems: [e.message] };
  }
  let record = null;
  try {
    record = JSON.parse(text);
  } catch {
    return { record: null, canonical: false, text, problems: ['leaf is not JSON'] };
  }
  if (record === null || typeof record !== 'object' || Array.isArray(record)) {
    return { record: null, canonical: false, text, problems: ['leaf is not a JSON object'] };
  }
  const keys = Object.keys(record).sort().join(',');
  if (keys !== 'app,commitment,received,v') problems.push(`unexpected fields: ${keys}`);
  if (record.v !== 1) problems.push(`unknown leaf version ${JSON.stringify(record.v)}`);
  if (typeof record.app !== 'string') problems.push('app is not a string');
  if (typeof record.commitment !== 'string' || !/^[0-9a-f]{64}$/.test(record.commitment)) {
    problems.push('commitment is not 64 lowercase hex digits');
  }
  if (typeof record.received !== 'string' || Number.isNaN(Date.parse(record.received))) {
    problems.push('received is not an RFC 3339 time');
  }
  const canonical = problems.length === 0 && canonicalLeafJson(record) === text;
  if (problems.length === 0 && !canonical) problems.push('leaf is not in canonical JSON form');
  return { record, canonical, text, problems };
}
