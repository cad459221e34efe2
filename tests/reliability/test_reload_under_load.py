"""Certificate and policy replaced on disk under load (webhook/serving/reload.py polls them):
no request fails, new connections get the new certificate, answers follow the new
policy, and an invalid policy leaves the last good one in force."""

from __future__ import annotations

import base64
import datetime as dt
import ipaddress
import json
import os
import shutil
import signal
import socket
import ssl
import time
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.support.hostile.corpus import captured_review
from tests.support.loadgen import LoadGenerator
from tests.support.served import start_server
from webhook.certs.bundle import make_serving_cert

ROOT = Path(__file__).resolve().parents[2]
RELOAD_SECONDS = 0.5


def _write_atomically(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".new")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _served_serial(server) -> int:
    """The serial of the certificate a new connection gets (read without verifying it,
    so that an expired one can be seen too)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with socket.create_connection((server.host, server.port), timeout=5) as raw:
        with context.wrap_socket(raw) as tls:
            return x509.load_der_x509_certificate(tls.getpeercert(binary_form=True)).serial_number


def _wait_for(predicate, timeout: float = 15.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.2)
    return False


def test_certificate_replaced_under_load_fails_nothing(tmp_path, capsys):
    server = start_server(tmp_path, workers=2, reload_seconds=RELOAD_SECONDS)
    try:
        before = _served_serial(server)
        kept = LoadGenerator(server, rps=80, connections=4).start()
        fresh = LoadGenerator(server, rps=40, connections=2, fresh=True).start()
        time.sleep(2)
        certs = server.cert_dir
        ca_key = serialization.load_pem_private_key((certs / "ca.key").read_bytes(), None)
        ca_cert = x509.load_pem_x509_certificate((certs / "ca.crt").read_bytes())
        key, cert = make_serving_cert(ca_key, ca_cert, ["localhost", "127.0.0.1", "::1"])
        # Key first, then certificate: for a moment the pair on disk does not match, as
        # with any two-file update; the reloader must keep serving the old pair.
        _write_atomically(
            certs / "tls.key",
            key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            ),
        )
        time.sleep(1.2)
        _write_atomically(certs / "tls.crt", cert.public_bytes(serialization.Encoding.PEM))
        # Every worker: several fresh handshakes in a row see the new certificate.
        rotated = _wait_for(lambda: all(_served_serial(server) == cert.serial_number for _ in range(6)))
        time.sleep(2)
        kept_result, fresh_result = kept.stop(), fresh.stop()
        with capsys.disabled():
            print(f"\ncertificate replaced under load: keep-alive {kept_result.summary()}")
            print(f"  new connection per request: {fresh_result.summary()}")
        assert before != cert.serial_number and rotated, "the new certificate was not served"
        assert not kept_result.failures and not fresh_result.failures
        assert fresh_result.ok > 100
    finally:
        server.stop()


def _pool_in_answer(server) -> str:
    review = captured_review()
    status, _, body = server.post_review(review)
    assert status == 200
    patch = json.loads(base64.b64decode(json.loads(body)["response"]["patch"]))
    decision = next(op["value"] for op in patch if op["path"].endswith("gpu-rightsizer.io~1decision"))
    return decision.split(" on pool ", 1)[1].split(" ", 1)[0]


def test_policy_replaced_under_load_fails_nothing_and_a_bad_one_is_ignored(tmp_path, capsys):
    policy = tmp_path / "policy.yaml"
    shutil.copy(ROOT / "webhook" / "core" / "data" / "default-policy.yaml", policy)
    server = start_server(tmp_path, workers=2, policy=policy, reload_seconds=RELOAD_SECONDS)
    try:
        assert _pool_in_answer(server) == "h100-80"
        gen = LoadGenerator(server, rps=100, connections=6).start()
        time.sleep(2)
        _write_atomically(policy, policy.read_bytes().replace(b"name: h100-80", b"name: h100-renamed"))
        switched = _wait_for(lambda: all(_pool_in_answer(server) == "h100-renamed" for _ in range(8)))
        _write_atomically(policy, b"pools: 5\n")  # invalid: the last good policy stays
        time.sleep(2)
        still = [_pool_in_answer(server) for _ in range(8)]
        # A graceful restart while the file is still invalid: the new workers must boot
        # (a worker that fails to boot makes gunicorn stop the whole server).
        old = server.worker_pids()
        os.kill(server.master_pid, signal.SIGHUP)
        server.wait_for_workers(exclude=old, timeout=30)
        after_restart = {_pool_in_answer(server) for _ in range(8)}
        result = gen.stop()
        with capsys.disabled():
            print(
                f"\npolicy replaced, made invalid, then SIGHUP, under load: {result.summary()}; "
                f"pool after the restart with the invalid file: {after_restart}"
            )
        assert switched, "the new policy was not applied"
        assert still == ["h100-renamed"] * 8
        assert not result.failures, result.summary()
        # New workers start from the last good policy the old workers had loaded, not
        # the older one the master validated at start.
        assert after_restart == {"h100-renamed"}
        assert server.healthy()
    finally:
        server.stop()


def _expired_cert(ca_key, ca_cert):
    """A serving certificate that expired yesterday (make_serving_cert cannot make one)."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=30))
        .not_valid_after(now - dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    return key, cert


def _install_serving_cert(server, days: int) -> x509.Certificate:
    certs = server.cert_dir
    ca_key = serialization.load_pem_private_key((certs / "ca.key").read_bytes(), None)
    ca_cert = x509.load_pem_x509_certificate((certs / "ca.crt").read_bytes())
    if days < 0:
        key, cert = _expired_cert(ca_key, ca_cert)
    else:
        key, cert = make_serving_cert(ca_key, ca_cert, ["localhost", "127.0.0.1", "::1"], days=days)
    _write_atomically(
        certs / "tls.key",
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()),
    )
    _write_atomically(certs / "tls.crt", cert.public_bytes(serialization.Encoding.PEM))
    return cert


def _verifying_request(server) -> str:
    """'ok', or why a client that verifies the chain (as the API server does) failed."""
    try:
        status, _, _ = server.post_review(captured_review(), timeout=5)
        return "ok" if status == 200 else f"HTTP {status}"
    except ssl.SSLCertVerificationError as err:
        return err.verify_message


def test_expired_certificate_fails_every_call_until_replaced(tmp_path, capsys):
    """What `failurePolicy: Fail` turns into refused pod creates: a verifying client
    cannot call a webhook whose certificate has expired; replacing the files on disk
    recovers without a restart."""
    server = start_server(tmp_path, workers=2, reload_seconds=RELOAD_SECONDS)
    try:
        pids = server.worker_pids()
        expired = _install_serving_cert(server, days=-1)
        # Both workers: several new connections in a row get the expired certificate.
        assert _wait_for(lambda: all(_served_serial(server) == expired.serial_number for _ in range(8)))
        time.sleep(1.5)  # three reload polls: no worker can still hold the good certificate
        during = [_verifying_request(server) for _ in range(10)]
        replaced_at = time.monotonic()
        _install_serving_cert(server, days=365)
        assert _wait_for(lambda: all(_verifying_request(server) == "ok" for _ in range(6)))
        recovered_after = time.monotonic() - replaced_at
        with capsys.disabled():
            print(
                f"\nexpired certificate: {during.count('ok')}/10 calls ok ({set(during) - {'ok'}}); "
                f"recovered {recovered_after:.1f} s after new files (reload poll 0.5 s), same workers"
            )
        assert during.count("ok") == 0 and all("expired" in d for d in during), during
        assert server.worker_pids() == pids
    finally:
        server.stop()
