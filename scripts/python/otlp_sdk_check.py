"""Exports audit records with the real OpenTelemetry Python SDK to a running
Veritrail server and checks that the log holds each of them exactly once.

Run by scripts/otlp-sdk.sh, which starts the server and passes:
  VERITRAIL_URL, VERITRAIL_WRITER, VERITRAIL_AUDITOR, VERITRAIL_APP,
  VERITRAIL_BIN (for `verify-bundle`), OTLP_RECORDS (default 10000).

The exporter talks to the server through a loopback proxy that forwards
every request, but answers one of them (after the server has accepted it)
with 503: the SDK then retries a request the log already holds, as it would
after a lost answer. Checks, in order:
  1. the retried request reached the server twice;
  2. the tree grew by exactly OTLP_RECORDS leaves;
  3. every record is found by its subject, exactly once, with its fields;
  4. a sample of records has tlog-proofs that `veritrail verify-bundle`
     accepts with the log's verifier keys (signed checkpoint + inclusion).
"""

import concurrent.futures
import hashlib
import http.server
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request

from opentelemetry._logs import SeverityNumber
from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
from opentelemetry.sdk.resources import Resource

URL = os.environ["VERITRAIL_URL"].rstrip("/")
WRITER = os.environ["VERITRAIL_WRITER"]
AUDITOR = os.environ["VERITRAIL_AUDITOR"]
APP = os.environ["VERITRAIL_APP"]
BIN = os.environ["VERITRAIL_BIN"]
N = int(os.environ.get("OTLP_RECORDS", "10000"))
BATCH = 500
# The proxy answers this request (counting from 1), in the middle of the
# export, with 503 after forwarding it.
FAIL_AT = max(1, N // BATCH // 2)
PROOF_SAMPLE = 25
RUN = hashlib.sha256(os.urandom(16)).hexdigest()[:8]


def fail(message):
    print(f"otlp_sdk_check: FAILED: {message}", file=sys.stderr)
    sys.exit(1)


def request(method, path, key, body=None, headers=None, timeout=30):
    req = urllib.request.Request(URL + path, data=body, method=method)
    req.add_header("Authorization", f"Bearer {key}")
    for name, value in (headers or {}).items():
        req.add_header(name, value)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


class Proxy(http.server.ThreadingHTTPServer):
    """Forwards POST /v1/logs to the server; answers request FAIL_AT with 503."""

    daemon_threads = True

    def __init__(self):
        super().__init__(("127.0.0.1", 0), ProxyHandler)
        self.lock = threading.Lock()
        self.count = 0
        self.seen = {}  # body digest -> times forwarded
        self.failed_digest = None
        self.statuses = []
        self.partial = []


class ProxyHandler(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        digest = hashlib.sha256(body).hexdigest()
        srv = self.server
        with srv.lock:
            srv.count += 1
            number = srv.count
            srv.seen[digest] = srv.seen.get(digest, 0) + 1
        forward = {
            k: self.headers[k]
            for k in ("Content-Type", "Content-Encoding")
            if self.headers.get(k)
        }
        status, headers, answer = request(
            "POST", self.path, WRITER, body, forward
        )
        with srv.lock:
            srv.statuses.append(status)
            if status == 200 and answer:
                srv.partial.append(answer)
        if number == FAIL_AT and status == 200:
            with srv.lock:
                srv.failed_digest = digest
            self.send_response(503)
            self.send_header("Retry-After", "1")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self.send_response(status)
        for name in ("Content-Type", "Retry-After"):
            if headers.get(name):
                self.send_header(name, headers[name])
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)


def tree_size():
    status, _, body = request("GET", "/v1/checkpoint", AUDITOR)
    if status != 200:
        fail(f"GET /v1/checkpoint answered {status}: {body[:200]!r}")
    return json.loads(body)["tree_size"]


def export(proxy_url):
    exporter = OTLPLogExporter(
        endpoint=proxy_url + "/v1/logs",
        # The proxy replaces the key; the SDK sends one all the same, as in production.
        headers={"Authorization": f"Bearer {WRITER}"},
        compression=Compression.Gzip,
        timeout=30,
    )
    provider = LoggerProvider(resource=Resource.create({"service.name": APP}))
    provider.add_log_record_processor(
        BatchLogRecordProcessor(
            exporter,
            max_queue_size=N + 1,
            max_export_batch_size=BATCH,
            schedule_delay_millis=100,
        )
    )
    logger = provider.get_logger("veritrail.otlp-sdk-check")
    base = time.time_ns()
    for i in range(N):
        logger.emit(
            timestamp=base + i * 1000,
            severity_number=SeverityNumber.INFO,
            severity_text="INFO",
            body=f"record {i} read",
            attributes={
                "audit.actor.id": f"user-{i % 50}",
                "audit.actor.type": "user",
                "client.address": f"203.0.113.{i % 250 + 1}",
                "audit.action": "record.read",
                "audit.resource.type": "record",
                "audit.resource.id": f"rec-{i}",
                "audit.subject": f"subject-{RUN}-{i}",
                "audit.purpose": "treatment",
                "audit.outcome": "success",
                "ward": "cardiology",
            },
        )
    if not provider.force_flush(timeout_millis=300_000):
        fail("the SDK could not flush its records within 300 s")
    provider.shutdown()


def find(i):
    subject = f"subject-{RUN}-{i}"
    status, _, body = request("GET", f"/v1/events?subject={subject}&limit=5", AUDITOR)
    if status != 200:
        return f"subject {subject}: search answered {status}: {body[:200]!r}"
    events = json.loads(body)["events"]
    if len(events) != 1:
        return f"subject {subject}: found {len(events)} events, want exactly 1"
    ev = events[0]
    e = ev.get("event") or {}
    want = {
        "subject": subject,
        "action": "record.read",
        "resource": {"type": "record", "id": f"rec-{i}"},
        "actor": {"id": f"user-{i % 50}", "type": "user", "ip": f"203.0.113.{i % 250 + 1}"},
        "purpose": "treatment",
        "outcome": "success",
    }
    for field, value in want.items():
        if e.get(field) != value:
            return f"subject {subject}: {field} is {e.get(field)!r}, want {value!r}"
    if ev["app"] != APP:
        return f"subject {subject}: app is {ev['app']!r}, want {APP!r}"
    if not str(e.get("id", "")).startswith("otlp-"):
        return f"subject {subject}: no derived idempotency id"
    if e.get("context", {}).get("otel", {}).get("attributes") != {"ward": "cardiology"}:
        return f"subject {subject}: the other attributes are not in context.otel"
    return ev["index"]


def verify_proofs(indexes, vkeys):
    with tempfile.TemporaryDirectory() as tmp:
        for index in indexes:
            for _ in range(50):
                status, _, body = request("GET", f"/v1/events/{index}/tlog-proof", AUDITOR)
                if status != 409:  # 409: no checkpoint covers it yet
                    break
                time.sleep(0.2)
            if status != 200:
                fail(f"tlog-proof of {index} answered {status}: {body[:200]!r}")
            path = os.path.join(tmp, f"{index}.tlog-proof")
            with open(path, "wb") as f:
                f.write(body)
            args = [BIN, "verify-bundle", path]
            for key in vkeys:
                args += ["--vkey", key]
            done = subprocess.run(args, capture_output=True, text=True)
            if done.returncode != 0:
                fail(f"verify-bundle rejected the proof of {index}: {done.stderr.strip()}")


def committed_size():
    """The size the log has made durable, its own key records included
    (the signed checkpoint may not cover those yet). /healthz says it also
    when it answers 503 because a checkpoint is late."""
    status, _, body = request("GET", "/healthz", AUDITOR)
    if status not in (200, 503):
        fail(f"GET /healthz answered {status}: {body[:200]!r}")
    return json.loads(body)["committed_size"]


def main():
    before = committed_size()
    proxy = Proxy()
    threading.Thread(target=proxy.serve_forever, daemon=True).start()
    started = time.monotonic()
    export(f"http://127.0.0.1:{proxy.server_address[1]}")
    proxy.shutdown()
    print(f"exported {N} records in {time.monotonic() - started:.1f} s "
          f"({proxy.count} requests through the proxy)")

    # 1. The retry happened and reached the server.
    if proxy.failed_digest is None:
        fail(f"the proxy never failed a request (it saw {proxy.count})")
    if proxy.seen[proxy.failed_digest] < 2:
        fail("the SDK did not retry the request answered 503")
    if any(s != 200 for s in proxy.statuses):
        fail(f"the server answered {sorted(set(proxy.statuses))}, not only 200")
    for answer in proxy.partial:
        # A protobuf ExportLogsServiceResponse with partial_success set
        # starts with field 1 (tag 0x0a); a full success is empty.
        if answer[:1] == b"\x0a":
            fail(f"the server rejected records: {answer!r}")
    print(f"request {FAIL_AT} was answered 503 after it was accepted; "
          f"the SDK sent it {proxy.seen[proxy.failed_digest]} times")

    # 2. Exactly N new leaves, once the checkpoint covers them all.
    deadline = time.monotonic() + 60
    while tree_size() < before + N and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(1.5)  # one more checkpoint interval: nothing more arrives
    grown = tree_size() - before
    if grown != N:
        fail(f"the tree grew by {grown} leaves, want exactly {N}")
    print(f"the tree grew by exactly {N} leaves")

    # 3. Each record found by subject. (Each search appends the log's own
    # audit event, so this comes after the size check.)
    indexes = []
    with concurrent.futures.ThreadPoolExecutor(max_workers=4) as pool:
        for i, found in enumerate(pool.map(find, range(N))):
            if isinstance(found, str):
                fail(found)
            indexes.append(found)
    if len(set(indexes)) != N:
        fail(f"{N} subjects found at only {len(set(indexes))} distinct leaves")
    print(f"all {N} records found by subject, each exactly once")

    # 4. Receipts: signed checkpoint and inclusion proof, checked offline.
    status, _, body = request("GET", "/v1/log", AUDITOR)
    keys = json.loads(body)["verifier_keys"]
    step = max(1, N // PROOF_SAMPLE)
    sample = sorted(indexes)[::step][:PROOF_SAMPLE] + [max(indexes)]
    verify_proofs(sample, [keys["ecdsa"], keys["ed25519"]])
    print(f"{len(sample)} sampled inclusion proofs verify against the signed checkpoint")
    print("otlp-sdk: 1 passed, 0 failed")


if __name__ == "__main__":
    main()
