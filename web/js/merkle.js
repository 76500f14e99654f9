// RFC 6962 / RFC 9162 Merkle tree hashing and proof verification, for the
// browser (and node >= 20): SHA-256 comes from WebCrypto.
//
// Pure: takes bytes and sizes, returns hashes or a verdict; no DOM, no
// network. Indices and sizes are BigInt internally (they are unsigned
// 64-bit in the protocol, beyond what JavaScript numbers and their 32-bit
// bit operators can carry). Invariant: a proof is accepted only when it
// has exactly the length the tree shape requires and every hash is 32 bytes.

import { bytesEqual, concatBytes, toU64, EncodingError } from './b64.js';

export const HASH_SIZE = 32;

export class MerkleError extends Error {
  /** @param {string} code machine-readable reason, @param {string} message for people */
  constructor(code, message) {
    super(message);
    this.name = 'MerkleError';
    this.code = code;
  }
}

function subtle() {
  const c = globalThis.crypto;
  if (!c || !c.subtle) {
    throw new MerkleError('no-webcrypto', 'WebCrypto is not available (pages must be served over https or from localhost)');
  }
  return c.subtle;
}

export async function sha256(...parts) {
  const data = parts.length === 1 ? parts[0] : concatBytes(...parts);
  return new Uint8Array(await subtle().digest('SHA-256', data));
}

const LEAF_PREFIX = new Uint8Array([0]);
const NODE_PREFIX = new Uint8Array([1]);

/** RFC 9162 §2.1.1: leaf hash = SHA-256(0x00 || entry). */
export function leafHash(entry) {
  return sha256(LEAF_PREFIX, entry);
}

/** RFC 9162 §2.1.1: node hash = SHA-256(0x01 || left || right). */
export function nodeHash(left, right) {
  return sha256(NODE_PREFIX, left, right);
}

/** Root of the empty tree, SHA-256 of the empty string. */
export function emptyRoot() {
  return sha256(new Uint8Array(0));
}

/** RFC 9162 §2.1.2: the tree root of a complete list of leaf hashes (stack algorithm). */
export async function rootFromLeafHashes(leafHashes) {
  if (leafHashes.length === 0) return emptyRoot();
  const stack = [];
  for (let i = 0; i < leafHashes.length; i++) {
    checkHash(leafHashes[i], `leaf hash ${i}`);
    stack.push(leafHashes[i]);
    for (let m = i; m & 1; m >>>= 1) {
      const right = stack.pop();
      const left = stack.pop();
      stack.push(await nodeHash(left, right));
    }
  }
  while (stack.length > 1) {
    const right = stack.pop();
    const left = stack.pop();
    stack.push(await nodeHash(left, right));
  }
  return stack[0];
}

function checkHash(h, what) {
  if (!(h instanceof Uint8Array) || h.length !== HASH_SIZE) {
    const len = h instanceof Uint8Array ? h.length : typeof h;
    throw new MerkleError('bad-hash-length', `${what} is not a 32-byte hash (got ${len} bytes)`);
  }
}

function u64(v, what) {
  try {
    return toU64(v, what);
  } catch (e) {
    if (e instanceof EncodingError) throw new MerkleError('bad-number', e.message);
    throw e;
  }
}

/**
 * RFC 9162 §2.1.3.2: recomputes the root an inclusion proof leads to.
 * Throws MerkleError when the proof's shape cannot fit the tree. When
 * `trace` is an array, one step per proof element is pushed onto it:
 * {step, level, side, sibling, result} where `side` tells on which side the
 * proof hash (the sibling) sits.
 */
export async function rootFromInclusionProof(index, size, leaf, proof, trace) {
  const leafIndex = u64(index, 'leaf index');
  const treeSize = u64(size, 'tree size');
  checkHash(leaf, 'leaf hash');
  if (!Array.isArray(proof)) throw new MerkleError('bad-proof', 'audit path is not a list');
  proof.forEach((p, i) => checkHash(p, `audit path element ${i}`));
  if (leafIndex >= treeSize) {
    throw new MerkleError('index-out-of-range', `leaf index ${leafIndex} is not below tree size ${treeSize}`);
  }
  let fn = leafIndex;
  let sn = treeSize - 1n;
  let r = leaf;
  let level = 0;
  for (let i = 0; i < proof.length; i++) {
    const p = proof[i];
    if (sn === 0n) {
      throw new MerkleError('proof-too-long', `audit path has ${proof.length} hashes, more than a tree of size ${treeSize} needs for leaf ${leafIndex}`);
    }
    let side;
    if ((fn & 1n) === 1n || fn === sn) {
      r = await nodeHash(p, r);
      side = 'left';
      if ((fn & 1n) === 0n) {
        while ((fn & 1n) === 0n && fn !== 0n) {
          fn >>= 1n;
          sn >>= 1n;
          level++;
        }
      }
    } else {
      r = await nodeHash(r, p);
      side = 'right';
    }
    if (trace) trace.push({ step: i + 1, level, side, sibling: p, result: r });
    fn >>= 1n;
    sn >>= 1n;
    level++;
  }
  if (sn !== 0n) {
    throw new MerkleError('proof-too-short', `audit path has ${proof.length} hashes, fewer than a tree of size ${treeSize} needs for leaf ${leafIndex}`);
  }
  return r;
}

/**
 * RFC 9162 §2.1.3.2: verifies that `leaf` is at `index` in the tree of
 * `size` leaves whose root is `root`. Returns true or throws MerkleError.
 */
export async function verifyInclusion(index, size, leaf, proof, root, trace) {
  checkHash(root, 'root hash');
  const computed = await rootFromInclusionProof(index, size, leaf, proof, trace);
  if (!bytesEqual(computed, root)) {
    throw new MerkleError('root-mismatch', 'audit path does not lead to the checkpoint root');
  }
  return true;
}

/**
 * RFC 9162 §2.1.4.2 with the edge cases of transparency-dev/merkle:
 * verifies that the tree of `second` leaves with root `secondRoot` extends
 * the tree of `first` leaves with root `firstRoot`. Returns true or throws
 * MerkleError. `trace` (optional array) receives one step per proof hash.
 */
export async function verifyConsistency(first, second, firstRoot, secondRoot, proof, trace) {
  const m = u64(first, 'first tree size');
  const n = u64(second, 'second tree size');
  if (proof === null || proof === undefined) proof = [];
  if (!Array.isArray(proof)) throw new MerkleError('bad-proof', 'consistency proof is not a list');
  proof.forEach((p, i) => checkHash(p, `consistency proof element ${i}`));
  if (n < m) throw new MerkleError('size-decreased', `second tree size ${n} is smaller than first tree size ${m}`);
  if (m === 0n) throw new MerkleError('empty-first', 'a consistency proof from the empty tree is meaningless');
  if (m === n) {
    if (proof.length !== 0) throw new MerkleError('proof-too-long', 'trees of equal size need an empty consistency proof');
    if (!(firstRoot instanceof Uint8Array) || !(secondRoot instanceof Uint8Array) || !bytesEqual(firstRoot, secondRoot)) {
      throw new MerkleError('root-mismatch', `the two checkpoints both have size ${m} but different roots (a split view)`);
    }
    return true;
  }
  // Equal sizes compare the roots as given (as transparency-dev/merkle
  // does); every other case needs two real 32-byte roots.
  checkHash(firstRoot, 'first root hash');
  checkHash(secondRoot, 'second root hash');
  // RFC 9162 §2.1.4.2, steps 1-7.
  if (proof.length === 0) throw new MerkleError('proof-too-short', 'consistency proof is empty');
  let path = proof;
  if ((m & (m - 1n)) === 0n) path = [firstRoot, ...proof];
  let fn = m - 1n;
  let sn = n - 1n;
  while ((fn & 1n) === 1n) {
    fn >>= 1n;
    sn >>= 1n;
  }
  let fr = path[0];
  let sr = path[0];
  for (let i = 1; i < path.length; i++) {
    const c = path[i];
    if (sn === 0n) {
      throw new MerkleError('proof-too-long', `consistency proof has more hashes than sizes ${m} and ${n} need`);
    }
    let side;
    if ((fn & 1n) === 1n || fn === sn) {
      fr = await nodeHash(c, fr);
      sr = await nodeHash(c, sr);
      side = 'left';
      if ((fn & 1n) === 0n) {
        while ((fn & 1n) === 0n && fn !== 0n) {
          fn >>= 1n;
          sn >>= 1n;
        }
      }
    } else {
      sr = await nodeHash(sr, c);
      side = 'right';
    }
    if (trace) trace.push({ step: i, side, sibling: c, first: fr, second: sr });
    fn >>= 1n;
    sn >>= 1n;
  }
  if (sn !== 0n) {
    throw new MerkleError('proof-too-short', `consistency proof has fewer hashes than sizes ${m} and ${n} need`);
  }
  if (!bytesEqual(fr, firstRoot)) {
    throw new MerkleError('first-root-mismatch', `consistency proof does not lead to the earlier root (size ${m})`);
  }
  if (!bytesEqual(sr, secondRoot)) {
    throw new MerkleError('second-root-mismatch', `consistency proof does not lead to the later root (size ${n})`);
  }
  return true;
}
