// Byte encodings used by transparency logs: standard, padded base64
// (RFC 4648 §4, the only form signed notes, checkpoints and the API use),
// lowercase hex, strict UTF-8, and integer parsing that never loses
// precision (tree sizes and leaf indices are unsigned 64-bit).
//
// Pure functions: no DOM, no network. Every decoder rejects non-canonical
// input instead of guessing, because a verifier that "repairs" its input
// can be talked into accepting something the log never signed.

const ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/';
const DECODE = new Int16Array(128).fill(-1);
for (let i = 0; i < ALPHABET.length; i++) DECODE[ALPHABET.charCodeAt(i)] = i;

export class EncodingError extends Error {
  constructor(message) {
    super(message);
    this.name = 'EncodingError';
  }
}

/** Encodes bytes as standard base64 with `=` padding. */
export function toBase64(bytes) {
  let out = '';
  let i = 0;
  for (; i + 2 < bytes.length; i += 3) {
    const n = (bytes[i] << 16) | (bytes[i + 1] << 8) | bytes[i + 2];
    out += ALPHABET[n >> 18] + ALPHABET[(n >> 12) & 63] + ALPHABET[(n >> 6) & 63] + ALPHABET[n & 63];
  }
  const rest = bytes.length - i;
  if (rest === 1) {
    const n = bytes[i] << 16;
    out += ALPHABET[n >> 18] + ALPHABET[(n >> 12) & 63] + '==';
  } else if (rest === 2) {
    const n = (bytes[i] << 16) | (bytes[i + 1] << 8);
    out += ALPHABET[n >> 18] + ALPHABET[(n >> 12) & 63] + ALPHABET[(n >> 6) & 63] + '=';
  }
  return out;
}

/**
 * Decodes standard, padded base64. Rejects the URL-safe alphabet, missing
 * padding, whitespace, and non-zero unused bits (so each byte string has
 * exactly one accepted encoding).
 */
export function fromBase64(text, what = 'base64 value') {
  if (typeof text !== 'string') throw new EncodingError(`${what} is not a string`);
  if (text.length % 4 !== 0) throw new EncodingError(`${what} is not valid base64 (length ${text.length} is not a multiple of 4)`);
  let pad = 0;
  if (text.endsWith('==')) pad = 2;
  else if (text.endsWith('=')) pad = 1;
  const outLen = (text.length / 4) * 3 - pad;
  const out = new Uint8Array(outLen);
  let o = 0;
  for (let i = 0; i < text.length; i += 4) {
    const last = i + 4 === text.length;
    const vals = [0, 0, 0, 0];
    for (let j = 0; j < 4; j++) {
      const c = text.charCodeAt(i + j);
      if (c === 61 /* = */ && last && j >= 4 - pad) {
        vals[j] = 0;
        continue;
      }
      const v = c < 128 ? DECODE[c] : -1;
      if (v < 0) throw new EncodingError(`${what} is not valid base64 (bad character at position ${i + j})`);
      vals[j] = v;
    }
    const n = (vals[0] << 18) | (vals[1] << 12) | (vals[2] << 6) | vals[3];
    if (last && pad === 2) {
      if (n & 0xffff) throw new EncodingError(`${what} is not canonical base64 (non-zero padding bits)`);
      out[o++] = n >> 16;
    } else if (last && pad === 1) {
      if (n & 0xff) throw new EncodingError(`${what} is not canonical base64 (non-zero padding bits)`);
      out[o++] = n >> 16;
      out[o++] = (n >> 8) & 0xff;
    } else {
      out[o++] = n >> 16;
      out[o++] = (n >> 8) & 0xff;
      out[o++] = n & 0xff;
    }
  }
  return out;
}

/** Lowercase hex. */
export function toHex(bytes) {
  let s = '';
  for (const b of bytes) s += b.toString(16).padStart(2, '0');
  return s;
}

/** Decodes hex (either case); rejects odd length and non-hex characters. */
export function fromHex(text, what = 'hex value') {
  if (typeof text !== 'string' || text.length % 2 !== 0 || !/^[0-9a-fA-F]*$/.test(text)) {
    throw new EncodingError(`${what} is not valid hex`);
  }
  const out = new Uint8Array(text.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(text.substr(i * 2, 2), 16);
  return out;
}

const encoder = new TextEncoder();

/** UTF-8 bytes of a string. */
export function utf8(text) {
  return encoder.encode(text);
}

/** Decodes UTF-8, rejecting invalid sequences instead of inserting U+FFFD. */
export function fromUtf8(bytes, what = 'text') {
  try {
    return new TextDecoder('utf-8', { fatal: true, ignoreBOM: true }).decode(bytes);
  } catch {
    throw new EncodingError(`${what} is not valid UTF-8`);
  }
}

export function concatBytes(...parts) {
  let len = 0;
  for (const p of parts) len += p.length;
  const out = new Uint8Array(len);
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

export function bytesEqual(a, b) {
  if (a.length !== b.length) return false;
  let diff = 0;
  for (let i = 0; i < a.length; i++) diff |= a[i] ^ b[i];
  return diff === 0;
}

/** Reads `n` bytes at `off` as a big-endian unsigned integer (BigInt). */
export function readUintBE(bytes, off, n) {
  let v = 0n;
  for (let i = 0; i < n; i++) v = (v << 8n) | BigInt(bytes[off + i]);
  return v;
}

export const U64_MAX = (1n << 64n) - 1n;

/**
 * Parses a canonical unsigned decimal (no sign, no leading zeros except
 * "0", at most 2^64-1) into a BigInt.
 */
export function parseDecimalU64(text, what = 'number') {
  if (typeof text !== 'string' || !/^(0|[1-9][0-9]*)$/.test(text)) {
    throw new EncodingError(`${what} is not a canonical decimal number: ${JSON.stringify(String(text).slice(0, 40))}`);
  }
  const v = BigInt(text);
  if (v > U64_MAX) throw new EncodingError(`${what} does not fit in 64 bits`);
  return v;
}

/**
 * Turns a JSON-ish integer (number, BigInt or decimal string) into a
 * BigInt, rejecting fractions, negatives and numbers past 2^64-1.
 */
export function toU64(value, what = 'number') {
  if (typeof value === 'bigint') {
    if (value < 0n || value > U64_MAX) throw new EncodingError(`${what} is out of range`);
    return value;
  }
  if (typeof value === 'number') {
    if (!Number.isSafeInteger(value) || value < 0) {
      throw new EncodingError(`${what} is not a non-negative integer that JSON can carry exactly`);
    }
    return BigInt(value);
  }
  if (typeof value === 'string') return parseDecimalU64(value, what);
  throw new EncodingError(`${what} is missing or not a number`);
}

/**
 * JSON.parse that keeps integers beyond 2^53 exact: such integer literals
 * (outside strings) become decimal strings, which toU64 accepts.
 */
export function parseJsonExact(text) {
  const safe = text.replace(/"(?:[^"\\]|\\.)*"|-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?/g, (tok) => {
    if (tok[0] === '"') return tok;
    if (/^\d{16,}$/.test(tok)) return `"${tok}"`;
    return tok;
  });
  return JSON.parse(safe);
}
