"""The client against a real Veritrail server, started by
scripts/python-client.sh (VERITRAIL_URL, VERITRAIL_WRITER, VERITRAIL_AUDITOR)."""

import base64
import hashlib
import http.server
import os
import threading
import urllib.request
import uuid

import pytest
import requests
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from veritrail_client import Client, SubmitError, VerificationError

URL = os.environ["VERITRAIL_URL"]
WRITER = os.environ["VERITRAIL_WRITER"]
AUDITOR = os.environ["VERITRAIL_AUDITOR"]


def event(subject):
    return {
        "actor": {"id": "alice", "type": "user"},
        "action": "record.read",
        "resource": {"type": "record", "id": "r-1"},
        "subject": subject,
        "purpose": "care",
        "outcome": "success",
        "occurred_at": "2026-11-25T10:00:00Z",
    }


def found(subject):
    resp = requests.get(
        f"{URL}/v1/events", params={"subject": subject},
        headers={"Authorization": f"Bearer {AUDITOR}"}, timeout=30,
    )
    resp.raise_for_status()
    return resp.json()["events"]


def test_one_event_with_wait_checkpoint_has_a_verified_receipt():
    subject = f"s-{uuid.uuid4()}"
    r = Client(URL, WRITER).submit(event(subject), wait="checkpoint")
    assert r.checkpoint is not None and r.checkpoint.size > r.index
    assert not r.duplicate
    assert [e["index"] for e in found(subject)] == [r.index]


def test_a_resubmitted_batch_is_not_appended_twice():
    client = Client(URL, WRITER)
    events = [event(f"b-{uuid.uuid4()}") for _ in range(3)]
    first = client.submit_batch(events, wait="checkpoint")
    again = client.submit_batch(
        [dict(e, id=r.id) for e, r in zip(events, first)], wait="checkpoint"
    )
    assert [r.index for r in again] == [r.index for r in first]
    assert all(r.duplicate for r in again) and not any(r.duplicate for r in first)
    for e in events:
        assert len(found(e["subject"])) == 1


class LosingProxy(http.server.ThreadingHTTPServer):
    """Forwards to the server, but answers the first request 503 after the
    server accepted it: a lost answer."""

    def __init__(self):
        super().__init__(("127.0.0.1", 0), Forward)
        self.requests = 0


class Forward(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.server.requests += 1
        req = urllib.request.Request(URL + self.path, data=body, method="POST")
        for h in ("Authorization", "Content-Type"):
            req.add_header(h, self.headers[h])
        with urllib.request.urlopen(req, timeout=30) as resp:
            answer = resp.read()
        status = 503 if self.server.requests == 1 else 200
        self.send_response(status)
        self.send_header("Retry-After", "0")
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def do_GET(self):
        with urllib.request.urlopen(URL + self.path, timeout=30) as resp:
            answer = resp.read()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)


def test_a_retry_after_a_lost_answer_keeps_the_id_and_appends_once():
    proxy = LosingProxy()
    threading.Thread(target=proxy.serve_forever, daemon=True).start()
    try:
        subject = f"r-{uuid.uuid4()}"
        client = Client(f"http://127.0.0.1:{proxy.server_address[1]}", WRITER)
        r = client.submit(event(subject), wait="checkpoint")
        assert proxy.requests == 2
        assert r.duplicate, "the retry reached a log that already held the event"
        assert [e["index"] for e in found(subject)] == [r.index]
    finally:
        proxy.shutdown()


def test_a_receipt_signed_by_another_key_is_refused():
    origin = requests.get(f"{URL}/v1/log", timeout=30).json()["origin"]
    sk = Ed25519PrivateKey.generate()
    pub = b"\x01" + sk.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    key_id = hashlib.sha256(origin.encode() + b"\n" + pub).digest()[:4]
    other = f"{origin}+{key_id.hex()}+{base64.b64encode(pub).decode()}"
    client = Client(URL, WRITER, verifier_key=other)
    with pytest.raises(VerificationError, match="no signature by"):
        client.submit(event(f"x-{uuid.uuid4()}"), wait="checkpoint")


def test_an_invalid_event_is_refused_with_the_servers_reason():
    bad = dict(event("y"), outcome="maybe")
    with pytest.raises(SubmitError) as e:
        Client(URL, WRITER).submit(bad)
    assert e.value.status == 400 and "outcome" in e.value.message
