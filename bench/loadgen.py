"""An HTTPS load generator that calls a webhook the way kube-apiserver does.

A pool of persistent HTTP/1.1 connections over TLS (the API server keeps up to 25 idle
connections per webhook host and reuses them); a connection the server closes
(``Connection: close``, as gunicorn's sync worker does) is reopened for the next
request, paying a new TLS handshake, as the API server would.

Open loop (``open_loop``): request i is due at start + i/rate whatever happened before,
and its latency is measured from that due time, so a server that falls behind shows
its queueing in the figures instead of slowing the generator down (no coordinated
omission). Closed loop (``closed_loop``): every connection sends its next request as
soon as the previous answer arrives; its throughput is the saturation throughput.
"""

from __future__ import annotations

import asyncio
import itertools
import ssl
import time
from dataclasses import dataclass, field

from bench.stats import summary


def client_context(ca_file: str) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=ca_file)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    return ctx


def request_bytes(host: str, port: int, body: bytes, path: str = "/mutate?timeout=10s") -> bytes:
    # The headers kube-apiserver sends (see shared/admission-reviews/README.md).
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUser-Agent: kube-apiserver-admission\r\n"
        f"Content-Length: {len(body)}\r\nAccept: application/json, */*\r\n"
        "Content-Type: application/json\r\nAccept-Encoding: gzip\r\n\r\n"
    )
    return head.encode() + body


@dataclass
class Tally:
    latencies_ms: list[float] = field(default_factory=list)
    errors: int = 0
    connects: int = 0
    first_error: str = ""
    sent: int = 0

    def as_dict(self, seconds: float) -> dict:
        return {
            "completed": len(self.latencies_ms),
            "rps": len(self.latencies_ms) / seconds if seconds else 0.0,
            "errors": self.errors,
            "first_error": self.first_error,
            "connects": self.connects,
            "latency_ms": summary(self.latencies_ms),
        }


class Connection:
    def __init__(self, host: str, port: int, ctx: ssl.SSLContext, tally: Tally):
        self.host, self.port, self.ctx, self.tally = host, port, ctx, tally
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def open(self) -> None:
        self.reader, self.writer = await asyncio.open_connection(self.host, self.port, ssl=self.ctx)
        self.tally.connects += 1

    def close(self) -> None:
        # abort(): close the socket now. A polite close() would wait for the TLS
        # close_notify exchange, and asyncio.run() ending first leaves the socket open
        # until garbage collection; gunicorn 27's gthread worker drains a closing
        # connection for up to 2 s *in its main loop* (util.close_graceful), so 16 such
        # sockets stall the whole worker past its 30 s timeout (seen here: WORKER TIMEOUT).
        if self.writer is not None:
            self.writer.transport.abort()
        self.reader = self.writer = None

    async def call(self, payload: bytes) -> bytes:
        """Send one request and read its response; returns the status line."""
        if self.writer is None:
            await self.open()
        self.writer.write(payload)
        head = await self.reader.readuntil(b"\r\n\r\n")
        status_end = head.index(b"\r\n")
        status = head[:status_end]
        lower = head.lower()
        i = lower.find(b"\r\ncontent-length:")
        if i < 0:
            raise RuntimeError(f"no Content-Length in response {status!r}")
        j = lower.index(b"\r\n", i + 2)
        await self.reader.readexactly(int(head[i + 17 : j]))
        if b"\r\nconnection: close" in lower:
            self.close()
        return status


def _payloads(host: str, port: int, body: bytes | list[bytes]):
    """An endless iterator of request bytes: one body, or a list of bodies sent in turn
    (distinct pods, so a memo of decisions cannot answer them)."""
    bodies = [body] if isinstance(body, bytes) else body
    return itertools.cycle([request_bytes(host, port, b) for b in bodies])


async def _pool(host, port, ctx, conns, tally, payloads) -> list[Connection]:
    """``conns`` warm connections: each opened and used once before timing starts. Each
    sends its request right after its handshake, as the API server does; a pool opened
    all at once and left idle would hold gunicorn's gthread threads, which read a new
    connection's first request in a worker thread."""
    pool = [Connection(host, port, ctx, tally) for _ in range(conns)]
    await asyncio.gather(*(c.call(next(payloads)) for c in pool))
    return pool


def _record(tally: Tally, status: bytes, started: float) -> None:
    if status.startswith(b"HTTP/1.1 200"):
        tally.latencies_ms.append((time.perf_counter() - started) * 1000)
    else:
        tally.errors += 1
        tally.first_error = tally.first_error or status.decode(errors="replace")


async def _open_loop(host, port, ctx, payloads, rate, seconds, conns, timeout) -> dict:
    tally = Tally()
    pool = await _pool(host, port, ctx, conns, tally, payloads)
    queue: asyncio.Queue = asyncio.Queue()
    total = int(rate * seconds)

    async def worker(conn: Connection) -> None:
        while True:
            due = await queue.get()
            if due is None:
                return
            try:
                _record(tally, await conn.call(next(payloads)), due)
            except Exception as err:  # noqa: BLE001 - counted, the run goes on
                tally.errors += 1
                tally.first_error = tally.first_error or repr(err)
                conn.close()

    workers = [asyncio.create_task(worker(c)) for c in pool]
    start = time.perf_counter() + 0.01
    for i in range(total):
        due = start + i / rate
        delay = due - time.perf_counter()
        if delay > 0.0005:
            await asyncio.sleep(delay)
        queue.put_nowait(due)
        tally.sent += 1
    for _ in workers:
        queue.put_nowait(None)
    done, pending = await asyncio.wait(workers, timeout=timeout)
    for task in pending:
        task.cancel()
    elapsed = time.perf_counter() - start
    for c in pool:
        c.close()
    out = tally.as_dict(elapsed)
    out |= {
        "offered_rps": rate,
        "seconds": seconds,
        "connections": conns,
        "unfinished": total - out["completed"] - tally.errors,
    }
    # Overloaded: the answers came in materially slower than they were offered.
    out["overloaded"] = out["completed"] < 0.97 * total or out["latency_ms"]["p50"] > 1000
    return out


async def _closed_loop(host, port, ctx, payloads, seconds, conns) -> dict:
    tally = Tally()
    pool = await _pool(host, port, ctx, conns, tally, payloads)
    stop = time.perf_counter() + seconds

    async def worker(conn: Connection) -> None:
        while time.perf_counter() < stop:
            started = time.perf_counter()
            try:
                _record(tally, await conn.call(next(payloads)), started)
            except Exception as err:  # noqa: BLE001
                tally.errors += 1
                tally.first_error = tally.first_error or repr(err)
                conn.close()

    start = time.perf_counter()
    await asyncio.gather(*(worker(c) for c in pool))
    elapsed = time.perf_counter() - start
    for c in pool:
        c.close()
    return tally.as_dict(elapsed) | {"seconds": seconds, "connections": conns}


def open_loop(
    host: str,
    port: int,
    ca_file: str,
    body: bytes | list[bytes],
    rate: float,
    seconds: float,
    conns: int = 16,
    timeout: float = 15.0,
) -> dict:
    payloads = _payloads(host, port, body)
    return asyncio.run(_open_loop(host, port, client_context(ca_file), payloads, rate, seconds, conns, timeout))


def closed_loop(host: str, port: int, ca_file: str, body: bytes | list[bytes], seconds: float, conns: int = 16) -> dict:
    payloads = _payloads(host, port, body)
    return asyncio.run(_closed_loop(host, port, client_context(ca_file), payloads, seconds, conns))
