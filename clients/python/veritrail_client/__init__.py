"""A small client for a Veritrail audit log: submit one event or a batch,
retry safely, and verify each receipt (inclusion proof against a checkpoint
signed by the log's Ed25519 key).

Every event gets an idempotency id (`id`) before its first attempt, so a
retry after a timeout or a 503 appends nothing twice: the log answers the
original index with `duplicate: true`.
"""

import base64
import time
import uuid
from dataclasses import dataclass

import requests

from .verify import (
    Checkpoint,
    Ed25519Verifier,
    VerificationError,
    parse_checkpoint,
    root_from_inclusion_proof,
    verify_note,
)

__all__ = [
    "Client",
    "Receipt",
    "SubmitError",
    "VerificationError",
    "Ed25519Verifier",
]

RETRY_STATUSES = {429, 502, 503, 504}


class SubmitError(Exception):
    """The log refused the events, or kept failing until the retries ran out."""

    def __init__(self, status, message):
        super().__init__(f"{status}: {message}")
        self.status = status
        self.message = message


@dataclass(frozen=True)
class Receipt:
    """One event's place in the log, verified when a checkpoint came with it."""

    id: str
    index: int
    leaf_hash: bytes
    duplicate: bool
    checkpoint: "Checkpoint | None"


class Client:
    """`Client(url, key, verifier_key=...)`. Without `verifier_key` the log's
    Ed25519 key is fetched from `GET /v1/log` on first use: pin it instead
    (from `veritrail keygen` or the operator) to trust nothing the server says."""

    def __init__(self, url, key, verifier_key=None, retries=5, timeout=30, session=None):
        self.url = url.rstrip("/")
        self.key = key
        self.retries = retries
        self.timeout = timeout
        self.session = session or requests.Session()
        self._verifier = Ed25519Verifier.parse(verifier_key) if verifier_key else None

    def verifier(self):
        if self._verifier is None:
            info = self.session.get(f"{self.url}/v1/log", timeout=self.timeout)
            info.raise_for_status()
            self._verifier = Ed25519Verifier.parse(info.json()["verifier_keys"]["ed25519"])
        return self._verifier

    def submit(self, event, wait=None):
        """Submits one event; returns its Receipt."""
        return self.submit_batch([event], wait=wait)[0]

    def submit_batch(self, events, wait=None):
        """Submits events as one all-or-nothing batch and returns one Receipt
        per event, in order. `wait="checkpoint"` waits for a signed checkpoint
        and verifies every event's inclusion proof against it."""
        events = [dict(e) for e in events]
        for e in events:
            e.setdefault("id", f"py-{uuid.uuid4()}")
        params = {"wait": wait} if wait else {}
        body = {"events": events}
        for attempt in range(self.retries + 1):
            try:
                resp = self.session.post(
                    f"{self.url}/v1/events",
                    params=params,
                    json=body,
                    headers={"Authorization": f"Bearer {self.key}"},
                    timeout=self.timeout,
                )
            except requests.RequestException as e:
                if attempt == self.retries:
                    raise SubmitError(None, f"the log did not answer: {e}") from e
                time.sleep(min(2**attempt * 0.2, 5))
                continue
            if resp.status_code in RETRY_STATUSES and attempt < self.retries:
                time.sleep(_retry_after(resp, attempt))
                continue
            if resp.status_code != 200:
                raise SubmitError(resp.status_code, _message(resp))
            return self._receipts(events, resp.json())
        raise SubmitError(None, "retries exhausted")  # unreachable: the loop returns or raises

    def _receipts(self, events, answer):
        checkpoint = None
        if "checkpoint" in answer:
            text = verify_note(answer["checkpoint"], self.verifier())
            checkpoint = parse_checkpoint(text)
        out = []
        for e, r in zip(events, answer["events"], strict=True):
            leaf = base64.b64decode(r["leaf_hash"])
            if checkpoint is not None:
                verify_inclusion(r["inclusion_proof"], leaf, r["index"], checkpoint)
            out.append(Receipt(e["id"], r["index"], leaf, r["duplicate"], checkpoint))
        return out


def verify_inclusion(proof, leaf, index, checkpoint):
    """Checks a server's `inclusion_proof` of `leaf` at `index` against a
    verified checkpoint."""
    if proof["leaf_index"] != index or proof["tree_size"] != checkpoint.size:
        raise VerificationError("the proof is for another leaf or tree")
    if base64.b64decode(proof["leaf_hash"]) != leaf:
        raise VerificationError("the proof is for another leaf hash")
    path = [base64.b64decode(h) for h in proof["audit_path"]]
    if root_from_inclusion_proof(index, checkpoint.size, leaf, path) != checkpoint.root:
        raise VerificationError("the inclusion proof does not lead to the checkpoint's root")


def _retry_after(resp, attempt):
    try:
        return min(float(resp.headers.get("Retry-After", "")), 30.0)
    except ValueError:
        return min(2**attempt * 0.2, 5)


def _message(resp):
    try:
        return resp.json()["error"]["message"]
    except (ValueError, KeyError, TypeError):
        return resp.text[:500]
