"""Receipt verification, with no network: C2SP signed notes (Ed25519, type
0x01), checkpoints, and RFC 6962 / RFC 9162 inclusion proofs.

Everything here takes bytes or text and returns values or raises
VerificationError; nothing is trusted that a check did not cover.
"""

import base64
import hashlib
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey


class VerificationError(Exception):
    """A note, checkpoint or proof did not verify."""


@dataclass(frozen=True)
class Checkpoint:
    origin: str
    size: int
    root: bytes


@dataclass(frozen=True)
class Ed25519Verifier:
    """A note verifier key `name+hex8+base64(0x01 || public key)`."""

    name: str
    key_id: bytes
    public_key: bytes

    @classmethod
    def parse(cls, vkey: str) -> "Ed25519Verifier":
        # The name holds no "+"; the base64 key may.
        parts = vkey.strip().split("+", 2)
        if len(parts) != 3:
            raise VerificationError("a verifier key is name+hex8+base64")
        name, hex8, b64 = parts
        try:
            raw = base64.b64decode(b64, validate=True)
            key_id = bytes.fromhex(hex8)
        except ValueError as e:
            raise VerificationError(f"verifier key: {e}") from None
        if len(raw) != 33 or raw[0] != 0x01:
            raise VerificationError("not an Ed25519 (type 0x01) verifier key")
        # c2sp.org/signed-note: the key ID is SHA-256(name || "\n" || 0x01 || key)[:4].
        want = hashlib.sha256(name.encode() + b"\n" + raw).digest()[:4]
        if len(key_id) != 4 or key_id != want:
            raise VerificationError("the verifier key's ID does not match its key")
        return cls(name, key_id, raw[1:])


def verify_note(note: str, verifier: Ed25519Verifier) -> str:
    """Returns the note's text once `verifier`'s signature on it verifies."""
    text, sep, sigs = note.partition("\n\n")
    if not sep:
        raise VerificationError("a signed note has a blank line before its signatures")
    text += "\n"
    key = Ed25519PublicKey.from_public_bytes(verifier.public_key)
    for line in sigs.splitlines():
        if not line.startswith("\u2014 "):
            raise VerificationError("a signature line starts with an em dash and a space")
        name, _, b64 = line[2:].rpartition(" ")
        if name != verifier.name:
            continue
        try:
            raw = base64.b64decode(b64, validate=True)
        except ValueError:
            raise VerificationError("a signature is not base64") from None
        if raw[:4] != verifier.key_id:
            continue
        try:
            key.verify(raw[4:], text.encode())
        except InvalidSignature:
            raise VerificationError("the log's signature on the note is invalid") from None
        return text
    raise VerificationError(f"the note has no signature by {verifier.name}")


def parse_checkpoint(text: str) -> Checkpoint:
    """c2sp.org/tlog-checkpoint: origin, decimal size, base64 root hash."""
    lines = text.split("\n")
    if len(lines) < 4 or lines[-1] != "":
        raise VerificationError("a checkpoint has an origin, a size and a root hash")
    origin, size, root = lines[0], lines[1], lines[2]
    if not size.isdigit() or (size.startswith("0") and size != "0"):
        raise VerificationError("the checkpoint's size is not a decimal number")
    try:
        root_hash = base64.b64decode(root, validate=True)
    except ValueError:
        raise VerificationError("the checkpoint's root hash is not base64") from None
    if len(root_hash) != 32:
        raise VerificationError("the checkpoint's root hash is not 32 bytes")
    return Checkpoint(origin, int(size), root_hash)


def node_hash(left: bytes, right: bytes) -> bytes:
    """RFC 6962 §2.1: SHA-256(0x01 || left || right)."""
    return hashlib.sha256(b"\x01" + left + right).digest()


def leaf_hash(leaf: bytes) -> bytes:
    """RFC 6962 §2.1: SHA-256(0x00 || leaf)."""
    return hashlib.sha256(b"\x00" + leaf).digest()


def root_from_inclusion_proof(index: int, size: int, leaf: bytes, path: list) -> bytes:
    """RFC 9162 §2.1.3.2: the root that `path` proves `leaf` (a leaf hash)
    at `index` is in, for a tree of `size` leaves."""
    if not 0 <= index < size:
        raise VerificationError("the leaf index is outside the tree")
    fn, sn, r = index, size - 1, leaf
    for p in path:
        if sn == 0:
            raise VerificationError("the inclusion proof is too long")
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while fn & 1 == 0 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise VerificationError("the inclusion proof is too short")
    return r
