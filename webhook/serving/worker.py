"""gunicorn's gthread worker with a deadline on every request a thread serves.

Why: gunicorn 27's gthread worker lets a thread wait up to 5 s for a new connection's
first bytes (then hands it back to the poller, where it holds no thread), but once any
byte has arrived a thread owns the connection and reads the TLS handshake,
the request line, the headers and the body with blocking calls and no timeout
(``TConn.init`` sets the socket blocking; ``handle`` calls ``do_handshake`` and
``next(parser)``). A client sending one byte a second therefore holds a thread for as
long as it likes; with ``workers x threads`` such connections every thread is held and
the API server's admission calls time out (tests/reliability/test_slow_clients.py saw
legitimate requests time out after 15 s with 20 slow connections against 2 x 4 threads).

The fix: the worker's main loop, which wakes at least once a second, shuts down the
socket of any connection a thread has been serving for longer than ``REQUEST_DEADLINE``
seconds. The blocked read then returns EOF and the thread is free again. A real
admission request (the API server sends it in one go and reads the answer at once) is
served in milliseconds; the API server itself gives up after ``timeoutSeconds`` (10 s by
default, at most 30 s), so a request that takes longer is already lost.
"""

from __future__ import annotations

import socket
import time

from gunicorn.workers.gthread import _DEFER, ThreadWorker

from webhook import settings

# Seconds a thread may spend on one request, from its first byte to the last byte of
# the answer (TLS handshake included). Below the webhook configuration's timeoutSeconds
# (5 s in manifests/): a real request queued behind slow connections waits at most about
# this long (plus the main loop's 1 s tick) for a thread, and still gets its answer in
# time. See the module docstring and README "Failure modes".
REQUEST_DEADLINE = settings.request_deadline()
# How long a thread waits for a new connection's first byte before handing the connection
# to the poller (gunicorn's own wait is 5 s: a client that connects and sends nothing
# held a thread that long). The API server sends its ClientHello at once; a later first
# byte is still served, from the poller.
FIRST_BYTE_WAIT = 0.5


class DeadlineThreadWorker(ThreadWorker):
    def init_process(self) -> None:
        # conn -> monotonic deadline. Written by pool threads, read by the main loop:
        # single dict operations are atomic in CPython, and the main loop copies first.
        self.deadlines: dict = {}
        super().init_process()

    def handle(self, conn):
        # What the parent does first, done here so that the clock starts at the first
        # byte and the wait is short: a new connection with nothing to read yet goes back
        # to the poller, where it holds no thread (_DEFER is gthread's own marker for that; gunicorn is pinned
        # below 28 and tests/reliability exercise this path).
        if not conn.initialized and not conn.data_ready and not conn.wait_for_data(FIRST_BYTE_WAIT):
            return _DEFER
        self.deadlines[conn] = time.monotonic() + REQUEST_DEADLINE
        try:
            return super().handle(conn)
        finally:
            self.deadlines.pop(conn, None)

    def murder_pending(self) -> None:
        # Called on every turn of the main loop (at least once a second) and during a
        # graceful stop, beside the parent's own expiry of idle connections.
        super().murder_pending()
        now = time.monotonic()
        for conn, deadline in list(self.deadlines.items()):
            if now > deadline:
                self.deadlines.pop(conn, None)
                self.log.warning(
                    "request from %s not done after %.0f s; closing its connection", conn.client, REQUEST_DEADLINE
                )
                try:
                    # socket.socket.shutdown, not SSLSocket.shutdown: the latter drops
                    # the SSL object under the thread that is still reading from it.
                    socket.socket.shutdown(conn.sock, socket.SHUT_RDWR)
                except OSError:
                    pass
