"""Slow clients (one byte a second, in the TLS handshake, the headers or the body) must
not starve the workers: gunicorn's gthread hands a connection to a thread once its
first byte arrives, and that thread then blocks on it; webhook/serving/worker.py shuts down any
connection a thread has served for REQUEST_DEADLINE seconds, and 16 threads a worker
keep many slow connections from holding them all (README, "Failure modes")."""

from __future__ import annotations

import json
import socket
import ssl
import threading
import time

import pytest

from tests.support.hostile.corpus import captured_review
from tests.support.served import start_server
from webhook.serving.worker import REQUEST_DEADLINE

WORKERS = 2
# What the API server waits for an answer by default (timeoutSeconds: 10).
API_SERVER_TIMEOUT = 10.0


def _client_hello() -> bytes:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = context.wrap_bio(incoming, outgoing, server_hostname="webhook")
    try:
        tls.do_handshake()
    except ssl.SSLWantReadError:
        pass
    return outgoing.read()


class SlowClient(threading.Thread):
    """Sends ``data`` one byte a second; records when the server closed the connection."""

    def __init__(self, server, phase: str):
        super().__init__(daemon=True)
        self.server, self.phase = server, phase
        self.opened = self.closed_after = None
        self.stop = threading.Event()

    def run(self) -> None:
        body = json.dumps(captured_review()).encode()
        head = (
            b"POST /mutate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n"
            % len(body)
        )
        if self.phase == "idle":  # connects and sends nothing
            sock = socket.create_connection((self.server.host, self.server.port), timeout=30)
            self.opened = time.monotonic()
            self.stop.wait(60)
            sock.close()
            return
        if self.phase == "handshake":
            sock = socket.create_connection((self.server.host, self.server.port), timeout=30)
            data, send = _client_hello(), sock.send
        else:
            sock = self.server.tls_socket(30)
            data, send = (head + body if self.phase == "headers" else body), sock.send
            if self.phase == "body":
                sock.sendall(head)
        self.opened = time.monotonic()
        try:
            for i in range(len(data)):
                if self.stop.is_set():
                    return
                send(data[i : i + 1])
                self.stop.wait(1.0)
            # All sent (cannot happen within the test's time): wait for the answer.
            sock.recv(1)
        except OSError:
            self.closed_after = time.monotonic() - self.opened
        finally:
            sock.close()


@pytest.fixture
def slow_server(tmp_path):
    live = start_server(tmp_path, workers=WORKERS)
    yield live
    live.stop()


def _legit_requests(server, count: int) -> list[float]:
    """Seconds each of ``count`` sequential admission requests took (each must succeed)."""
    times = []
    review = captured_review()
    for i in range(count):
        review["request"]["uid"] = f"legit-{i}"
        started = time.monotonic()
        status, _, body = server.post_review(review, timeout=API_SERVER_TIMEOUT)
        times.append(time.monotonic() - started)
        assert status == 200 and json.loads(body)["response"]["uid"] == f"legit-{i}"
    return times


def _slow_clients(server, count: int) -> list[SlowClient]:
    clients = [SlowClient(server, ("handshake", "headers", "body")[i % 3]) for i in range(count)]
    for client in clients:
        client.start()
    time.sleep(1.5)  # let every one of them reach a thread
    return clients


def test_fewer_slow_clients_than_threads_delay_no_one_past_the_deadline(slow_server, capsys):
    threads = 16 * WORKERS
    clients = _slow_clients(slow_server, threads - 8)
    pids = slow_server.worker_pids()
    times = _legit_requests(slow_server, 5)
    for client in clients:
        client.stop.set()
    with capsys.disabled():
        print(f"\n{len(clients)} slow clients, {threads} threads: requests took {[round(t, 3) for t in times]} s")
    # The two workers do not share slow connections evenly (each accepts what it can), so
    # one may hold more than its 16 threads: a request it accepts then waits, at most one
    # deadline, for a thread (seen with a 5 s deadline: 4.0 s for one request, then 0.01 s).
    assert max(times) < REQUEST_DEADLINE + 1.5
    assert sorted(times)[len(times) // 2] < 0.5
    assert slow_server.worker_pids() == pids


def test_idle_connections_hold_no_thread(slow_server, capsys):
    clients = [SlowClient(slow_server, "idle") for _ in range(100)]
    for client in clients:
        client.start()
    time.sleep(1.5)
    times = _legit_requests(slow_server, 5)
    for client in clients:
        client.stop.set()
    with capsys.disabled():
        print(f"\n100 idle connections: requests took {[round(t, 3) for t in times]} s")
    assert max(times) < 1.0


def test_more_slow_clients_than_threads_are_cut_off_and_do_not_starve(tmp_path, capsys):
    # One worker, so that the queue in front of its 16 threads is known: 20 slow
    # connections, then a real request queued behind the 4 that found no thread.
    server = start_server(tmp_path, workers=1)
    try:
        _more_slow_clients_than_threads(server, capsys)
    finally:
        server.stop()


def _more_slow_clients_than_threads(slow_server, capsys):
    threads = 16
    clients = _slow_clients(slow_server, threads + 4)
    pids = slow_server.worker_pids()
    times = _legit_requests(slow_server, 3)
    # Two rounds of (deadline + the main loop's 1 s tick) cut every slow connection.
    limit = 2 * (REQUEST_DEADLINE + 1) + 3
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline and any(c.closed_after is None for c in clients):
        time.sleep(0.5)
    cut = [c.closed_after for c in clients if c.closed_after is not None]
    for client in clients:
        client.stop.set()
    with capsys.disabled():
        print(
            f"\n{len(clients)} slow clients, {threads} threads, deadline {REQUEST_DEADLINE} s: requests took "
            f"{[round(t, 2) for t in times]} s; {len(cut)} slow connections cut after "
            f"{min(cut, default=0):.1f}-{max(cut, default=0):.1f} s"
        )
    # The first request waits for the first round to be cut (one deadline), well within
    # the API server's timeout; the next ones find free threads.
    assert times[0] < REQUEST_DEADLINE + 2.5 and max(times[1:]) < 1.0, times
    assert len(cut) == len(clients), f"{len(clients) - len(cut)} slow connections still open after {limit} s"
    assert slow_server.worker_pids() == pids
