"""A real `gpu-rightsizer serve` for the reliability tests and bench/ scripts: the
project's LiveServer (tests/support/server.py) plus what they need to look inside it:
worker pids, their RSS, which client ports each worker holds, raw TLS sockets."""

from __future__ import annotations

import http.client
import json
import os
import socket
import ssl
import time
from pathlib import Path

from tests.support.server import LiveServer
from webhook.serving import gunicorn_conf


def children_of(pid: int) -> set[int]:
    """Pids whose parent is ``pid`` (gunicorn's workers are the arbiter's children)."""
    found = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        # The command name is in parentheses and may hold spaces: split after it.
        fields = stat[stat.rindex(")") + 2 :].split()
        if int(fields[1]) == pid and fields[0] != "Z":
            found.add(int(entry))
    return found


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise ValueError(f"no VmRSS for pid {pid}")


def socket_inodes(pid: int) -> set[str]:
    inodes = set()
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return inodes
    for fd in fds:
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    return inodes


def peer_ports(pid: int, server_port: int) -> set[int]:
    """Remote ports of the established TCP connections ``pid`` holds on ``server_port``:
    for a client on this machine, the local ports of its connections to that process."""
    inodes = socket_inodes(pid)
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            parts = line.split()
            local, remote, state, inode = parts[1], parts[2], parts[3], parts[9]
            if inode in inodes and state == "01" and int(local.rsplit(":", 1)[1], 16) == server_port:
                ports.add(int(remote.rsplit(":", 1)[1], 16))
    return ports


class ServedWebhook(LiveServer):
    """tests/live_server.py's LiveServer, plus what the reliability tests look at: the
    worker processes, raw TLS sockets, requests with any method, body and headers."""

    host = "127.0.0.1"

    @property
    def ca(self) -> Path:
        return Path(self.ca_file)

    @property
    def cert_dir(self) -> Path:
        return self.ca.parent

    @property
    def master_pid(self) -> int:
        return self.proc.pid

    def client_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.ca))

    def connection(self, timeout: float = 10.0) -> http.client.HTTPSConnection:
        return http.client.HTTPSConnection(self.host, self.port, context=self.client_context(), timeout=timeout)

    def tls_socket(self, timeout: float = 10.0) -> ssl.SSLSocket:
        raw = socket.create_connection((self.host, self.port), timeout=timeout)
        return self.client_context().wrap_socket(raw, server_hostname=self.host)

    def request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: dict | None = None,
        timeout: float = 10.0,
    ) -> tuple[int, dict, bytes]:
        conn = self.connection(timeout)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            resp = conn.getresponse()
            return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
        finally:
            conn.close()

    def post_review(self, review: dict | bytes, timeout: float = 10.0, **headers) -> tuple[int, dict, bytes]:
        body = review if isinstance(review, bytes) else json.dumps(review).encode()
        return self.request(
            "POST", "/mutate?timeout=10s", body, {"Content-Type": "application/json", **headers}, timeout
        )

    def worker_pids(self) -> set[int]:
        return children_of(self.proc.pid)

    def wait_for_workers(
        self, count: int | None = None, exclude: set[int] = frozenset(), timeout: float = 30
    ) -> set[int]:
        """Wait until ``count`` workers not in ``exclude`` run and the server answers."""
        count = self.workers if count is None else count
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}:\n{self.log_tail()}")
            pids = self.worker_pids()
            if len(pids) == count and not pids & exclude and self.healthy():
                return pids
            time.sleep(0.1)
        raise TimeoutError(f"workers not ready (have {self.worker_pids()}):\n{self.log_tail()}")

    def healthy(self) -> bool:
        try:
            return self.request("GET", "/healthz", timeout=2)[0] == 200
        except OSError:
            return False

    def log_tail(self, chars: int = 4000) -> str:
        """The end of what the server wrote: gunicorn's log (stderr), then the JSON lines."""
        text = self.err_path.read_text(errors="replace") + self.log_path.read_text(errors="replace")
        return text[-chars:]


def start_server(
    workdir: Path,
    *,
    workers: int = 2,
    threads: int | None = None,
    policy: Path | None = None,
    reload_seconds: float = 2.0,
) -> ServedWebhook:
    """`gpu-rightsizer serve` on a free loopback port with a CA of its own in workdir,
    with the threads of the shipped configuration unless told otherwise."""
    server = ServedWebhook(
        Path(workdir),
        workers=workers,
        threads=threads or gunicorn_conf.threads,
        policy=str(policy) if policy else None,
        reload_seconds=reload_seconds,
    )
    try:
        server.wait_ready()
        server.wait_for_workers()
    except BaseException:
        server.stop()
        raise
    return server
