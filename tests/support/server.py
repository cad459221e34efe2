"""A real `gpu-rightsizer serve` (gunicorn, TLS) in a subprocess, for tests, plus the
Kubernetes-style mounted-volume layout (a `..data` symlink swapped atomically)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[2]


def _die_with_parent() -> None:
    # Linux: the server gets SIGTERM if the test process dies without stopping it (a
    # killed pytest must not leave gunicorn running).
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve_command(port: int, *args: str) -> list[str]:
    """`gpu-rightsizer serve` on 127.0.0.1:``port`` from this interpreter, plus ``args``."""
    return [sys.executable, "-m", "webhook.cli", "serve", "--host", "127.0.0.1", "--port", str(port), *args]


class LiveServer:
    def __init__(
        self,
        tmp: Path,
        *,
        workers: int = 2,
        threads: int = 4,
        policy: str | None = None,
        cert_file: str | None = None,
        key_file: str | None = None,
        ca_file: str | None = None,
        reload_seconds: float = 0.3,
    ):
        self.port = free_port()
        self.url = f"https://127.0.0.1:{self.port}"
        self.log_path = tmp / f"serve-{self.port}.out"
        self.err_path = tmp / f"serve-{self.port}.err"
        args = serve_command(self.port, "--workers", str(workers), "--threads", str(threads))
        if policy:
            args += ["--policy", policy]
        if cert_file:
            args += ["--cert-file", cert_file, "--key-file", key_file]
            self.ca_file = ca_file
        else:
            args += ["--cert-dir", str(tmp / "selfsigned")]
            self.ca_file = str(tmp / "selfsigned" / "ca.crt")
        env = {**os.environ, "GPU_RIGHTSIZER_RELOAD_SECONDS": str(reload_seconds)}
        env.pop("PROMETHEUS_MULTIPROC_DIR", None)
        self._out = open(self.log_path, "wb")
        self._err = open(self.err_path, "wb")
        self.proc = subprocess.Popen(
            args, stdout=self._out, stderr=self._err, cwd=ROOT, env=env, preexec_fn=_die_with_parent
        )
        self.workers = workers

    def wait_ready(self, timeout: float = 30) -> LiveServer:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"serve exited {self.proc.returncode}: {self.err_path.read_text()[-2000:]}")
            try:
                # Every worker has loaded the app (one may still be booting when the first
                # answers, and a test that swaps files must not race it).
                if (
                    requests.get(self.url + "/readyz", verify=self.ca_file, timeout=2).status_code == 200
                    and len(self.ready_workers()) >= self.workers
                ):
                    return self
            except OSError:  # not listening yet, or the CA file not written yet
                pass
            time.sleep(0.1)
        raise TimeoutError(f"serve not ready: {self.err_path.read_text()[-2000:]}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._out.close()
        self._err.close()

    def __enter__(self) -> LiveServer:
        return self.wait_ready()

    def __exit__(self, *exc) -> None:
        self.stop()

    # --- reading what it says

    def metrics(self, verify: str | None = None) -> dict[str, float]:
        """Samples of gpu_rightsizer_* metrics, keyed by 'name{labels}' as exposed."""
        text = requests.get(self.url + "/metrics", verify=verify or self.ca_file, timeout=10).text
        out = {}
        for line in text.splitlines():
            if line.startswith("gpu_rightsizer_"):
                key, value = line.rsplit(" ", 1)
                out[key] = float(value)
        return out

    def ready_workers(self) -> set[int]:
        return {line["pid"] for line in self.log_lines() if line["msg"] == "worker ready"}

    def log_lines(self) -> list[dict]:
        complete = self.log_path.read_text().split("\n")[:-1]  # the last may be half-written
        return [json.loads(raw) for raw in complete]  # every stdout line must be one JSON object


def total(samples: dict[str, float], name: str, **labels: str) -> float:
    """Sum of a metric's samples whose labels include ``labels``."""
    want = [f'{k}="{v}"' for k, v in labels.items()]
    return sum(v for k, v in samples.items() if (k == name or k.startswith(name + "{")) and all(w in k for w in want))


def mounted_volume(root: Path, files: dict[str, bytes], generation: str) -> None:
    """Write ``files`` the way the kubelet updates a ConfigMap/Secret volume: into a new
    timestamped directory, then swap the ``..data`` symlink to it with one rename; the
    visible names are symlinks through ``..data``."""
    root.mkdir(parents=True, exist_ok=True)
    target = root / f"..{generation}"
    for rel, data in files.items():
        path = target / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    tmp_link = root / "..data_tmp"
    if tmp_link.is_symlink():
        tmp_link.unlink()
    os.symlink(target.name, tmp_link)
    os.replace(tmp_link, root / "..data")
    for rel in files:
        top = rel.split("/")[0]
        visible = root / top
        if not visible.is_symlink():
            os.symlink(f"..data/{top}", visible)


def pod(name: str = "p", annotations: dict | None = None, gpu: bool = True) -> dict:
    container = {"name": "main", "image": "registry.example/llm:1"}
    if gpu:
        container["resources"] = {"limits": {"nvidia.com/gpu": "1"}}
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": "ml", "annotations": annotations or {}},
        "spec": {"containers": [container]},
    }


def review(obj: dict, uid: str, dry_run: bool = False) -> dict:
    return {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": uid,
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "requestKind": {"group": "", "version": "v1", "kind": "Pod"},
            "requestResource": {"group": "", "version": "v1", "resource": "pods"},
            "name": obj["metadata"].get("name"),
            "namespace": "ml",
            "operation": "CREATE",
            "userInfo": {"username": "test"},
            "object": obj,
            "oldObject": None,
            "dryRun": dry_run,
            "options": {"apiVersion": "meta.k8s.io/v1", "kind": "CreateOptions"},
        },
    }


# Pods for each outcome under the default policy.
MUTATED = pod("llm-7b", {"gpu-rightsizer.io/model-size": "7b"})
UNCHANGED = pod("no-size")
DENIED = pod("bad-size", {"gpu-rightsizer.io/model-size": "banana"})
IGNORED = pod("cpu-only", gpu=False)


class RunningServer:
    """A real `gpu-rightsizer serve` (gunicorn, TLS with its own generated CA)."""

    def __init__(self, workdir, *args: str, env: dict | None = None):
        self.port = free_port()
        self.cert_dir = Path(workdir) / "certs"
        self.log_path = Path(workdir) / f"serve-{self.port}.log"
        self.log = open(self.log_path, "wb")
        command = serve_command(self.port, "--cert-dir", str(self.cert_dir), *args)
        self.proc = subprocess.Popen(
            command, stdout=self.log, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})}, cwd=workdir
        )
        self.url = f"https://127.0.0.1:{self.port}"
        self.ca = self.cert_dir / "ca.crt"
        self._wait_ready()

    def _wait_ready(self, timeout: float = 30.0) -> None:
        import time

        import requests

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"serve exited with {self.proc.returncode}: {self.output()}")
            try:
                if self.ca.exists() and requests.get(self.url + "/readyz", verify=str(self.ca), timeout=1).ok:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"serve was not ready in {timeout}s: {self.output()}")

    def output(self) -> str:
        self.log.flush()
        return self.log_path.read_text(errors="replace")[-4000:]

    def stop(self) -> None:
        import signal
        import subprocess

        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
