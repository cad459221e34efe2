"""A real `gpu-rightsizer serve` (gunicorn, TLS with its own CA) for the reliability tests
and the bench/ scripts, plus what they need to look inside it: worker pids, their RSS,
which client ports each worker holds, raw TLS sockets."""

from __future__ import annotations

import http.client
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


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


def _socket_inodes(pid: int) -> set[str]:
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
    inodes = _socket_inodes(pid)
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


def _command() -> list[str]:
    script = Path(sys.executable).with_name("gpu-rightsizer")
    if script.exists():
        return [str(script)]
    return [sys.executable, "-m", "webhook.cli"]


@dataclass
class LiveServer:
    proc: subprocess.Popen
    port: int
    cert_dir: Path
    log_path: Path
    workers: int
    _log_handle: object = field(repr=False, default=None)

    host = "127.0.0.1"

    @property
    def ca(self) -> Path:
        return self.cert_dir / "ca.crt"

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

    def wait_for_workers(self, count: int | None = None, exclude: set[int] = frozenset(), timeout: float = 30) -> set[int]:
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
        return self.log_path.read_text(errors="replace")[-chars:]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        if self._log_handle:
            self._log_handle.close()


def start_server(
    workdir: Path,
    *,
    workers: int = 2,
    threads: int | None = None,
    policy: Path | None = None,
    env: dict | None = None,
    extra_args: tuple[str, ...] = (),
) -> LiveServer:
    """`gpu-rightsizer serve` on a free loopback port with a CA of its own in workdir."""
    workdir = Path(workdir)
    cert_dir = workdir / "certs"
    if cert_dir.exists():
        shutil.rmtree(cert_dir)
    port = free_port()
    args = [*_command(), "serve", "--host", "127.0.0.1", "--port", str(port), "--cert-dir", str(cert_dir)]
    args += ["--workers", str(workers)]
    if threads is not None:
        args += ["--threads", str(threads)]
    if policy is not None:
        args += ["--policy", str(policy)]
    args += list(extra_args)
    log_path = workdir / "server.log"
    log = open(log_path, "ab")
    proc = subprocess.Popen(
        args,
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
        cwd=workdir,
    )
    server = LiveServer(proc, port, cert_dir, log_path, workers, log)
    try:
        deadline = time.monotonic() + 30
        while not server.ca.exists():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"server did not start:\n{server.log_tail()}")
            time.sleep(0.05)
        server.wait_for_workers()
    except BaseException:
        server.stop()
        raise
    return server
