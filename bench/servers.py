"""Starting and stopping the servers the benchmarks call, as child processes."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from webhook.certs.bundle import write_ca_and_serving_cert

HERE = Path(__file__).resolve().parent
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Certs:
    ca: str
    cert: str
    key: str


def make_certs(directory: Path) -> Certs:
    paths = write_ca_and_serving_cert(directory, ["localhost", "127.0.0.1"])
    return Certs(str(paths.ca_cert), str(paths.cert), str(paths.key))


class Server:
    """One server process on 127.0.0.1:port; ``stop()`` ends it (and its workers)."""

    def __init__(self, name: str, argv: list[str], port: int, certs: Certs, log: Path):
        self.name, self.argv, self.port, self.certs, self.log = name, argv, port, certs, log
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 60.0) -> Server:
        with open(self.log, "ab") as out:
            # Own process group, so stop() reaches gunicorn's workers too.
            self.proc = subprocess.Popen(
                self.argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
            )
        ctx = ssl.create_default_context(cafile=self.certs.ca)
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited {self.proc.returncode}; see {self.log}")
            try:
                with urllib.request.urlopen(f"https://127.0.0.1:{self.port}/readyz", context=ctx, timeout=2):
                    return self
            except OSError:
                if time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"{self.name} not ready after {timeout:.0f}s; see {self.log}")
                time.sleep(0.2)

    def pids(self) -> list[int]:
        """The server process and its children (gunicorn's workers)."""
        if not self.proc:
            return []
        out = [self.proc.pid]
        try:
            children = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children").read_text().split()
        except OSError:
            children = []
        return out + [int(c) for c in children]

    def cpu_seconds(self) -> float:
        """CPU time (user + system) used so far by the server and its live workers.
        Less sensitive to other load on a shared machine than wall-clock throughput."""
        total = 0
        for pid in self.pids():
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14, 15)
        return total / CLOCK_TICKS

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.proc = None

    def __enter__(self) -> Server:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def project_server(certs: Certs, workdir: Path, workers: int, port: int | None = None) -> Server:
    """`gpu-rightsizer serve` itself, with the shipped gunicorn config."""
    port = port or free_port()
    argv = [
        str(BIN / "gpu-rightsizer"),
        "serve",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        str(workers),
        "--cert-file",
        certs.cert,
        "--key-file",
        certs.key,
    ]
    return Server(f"gpu-rightsizer serve (workers={workers})", argv, port, certs, workdir / f"project-{port}.log")


def bench_server(
    app: str,
    certs: Certs,
    workdir: Path,
    workers: int,
    worker_class: str | None = None,
    threads: int | None = None,
    access_log: Path | None = None,
    port: int | None = None,
    response_file: Path | None = None,
) -> Server:
    """bench/floor_app.py: the allow-all floor (or our app) on the same gunicorn stack;
    ``response_file``: fields the floor adds to every answer (floor_app --response)."""
    port = port or free_port()
    # No worker class given: the one `serve` ships (webhook/serving/gunicorn_conf.py), for the
    # floor and the project alike.
    argv = [
        sys.executable,
        "-m",
        "bench.floor_app",
        "--app",
        app,
        "--port",
        str(port),
        "--workers",
        str(workers),
        "--cert-file",
        certs.cert,
        "--key-file",
        certs.key,
    ]
    if worker_class:
        argv += ["--worker-class", worker_class]
    if worker_class == "sync":
        # gunicorn silently runs gthread instead of sync when threads > 1 (and the
        # shipped config says 4), so the sync worker needs threads=1 said out loud.
        threads = 1
    if threads:
        argv += ["--threads", str(threads)]
    if access_log:
        argv += ["--access-log", str(access_log)]
    label = app
    if response_file:
        argv += ["--response", str(response_file)]
        label = f"{app} replaying a fixed response"
    name = f"{label} ({worker_class or 'shipped worker'}, workers={workers}{f', threads={threads}' if threads else ''})"
    return Server(name, argv, port, certs, workdir / f"{app}-{port}.log")


def our_response_file(review: dict, workdir: Path) -> Path:
    """Our answer's patch and warnings for ``review`` under the built-in policy (what
    `serve` answers without --policy), as the JSON object a replaying server sends with
    every answer (floor_app --response, goallow -response)."""
    from webhook.admission.admit import admit
    from webhook.admission.answer import PlainAnswers
    from webhook.core.policy import default_policy

    answer = admit(review, PlainAnswers(default_policy())).response
    path = workdir / "our-response-fields.json"
    path.write_text(json.dumps({k: answer[k] for k in ("patchType", "patch", "warnings") if k in answer}))
    return path


def build_go_allow(out_dir: Path) -> Path:
    """Build bench/goallow with the machine's Go into ``out_dir``."""
    go = shutil.which("go")
    if not go:
        raise RuntimeError("go is not installed; the Go allow-all floor needs it")
    binary = out_dir / "goallow"
    subprocess.run(
        [go, "build", "-o", str(binary), str(HERE / "goallow" / "main.go")],
        check=True,
        cwd=HERE,
        env={**os.environ, "CGO_ENABLED": "0"},
    )
    return binary


def go_server(
    binary: Path, certs: Certs, workdir: Path, port: int | None = None, response_file: Path | None = None
) -> Server:
    port = port or free_port()
    argv = [str(binary), "-addr", f"127.0.0.1:{port}", "-cert", certs.cert, "-key", certs.key]
    if response_file:
        argv += ["-response", str(response_file)]
    name = "Go net/http " + ("replaying a fixed response" if response_file else "allow-all")
    return Server(name, argv, port, certs, workdir / f"goallow-{port}.log")
