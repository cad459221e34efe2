"""Hot reload under a running `gpu-rightsizer serve`: the policy and the TLS certificate
are swapped the way the kubelet swaps a mounted ConfigMap/Secret (`..data` symlink),
while requests are in flight; none fails. An invalid policy keeps the last good one."""

from __future__ import annotations

import os
import signal
import socket
import ssl
import threading
import time
import uuid

import requests
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from tests.support.server import MUTATED, LiveServer, mounted_volume, review, total
from webhook.certs.bundle import _pem_key, make_ca, make_serving_cert
from webhook.core.policy import default_policy_text
from webhook.serving.holder import PolicyHolder
from webhook.serving.policy_reload import PolicyReloader
from webhook.serving.tls import TlsContexts

NAMES = ["localhost", "127.0.0.1"]
POLICY_B = default_policy_text().replace("name: h100-80", "name: h100-b")
INVALID = default_policy_text().replace("onOversize: whole-gpu", "onOversize: explode")


class Load:
    """Threads sending reviews until stopped: some on a new TLS connection each time,
    one on a kept-alive connection. Records every failure and each answer's pool."""

    def __init__(self, server: LiveServer, verify: str, threads: int = 3):
        self.server, self.verify = server, verify
        self.stop_event = threading.Event()
        self.failures: list[str] = []
        self.pools: list[str] = []
        self.count = 0
        self._lock = threading.Lock()
        self.threads = [threading.Thread(target=self._run, args=(i == 0,), daemon=True) for i in range(threads)]

    def _run(self, keep_alive: bool) -> None:
        session = requests.Session()
        while not self.stop_event.is_set():
            try:
                pool = send(self.server, self.verify, session if keep_alive else None)
                with self._lock:
                    self.pools.append(pool)
                    self.count += 1
            except Exception as err:  # noqa: BLE001 - every failure is recorded and fails the test
                with self._lock:
                    self.failures.append(repr(err))

    def __enter__(self) -> Load:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop_event.set()
        for t in self.threads:
            t.join(15)


def send(server: LiveServer, verify: str, session: requests.Session | None = None) -> str:
    """One review of a pod the default policy rewrites; returns the pool it was put on."""
    post = session.post if session else requests.post
    headers = {} if session else {"Connection": "close"}
    r = post(
        server.url + "/mutate", json=review(MUTATED, str(uuid.uuid4())), verify=verify, headers=headers, timeout=10
    )
    assert r.status_code == 200, r.text
    response = r.json()["response"]
    assert response["allowed"] is True and response["patchType"] == "JSONPatch", response
    warning = response["warnings"][0]
    return warning.split(" on pool ")[1].split(" ")[0]


def wait_until(predicate, timeout: float = 15.0, step: float = 0.2):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(step)
    raise AssertionError("condition not met in time")


def fresh_pools(server: LiveServer, verify: str, n: int = 12) -> set[str]:
    return {send(server, verify) for _ in range(n)}


def test_policy_swap_with_requests_in_flight(tmp_path):
    config = tmp_path / "config"
    mounted_volume(config, {"policy.yaml": default_policy_text().encode()}, "1")
    with LiveServer(tmp_path, workers=2, policy=str(config / "policy.yaml")) as server:
        with Load(server, server.ca_file) as load:
            wait_until(lambda: load.count > 20)
            mounted_volume(config, {"policy.yaml": POLICY_B.encode()}, "2")
            wait_until(lambda: total(server.metrics(), "gpu_rightsizer_policy_reloads_total", result="success") == 2)
            wait_until(lambda: fresh_pools(server, server.ca_file) == {"h100-b"})
            seen = load.count
            wait_until(lambda: load.count > seen + 20)
        assert load.failures == []
        assert load.pools[0] == "h100-80" and load.pools[-1] == "h100-b"
        assert set(load.pools) == {"h100-80", "h100-b"}
        reloaded = [line for line in server.log_lines() if line["msg"] == "policy reloaded"]
        assert len(reloaded) == 2 and reloaded[0]["pools"] == ["h100-b"]


def test_invalid_policy_keeps_the_last_good_one(tmp_path):
    config = tmp_path / "config"
    mounted_volume(config, {"policy.yaml": default_policy_text().encode()}, "1")
    with LiveServer(tmp_path, workers=2, policy=str(config / "policy.yaml")) as server:
        with Load(server, server.ca_file) as load:
            wait_until(lambda: load.count > 10)
            mounted_volume(config, {"policy.yaml": INVALID.encode()}, "2")
            # Each worker sees the change, counts one failure, and keeps serving.
            wait_until(lambda: total(server.metrics(), "gpu_rightsizer_policy_reloads_total", result="failure") == 2)
            seen = load.count
            wait_until(lambda: load.count > seen + 20)
            assert fresh_pools(server, server.ca_file) == {"h100-80"}
            ready = requests.get(server.url + "/readyz", verify=server.ca_file, timeout=5)
            assert ready.status_code == 200
            # The same bad file is not re-counted on every poll.
            time.sleep(1.0)
            assert total(server.metrics(), "gpu_rightsizer_policy_reloads_total", result="failure") == 2
            # A valid policy afterwards is taken.
            mounted_volume(config, {"policy.yaml": POLICY_B.encode()}, "3")
            wait_until(lambda: fresh_pools(server, server.ca_file) == {"h100-b"})
        assert load.failures == []
        assert set(load.pools) == {"h100-80", "h100-b"}
        errors = [line for line in server.log_lines() if line["msg"].startswith("policy reload failed")]
        assert len(errors) == 2
        assert errors[0]["error"].startswith("onOversize:") and errors[0]["level"] == "error"


def test_a_worker_restarted_while_the_policy_is_invalid_still_serves(tmp_path):
    config = tmp_path / "config"
    mounted_volume(config, {"policy.yaml": POLICY_B.encode()}, "1")
    with LiveServer(tmp_path, workers=2, policy=str(config / "policy.yaml")) as server:
        assert fresh_pools(server, server.ca_file) == {"h100-b"}
        mounted_volume(config, {"policy.yaml": INVALID.encode()}, "2")
        wait_until(lambda: total(server.metrics(), "gpu_rightsizer_policy_reloads_total", result="failure") == 2)
        # Admission lines reach the log within logs.FLUSH_SECONDS.
        victim = wait_until(
            lambda: next((line["pid"] for line in server.log_lines() if line["msg"] == "admission"), None)
        )
        os.kill(victim, signal.SIGKILL)
        # gunicorn boots a replacement; it finds the file invalid, counts it, and serves
        # the policy the server started with instead of failing to boot (which would
        # take the whole server down).
        wait_until(lambda: total(server.metrics(), "gpu_rightsizer_policy_reloads_total", result="failure") == 3)
        wait_until(
            lambda: (
                len(
                    {
                        line["pid"]
                        for line in server.log_lines()
                        if line["msg"].startswith("policy file invalid at worker start")
                    }
                )
                == 1
            )
        )
        assert fresh_pools(server, server.ca_file, 20) == {"h100-b"}
        assert server.proc.poll() is None


def _bundle(tmp_path, name: str, days: int):
    ca_key, ca = make_ca(common_name=f"ca-{name}")
    key, cert = make_serving_cert(ca_key, ca, NAMES, days=days)
    ca_file = tmp_path / f"ca-{name}.crt"
    ca_file.write_bytes(ca.public_bytes(Encoding.PEM))
    return {"tls.crt": cert.public_bytes(Encoding.PEM), "tls.key": _pem_key(key)}, ca_file, cert


def presented_cert(server: LiveServer, cafile: str) -> x509.Certificate:
    context = ssl.create_default_context(cafile=cafile)
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as raw:
        with context.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
            return x509.load_der_x509_certificate(tls.getpeercert(binary_form=True))


def test_certificate_swap_with_requests_in_flight(tmp_path):
    files1, ca1, cert1 = _bundle(tmp_path, "one", days=365)
    files2, ca2, cert2 = _bundle(tmp_path, "two", days=100)
    # What the API server holds during a rotation: both CAs (see cert_install.ca_bundle).
    both = tmp_path / "both.crt"
    both.write_bytes(ca1.read_bytes() + ca2.read_bytes())
    secret = tmp_path / "secret"
    mounted_volume(secret, {"tls/" + k: v for k, v in files1.items()}, "1")
    with LiveServer(
        tmp_path,
        workers=2,
        cert_file=str(secret / "tls" / "tls.crt"),
        key_file=str(secret / "tls" / "tls.key"),
        ca_file=str(both),
    ) as server:
        assert presented_cert(server, str(both)) == cert1
        with Load(server, str(both), threads=4) as load:
            wait_until(lambda: load.count > 20)
            mounted_volume(secret, {"tls/" + k: v for k, v in files2.items()}, "2")
            wait_until(lambda: all(presented_cert(server, str(both)) == cert2 for _ in range(8)))
            seen = load.count
            wait_until(lambda: load.count > seen + 20)
        assert load.failures == []
        # Only the new CA is needed from now on; the gauge follows the new certificate.
        assert presented_cert(server, str(ca2)) == cert2
        samples = server.metrics(verify=str(ca2))
        assert 99 * 86400 < samples["gpu_rightsizer_certificate_expiry_seconds"] <= 100 * 86400
        assert total(samples, "gpu_rightsizer_certificate_reloads_total", result="success") >= 1
        assert total(samples, "gpu_rightsizer_certificate_reloads_total", result="failure") == 0


def test_half_replaced_key_pair_keeps_the_old_certificate(tmp_path):
    files1, ca1, cert1 = _bundle(tmp_path, "one", days=365)
    files2, ca2, cert2 = _bundle(tmp_path, "two", days=200)
    both = tmp_path / "both.crt"
    both.write_bytes(ca1.read_bytes() + ca2.read_bytes())
    plain = tmp_path / "plain"  # not a mounted volume: files replaced one at a time
    plain.mkdir()
    for k, v in files1.items():
        (plain / k).write_bytes(v)
    with LiveServer(
        tmp_path, workers=1, cert_file=str(plain / "tls.crt"), key_file=str(plain / "tls.key"), ca_file=str(both)
    ) as server:
        assert presented_cert(server, str(both)) == cert1
        (plain / "tls.crt.new").write_bytes(files2["tls.crt"])
        (plain / "tls.crt.new").replace(plain / "tls.crt")  # the key is still the old one
        wait_until(lambda: total(server.metrics(), "gpu_rightsizer_certificate_reloads_total", result="failure") == 1)
        assert presented_cert(server, str(both)) == cert1
        send(server, str(both))
        # A worker born now inherits the context the master built at start.
        # Admission lines reach the log within logs.FLUSH_SECONDS.
        victim = wait_until(
            lambda: next((line["pid"] for line in server.log_lines() if line["msg"] == "admission"), None)
        )
        os.kill(victim, signal.SIGKILL)
        wait_until(lambda: total(server.metrics(), "gpu_rightsizer_certificate_reloads_total", result="failure") == 2)
        assert presented_cert(server, str(both)) == cert1
        send(server, str(both))
        (plain / "tls.key.new").write_bytes(files2["tls.key"])
        (plain / "tls.key.new").replace(plain / "tls.key")
        wait_until(lambda: presented_cert(server, str(both)) == cert2)
        assert total(server.metrics(), "gpu_rightsizer_certificate_reloads_total", result="success") == 1


# --- the reloaders in process ---------------------------------------------------------


def test_policy_reloader_counts_each_change_once(tmp_path):
    from webhook.serving import metrics

    path = tmp_path / "policy.yaml"
    path.write_text(default_policy_text())
    holder = PolicyHolder(str(path))
    reloader = PolicyReloader(holder, str(path))
    failures = metrics.POLICY_RELOADS.labels("failure")._value.get()
    successes = metrics.POLICY_RELOADS.labels("success")._value.get()
    reloader.check()
    assert metrics.POLICY_RELOADS.labels("success")._value.get() == successes  # nothing changed
    first = holder.policy
    path.write_text(INVALID)
    reloader.check()
    reloader.check()
    assert holder.policy is first
    assert metrics.POLICY_RELOADS.labels("failure")._value.get() == failures + 1
    path.unlink()
    reloader.check()  # a missing file is a failure too, and the policy stays
    assert holder.policy is first
    assert metrics.POLICY_RELOADS.labels("failure")._value.get() == failures + 2
    path.write_text(POLICY_B)
    reloader.check()
    assert [p.name for p in holder.policy.pools] == ["h100-b"]
    assert metrics.POLICY_RELOADS.labels("success")._value.get() == successes + 1


def test_tls_contexts_swap_without_touching_the_old_one(tmp_path):
    files1, _, cert1 = _bundle(tmp_path, "one", days=365)
    files2, _, cert2 = _bundle(tmp_path, "two", days=50)
    for k, v in files1.items():
        (tmp_path / k).write_bytes(v)
    contexts = TlsContexts()

    def build():
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(tmp_path / "tls.crt", tmp_path / "tls.key")
        return ctx

    first = contexts.context(str(tmp_path / "tls.crt"), str(tmp_path / "tls.key"), build)
    assert contexts.context("ignored", "ignored", build) is first
    assert contexts.not_after() == cert1.not_valid_after_utc
    contexts.check()
    assert contexts.context("", "", build) is first
    for k, v in files2.items():
        (tmp_path / (k + ".new")).write_bytes(v)
        (tmp_path / (k + ".new")).replace(tmp_path / k)
    contexts.check()
    second = contexts.context("", "", build)
    assert second is not first
    assert contexts.not_after() == cert2.not_valid_after_utc
