"""A real Kubernetes control plane on loopback for gpu-rightsizer's end-to-end tests.

Runs etcd, kube-apiserver, kube-scheduler and kube-controller-manager (built by
build-control-plane.sh) as child processes. There is no kubelet: pods are
scheduled (bound to a node) but never run, which is all an admission webhook
and scheduling test needs. GPU nodes are faked with `make_fake_gpu_node`.

    with ControlPlane(bin_dir) as cp:
        cp.kubectl("create", "namespace", "demo")

Everything lives in one temporary directory (certs, etcd data, kubeconfig,
component logs) that is removed on stop.
"""

from __future__ import annotations

import base64
import contextlib
import ctypes
import datetime
import json
import os
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

LOG_TAIL_LINES = 40
# kube-apiserver did not exit within 10 s of SIGTERM in our runs; nothing of
# value is lost by killing a throwaway cluster sooner.
STOP_GRACE_SECONDS = 3.0
SERVICE_CIDR = "10.96.0.0/24"
NOT_READY_TAINT = "node.kubernetes.io/not-ready"
# No kubelets: node lifecycle would taint and evict the fake nodes, and the cloud/LB/route
# controllers have no cloud to talk to.
DISABLED_CONTROLLERS = ("nodelifecycle", "cloud-node-lifecycle", "service-lb-controller", "node-route-controller")

# Allocatable every fake node gets unless overridden: without `pods` the
# scheduler treats the node as full ("Too many pods").
DEFAULT_NODE_ALLOCATABLE = {"cpu": "16", "memory": "64Gi", "pods": "110"}


class ControlPlaneError(RuntimeError):
    """The control plane failed to start, or a component (or a ManagedProcess) died."""


class KubectlError(subprocess.CalledProcessError):
    """A failed kubectl call; unlike CalledProcessError its message has stderr."""

    def __str__(self) -> str:
        cmd = " ".join(self.cmd[3:])  # drop "kubectl --kubeconfig PATH"
        return f"kubectl {cmd} exited {self.returncode}: {(self.stderr or '').strip()}"


# --------------------------------------------------------------------------- utils


def wait_for(
    predicate: Callable[[], Any], timeout: float = 30.0, interval: float = 0.2, message: str = "condition"
) -> Any:
    """Poll `predicate` until it returns something truthy; return that value.

    Exceptions from the predicate count as "not yet" (the API server may still
    be starting) and the last one is reported if the wait times out, except
    ControlPlaneError: a dead component will not come back, so fail at once.
    """
    deadline = time.monotonic() + timeout
    last_error: BaseException | None = None
    while True:
        try:
            result = predicate()
            if result:
                return result
        except ControlPlaneError:
            raise
        except Exception as e:  # noqa: BLE001 - retried, reported on timeout
            last_error = e
        if time.monotonic() >= deadline:
            detail = f" (last error: {last_error!r})" if last_error else ""
            raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {message}{detail}")
        time.sleep(interval)


def free_port(host: str = "127.0.0.1") -> int:
    """An unused TCP port on `host` (racy by nature; fine for a test machine)."""
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def _die_with_parent() -> None:
    """preexec_fn: have Linux SIGKILL the child if the test process dies.

    Keeps a crashed or killed pytest from leaving an API server running on CI.
    """
    PR_SET_PDEATHSIG = 1
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def _tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError as e:
        return f"<cannot read {path}: {e}>"
    return "\n".join(text.splitlines()[-lines:])


# --------------------------------------------------------------------------- certificates


@dataclass(frozen=True)
class ServingCert:
    """A CA and a serving certificate it signed, as PEM files."""

    ca_file: Path
    cert_file: Path
    key_file: Path

    @property
    def ca_bundle_b64(self) -> str:
        """The CA as a webhook clientConfig.caBundle value."""
        return base64.b64encode(self.ca_file.read_bytes()).decode()


def _write_private_key(key, path: Path) -> None:
    path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    path.chmod(0o600)


def make_serving_cert(directory: Path | str, hosts: Sequence[str] = ("127.0.0.1", "localhost")) -> ServingCert:
    """A CA and a TLS server cert for `hosts` (IPs or DNS names), made by the project's
    own certificate code (webhook/certs/bundle.py), for a webhook on loopback that
    kube-apiserver calls through clientConfig.url with caBundle = `ca_bundle_b64`."""
    from webhook.certs.bundle import write_ca_and_serving_cert

    paths = write_ca_and_serving_cert(directory, list(hosts))
    return ServingCert(paths.ca_cert, paths.cert, paths.key)


def make_service_account_keys(directory: Path) -> tuple[Path, Path]:
    """RSA key pair the API server signs ServiceAccount tokens with. Returns (public, private)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private, public = directory / "sa.key", directory / "sa.pub"
    _write_private_key(key, private)
    public.write_bytes(
        key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    return public, private


# --------------------------------------------------------------------------- processes


@dataclass
class ManagedProcess:
    """A background process whose output goes to a log file.

    Used for the control-plane components, and meant for anything else a test
    runs beside them (e.g. the webhook server):

        with ManagedProcess.start("webhook", ["gpu-rightsizer", "serve", ...], log) as wh:
            wait_for_port(port, process=wh)
    """

    name: str
    proc: subprocess.Popen
    log: Path

    @classmethod
    def start(
        cls, name: str, argv: Sequence[str], log: Path, env: Mapping[str, str] | None = None, cwd: Path | None = None
    ) -> ManagedProcess:
        log.parent.mkdir(parents=True, exist_ok=True)
        with open(log, "wb") as out:
            proc = subprocess.Popen(
                list(argv),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=cwd,
                env=None if env is None else dict(env),
                preexec_fn=_die_with_parent,
            )
        return cls(name, proc, log)

    def __enter__(self) -> ManagedProcess:
        return self

    def __exit__(self, *exc) -> None:
        stop_all([self])

    def check_alive(self) -> None:
        code = self.proc.poll()
        if code is not None:
            raise ControlPlaneError(f"{self.name} exited with code {code}; last log lines:\n{_tail(self.log)}")

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        return f"--- {self.name} log, last {lines} lines ---\n{_tail(self.log, lines)}"


def stop_all(processes: Sequence[ManagedProcess], grace: float = STOP_GRACE_SECONDS) -> None:
    """SIGTERM all (in the given order), then SIGKILL whatever is left after `grace` s."""
    for p in processes:
        if p.proc.poll() is None:
            p.proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + grace
    for p in processes:
        try:
            p.proc.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            p.proc.kill()
            p.proc.wait()


def wait_for_port(
    port: int, host: str = "127.0.0.1", timeout: float = 30.0, process: ManagedProcess | None = None
) -> None:
    """Wait until something accepts TCP connections on host:port (failing fast if
    `process`, the one expected to listen, exits)."""

    def accepting() -> bool:
        if process is not None:
            process.check_alive()
        with socket.create_connection((host, port), timeout=1):
            return True

    wait_for(accepting, timeout, message=f"{host}:{port} to accept connections")


class ControlPlane:
    """etcd + kube-apiserver + kube-scheduler + kube-controller-manager on 127.0.0.1.

    Attributes set by start(): server (https URL), kubeconfig (Path), token (admin
    bearer token, group system:masters), ca_file (the API server's serving cert,
    which also carries its self-signed CA), workdir.
    """

    def __init__(
        self,
        bin_dir: Path | str,
        startup_timeout: float = 90.0,
        keep_workdir: bool = False,
        address: str = "127.0.0.1",
        apiserver_args: Sequence[str] = (),
        disabled_controllers: Sequence[str] = DISABLED_CONTROLLERS,
    ):
        """`address`: where every component binds (the real-node tier passes its bridge's
        gateway, inside the network namespace it made). `apiserver_args` are appended to
        kube-apiserver's flags; `disabled_controllers` are the controller-manager's."""
        self.bin_dir = Path(bin_dir)
        self.address = address
        self.apiserver_args = list(apiserver_args)
        self.disabled_controllers = list(disabled_controllers)
        self.startup_timeout = startup_timeout
        self.keep_workdir = keep_workdir
        self.components: list[ManagedProcess] = []
        self.workdir: Path | None = None
        self.server = ""
        self.kubeconfig = Path()
        self.ca_file = Path()
        self.token = ""
        self.sa_key = Path()
        self.startup_seconds = 0.0

    # ---- lifecycle

    def __enter__(self) -> ControlPlane:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def start(self) -> ControlPlane:
        started = time.monotonic()
        self.workdir = Path(tempfile.mkdtemp(prefix="gpu-rightsizer-e2e-"))
        (self.workdir / "logs").mkdir()
        try:
            etcd_url = self._start_etcd()
            self._start_apiserver(etcd_url)
            self._write_kubeconfig()
            self._start_scheduler()
            self._start_controller_manager()
            # Pods are refused until their namespace's ServiceAccount exists, and
            # its appearance proves the controller-manager is working.
            self.wait_for_service_account("default", timeout=self.startup_timeout)
        except BaseException as e:
            logs = self.log_tails()
            self.stop()
            if isinstance(e, (ControlPlaneError, TimeoutError)):
                raise ControlPlaneError(f"control plane failed to start: {e}\n\n{logs}") from e
            raise
        self.startup_seconds = time.monotonic() - started
        return self

    def stop(self) -> None:
        """Stop every component (SIGTERM, then SIGKILL) and delete the work dir."""
        # Reverse start order: clients before the API server, API server before etcd.
        stop_all(list(reversed(self.components)))
        self.components.clear()
        if self.workdir and not self.keep_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)
            self.workdir = None

    def check_alive(self) -> None:
        """Raise ControlPlaneError (with log tail) if any component has exited."""
        for c in self.components:
            c.check_alive()

    def log_tails(self, lines: int = LOG_TAIL_LINES) -> str:
        return "\n\n".join(c.log_tail(lines) for c in self.components)

    def _spawn(self, name: str, args: Iterable[str]) -> ManagedProcess:
        binary = self.bin_dir / name
        if not os.access(binary, os.X_OK):
            raise ControlPlaneError(f"{binary} is missing; run tests/e2e/build-control-plane.sh")
        component = ManagedProcess.start(
            name, [str(binary), *args], self.workdir / "logs" / f"{name}.log", cwd=self.workdir
        )
        self.components.append(component)
        return component

    # ---- components

    def _start_etcd(self) -> str:
        client, peer = free_port(), free_port()  # etcd stays on loopback
        url = f"http://127.0.0.1:{client}"
        etcd = self._spawn(
            "etcd",
            [
                "--name",
                "e2e",
                "--data-dir",
                str(self.workdir / "etcd"),
                "--listen-client-urls",
                url,
                "--advertise-client-urls",
                url,
                "--listen-peer-urls",
                f"http://127.0.0.1:{peer}",
                "--initial-advertise-peer-urls",
                f"http://127.0.0.1:{peer}",
                "--initial-cluster",
                f"e2e=http://127.0.0.1:{peer}",
                "--log-level",
                "warn",
            ],
        )

        def healthy() -> bool:
            etcd.check_alive()
            with urllib.request.urlopen(f"{url}/health", timeout=2) as r:
                return json.load(r).get("health") == "true"

        wait_for(healthy, self.startup_timeout, message="etcd /health")
        return url

    def _start_apiserver(self, etcd_url: str) -> None:
        certs = self.workdir / "certs"
        certs.mkdir()
        sa_pub, sa_key = make_service_account_keys(certs)
        self.sa_key = sa_key
        self.token = secrets.token_hex(16)
        token_file = certs / "tokens.csv"
        token_file.write_text(f"{self.token},admin,admin,system:masters\n")
        token_file.chmod(0o600)
        port = free_port(self.address)
        self.server = f"https://{self.address}:{port}"
        # The API server writes a self-signed serving cert (+ its CA) here.
        self.ca_file = certs / "apiserver.crt"
        apiserver = self._spawn(
            "kube-apiserver",
            [
                "--etcd-servers",
                etcd_url,
                "--bind-address",
                self.address,
                "--advertise-address",
                self.address,
                "--secure-port",
                str(port),
                "--cert-dir",
                str(certs),
                "--service-account-issuer",
                "https://kubernetes.default.svc",
                "--service-account-key-file",
                str(sa_pub),
                "--service-account-signing-key-file",
                str(sa_key),
                "--service-cluster-ip-range",
                SERVICE_CIDR,
                "--authorization-mode",
                "RBAC",
                "--token-auth-file",
                str(token_file),
                # The default admission plugins (Priority, ServiceAccount,
                # MutatingAdmissionWebhook, ValidatingAdmissionWebhook, ...) are used as is.
                *self.apiserver_args,
            ],
        )
        self._wait_apiserver_ready(apiserver)

    def _wait_apiserver_ready(self, apiserver: ManagedProcess) -> None:
        def ready() -> bool:
            apiserver.check_alive()
            return self.ca_file.exists() and self._get("/readyz") == "ok"

        wait_for(ready, self.startup_timeout, message="kube-apiserver /readyz")

    def restart_apiserver(self) -> float:
        """Kill kube-apiserver and start it again with the same flags (port, certificates,
        token, etcd), as a rollout or a crash would; its watch cache starts afresh at etcd's
        current revision. Clients reconnect by themselves. Returns the seconds it took."""
        started = time.monotonic()
        index, old = next((i, c) for i, c in enumerate(self.components) if c.name == "kube-apiserver")
        stop_all([old], grace=0.0)
        log = old.log.with_name(f"kube-apiserver-{len(list(old.log.parent.glob('kube-apiserver*.log')))}.log")
        self.components[index] = ManagedProcess.start(old.name, list(old.proc.args), log, cwd=self.workdir)
        self._wait_apiserver_ready(self.components[index])
        return time.monotonic() - started

    def _write_kubeconfig(self) -> None:
        self.kubeconfig = self.workdir / "kubeconfig"
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {"name": "e2e", "cluster": {"server": self.server, "certificate-authority": str(self.ca_file)}}
            ],
            "users": [{"name": "admin", "user": {"token": self.token}}],
            "contexts": [{"name": "e2e", "context": {"cluster": "e2e", "user": "admin"}}],
            "current-context": "e2e",
        }
        self.kubeconfig.write_text(yaml.safe_dump(config))
        self.kubeconfig.chmod(0o600)

    def _start_scheduler(self) -> None:
        k = str(self.kubeconfig)
        # --secure-port 0: no health endpoint to bind, so no port to pick.
        self._spawn(
            "kube-scheduler",
            [
                "--kubeconfig",
                k,
                "--authentication-kubeconfig",
                k,
                "--authorization-kubeconfig",
                k,
                "--leader-elect=false",
                "--bind-address",
                self.address,
                "--secure-port",
                "0",
            ],
        )

    def _start_controller_manager(self) -> None:
        self._spawn(
            "kube-controller-manager",
            [
                "--kubeconfig",
                str(self.kubeconfig),
                "--leader-elect=false",
                "--secure-port",
                "0",
                "--controllers",
                ",".join(["*", *(f"-{c}" for c in self.disabled_controllers)]),
                "--service-account-private-key-file",
                str(self.sa_key),
                "--root-ca-file",
                str(self.ca_file),
            ],
        )

    # ---- API access

    def _get(self, path: str, timeout: float = 5.0) -> str:
        """GET an API path as admin, verifying the API server's cert."""
        ctx = ssl.create_default_context(cafile=str(self.ca_file))
        req = urllib.request.Request(self.server + path, headers={"Authorization": f"Bearer {self.token}"})
        with urllib.request.urlopen(req, timeout=timeout, context=ctx) as r:
            return r.read().decode()

    def kubectl(
        self, *args: str, input: str | None = None, check: bool = True, timeout: float = 60.0
    ) -> subprocess.CompletedProcess:
        """Run the built kubectl against this cluster; stdout/stderr are text."""
        cmd = [str(self.bin_dir / "kubectl"), "--kubeconfig", str(self.kubeconfig), *args]
        result = subprocess.run(cmd, input=input, capture_output=True, text=True, timeout=timeout)
        if check and result.returncode != 0:
            raise KubectlError(result.returncode, cmd, result.stdout, result.stderr)
        return result

    def get_json(self, *args: str) -> dict:
        """`kubectl get ARGS -o json`, parsed."""
        return json.loads(self.kubectl("get", *args, "-o", "json").stdout)

    def apply(self, *objects: Mapping[str, Any]) -> subprocess.CompletedProcess:
        """`kubectl apply` the given manifests (dicts)."""
        return self.kubectl("apply", "-f", "-", input=yaml.safe_dump_all(list(objects)))

    def wait_for_service_account(self, namespace: str, name: str = "default", timeout: float = 30.0) -> None:
        def exists() -> bool:
            self.check_alive()
            return self.kubectl("get", "serviceaccount", name, "-n", namespace, check=False).returncode == 0

        wait_for(exists, timeout, message=f"ServiceAccount {namespace}/{name}")

    def create_namespace(self, name: str, timeout: float = 30.0) -> None:
        """Create a namespace and wait until pods can be created in it."""
        self.kubectl("create", "namespace", name)
        self.wait_for_service_account(name, timeout=timeout)

    # ---- fake nodes

    def make_fake_gpu_node(
        self,
        name: str,
        labels: Mapping[str, str] | None = None,
        taints: Sequence[Mapping[str, str]] = (),
        allocatable: Mapping[str, str] | None = None,
    ) -> dict:
        """Register a Ready Node with no kubelet behind it; return the stored Node.

        `allocatable` (e.g. {"nvidia.com/mig-1g.10gb": "2"}) is merged over
        DEFAULT_NODE_ALLOCATABLE and also used as capacity. `taints` are dicts
        with key/value/effect. The scheduler then binds pods to it by these
        resources; the pods never run.
        """
        resources = {**DEFAULT_NODE_ALLOCATABLE, **(allocatable or {})}
        self.apply(
            {
                "apiVersion": "v1",
                "kind": "Node",
                "metadata": {"name": name, "labels": dict(labels or {})},
                "spec": {"taints": [dict(t) for t in taints]},
            }
        )
        now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        status = {
            "status": {
                "capacity": resources,
                "allocatable": resources,
                "conditions": [
                    {
                        "type": "Ready",
                        "status": "True",
                        "reason": "KubeletReady",
                        "message": "fake node for e2e tests",
                        "lastHeartbeatTime": now,
                        "lastTransitionTime": now,
                    }
                ],
            }
        }
        self.kubectl("patch", "node", name, "--subresource=status", "--type=merge", "-p", json.dumps(status))
        self._remove_not_ready_taint(name)
        return self.get_json("node", name)

    def _remove_not_ready_taint(self, name: str) -> None:
        # TaintNodesByCondition admission adds node.kubernetes.io/not-ready:NoSchedule
        # to every new node; with no kubelet and no node-lifecycle controller
        # nothing would ever remove it, and the scheduler would skip the node.
        taints = self.get_json("node", name).get("spec", {}).get("taints") or []
        if any(t.get("key") == NOT_READY_TAINT for t in taints):
            self.kubectl("taint", "node", name, f"{NOT_READY_TAINT}:NoSchedule-")
