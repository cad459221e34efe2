"""A steady-rate admission load that behaves like kube-apiserver's webhook client.

Each of ``connections`` threads keeps one HTTP/1.1 keep-alive TLS connection and sends
AdmissionReviews at its share of ``rps``. Like Go's http.Transport (whose read loop
notices a server's FIN on an idle connection and drops it from the pool), a thread that
finds its idle connection closed by the server opens a new one before sending: that is
not a failure. Like the API server (knative/pkg#1509), it never retries a request that
failed after it was sent: that is a failure, recorded with the connection's local port
and whether the connection had been used before.
"""

from __future__ import annotations

import copy
import http.client
import json
import select
import ssl
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

CAPTURE = Path(__file__).resolve().parents[1] / "fixtures" / "admission-reviews" / "pod-create.json"


@dataclass
class Request:
    started: float
    ended: float
    port: int | None
    reused: bool
    ok: bool
    error: str = ""


@dataclass
class LoadResult:
    requests: list[Request] = field(default_factory=list)
    idle_reconnects: int = 0  # idle connections found closed by the server, reopened

    @property
    def ok(self) -> int:
        return sum(r.ok for r in self.requests)

    @property
    def failures(self) -> list[Request]:
        return [r for r in self.requests if not r.ok]

    def latency_ms(self, quantile: float) -> float:
        times = sorted((r.ended - r.started) * 1000 for r in self.requests if r.ok)
        return times[min(len(times) - 1, int(quantile * len(times)))] if times else float("nan")

    def in_flight_at(self, moment: float) -> list[Request]:
        return [r for r in self.requests if r.started <= moment <= r.ended]

    def summary(self) -> str:
        errors: dict[str, int] = {}
        for r in self.failures:
            errors[r.error] = errors.get(r.error, 0) + 1
        return (
            f"{len(self.requests)} requests, {self.ok} ok, {len(self.failures)} failed {errors or ''}; "
            f"p50 {self.latency_ms(0.5):.1f} ms, p99 {self.latency_ms(0.99):.1f} ms; "
            f"{self.idle_reconnects} idle connections reopened"
        )


def _review_body(uid: str, template: dict) -> bytes:
    review = copy.deepcopy(template)
    review["request"]["uid"] = uid
    return json.dumps(review).encode()


def _closed_by_server(conn: http.client.HTTPSConnection) -> bool:
    """Whether the server has closed this idle connection (a readable idle TLS socket is
    either that or a TLS 1.3 session ticket, which a non-blocking read consumes)."""
    sock = conn.sock
    if sock is None:
        return True
    if not select.select([sock], [], [], 0)[0]:
        return False
    timeout = sock.gettimeout()
    sock.settimeout(0)
    try:
        return sock.recv(1) == b""  # data on an idle connection is a broken server too
    except ssl.SSLWantReadError:
        return False
    except OSError:
        return True
    finally:
        sock.settimeout(timeout)


class LoadGenerator:
    def __init__(self, server, rps: float, connections: int = 4, timeout: float = 10.0, fresh: bool = False):
        self.server = server
        self.fresh = fresh  # a new connection (TLS handshake) for every request
        self.interval = connections / rps
        self.connections = connections
        self.timeout = timeout
        self.result = LoadResult()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        with open(CAPTURE) as fh:
            self._template = json.load(fh)["review"]

    def start(self) -> LoadGenerator:
        for i in range(self.connections):
            thread = threading.Thread(target=self._run, args=(i,), daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def stop(self) -> LoadResult:
        self._stop.set()
        for thread in self._threads:
            thread.join(self.timeout + 5)
        return self.result

    def _record(self, request: Request) -> None:
        with self._lock:
            self.result.requests.append(request)

    def _run(self, index: int) -> None:
        conn: http.client.HTTPSConnection | None = None
        used = False
        next_at = time.monotonic() + self.interval * index / self.connections
        n = 0
        while not self._stop.is_set():
            delay = next_at - time.monotonic()
            if delay > 0:
                self._stop.wait(delay)
            next_at += self.interval
            if conn is not None and used and _closed_by_server(conn):
                conn.close()
                conn = None
                with self._lock:
                    self.result.idle_reconnects += 1
            if conn is None:
                conn = self.server.connection(self.timeout)
                used = False
            uid = f"load-{index}-{n}"
            n += 1
            started = time.monotonic()
            port = None
            try:
                if conn.sock is None:
                    conn.connect()
                port = conn.sock.getsockname()[1]
                conn.request(
                    "POST",
                    "/mutate?timeout=10s",
                    _review_body(uid, self._template),
                    {"Content-Type": "application/json"},
                )
                resp = conn.getresponse()
                body = resp.read()
                ok = resp.status == 200 and json.loads(body)["response"]["uid"] == uid
                self._record(Request(started, time.monotonic(), port, used, ok, "" if ok else f"HTTP {resp.status}"))
                used = True
                if resp.will_close or self.fresh:
                    conn.close()
                    conn = None
            except Exception as err:  # noqa: BLE001 - every failure is counted, by kind
                self._record(Request(started, time.monotonic(), port, used, False, type(err).__name__))
                conn.close()
                conn = None
        if conn is not None:
            conn.close()
