"""The offline checks against a naive RFC 6962 reference and a note signed
here with a fresh Ed25519 key."""

import base64
import hashlib

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from veritrail_client.verify import (
    Ed25519Verifier,
    VerificationError,
    leaf_hash,
    node_hash,
    parse_checkpoint,
    root_from_inclusion_proof,
    verify_note,
)


def mth(leaves):
    """RFC 6962 §2.1, recursively."""
    if len(leaves) == 1:
        return leaves[0]
    k = 1
    while k * 2 < len(leaves):
        k *= 2
    return node_hash(mth(leaves[:k]), mth(leaves[k:]))


def path(m, leaves):
    """RFC 6962 §2.1.1 PATH(m, D[n]), recursively."""
    if len(leaves) == 1:
        return []
    k = 1
    while k * 2 < len(leaves):
        k *= 2
    if m < k:
        return path(m, leaves[:k]) + [mth(leaves[k:])]
    return path(m - k, leaves[k:]) + [mth(leaves[:k])]


def test_every_proof_of_every_small_tree_verifies_and_no_other_does():
    for size in range(1, 40):
        leaves = [leaf_hash(str(i).encode()) for i in range(size)]
        root = mth(leaves)
        for m in range(size):
            p = path(m, leaves)
            assert root_from_inclusion_proof(m, size, leaves[m], p) == root
            if m + 1 < size:
                assert root_from_inclusion_proof(m, size, leaves[m + 1], p) != root
            if p:
                with pytest.raises(VerificationError):
                    root_from_inclusion_proof(m, size, leaves[m], p[:-1])
            with pytest.raises(VerificationError):
                root_from_inclusion_proof(m, size, leaves[m], p + [root])


def signer(name):
    sk = Ed25519PrivateKey.generate()
    pub = sk.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    key_id = hashlib.sha256(name.encode() + b"\n\x01" + pub).digest()[:4]
    encoded = base64.b64encode(b"\x01" + pub).decode()
    vkey = f"{name}+{key_id.hex()}+{encoded}"

    def sign(text):
        sig = base64.b64encode(key_id + sk.sign(text.encode())).decode()
        return f"{text}\n\u2014 {name} {sig}\n"

    return vkey, sign


def test_a_signed_checkpoint_verifies_and_a_changed_one_does_not():
    vkey, sign = signer("example.com/log")
    root = base64.b64encode(bytes(32)).decode()
    text = f"example.com/log\n7\n{root}\n"
    note = sign(text)
    verifier = Ed25519Verifier.parse(vkey)
    cp = parse_checkpoint(verify_note(note, verifier))
    assert (cp.origin, cp.size, cp.root) == ("example.com/log", 7, bytes(32))
    with pytest.raises(VerificationError):
        verify_note(note.replace("\n7\n", "\n8\n"), verifier)
    other, _ = signer("example.com/log")
    with pytest.raises(VerificationError):
        verify_note(note, Ed25519Verifier.parse(other))
    with pytest.raises(VerificationError):
        Ed25519Verifier.parse(vkey.replace("+", "+00", 1))
