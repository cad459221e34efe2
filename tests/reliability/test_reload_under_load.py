"""Certificate and policy replaced on disk under load (webhook/reload.py polls them):
no request fails, new connections get the new certificate, answers follow the new
policy, and an invalid policy leaves the last good one in force."""

from __future__ import annotations

import base64
import json
import os
import shutil
import ssl
import time
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from hostile.corpus import captured_review
from loadgen import LoadGenerator
from served import start_server
from webhook.certs import make_serving_cert

ROOT = Path(__file__).resolve().parents[2]
RELOAD_ENV = {"GPU_RIGHTSIZER_RELOAD_SECONDS": "0.5"}


def _write_atomically(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".new")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _served_serial(server) -> int:
    with server.tls_socket(5) as tls:
        return x509.load_der_x509_certificate(tls.getpeercert(binary_form=True)).serial_number


def _wait_for(predicate, timeout: float = 15.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.2)
    return False


def test_certificate_replaced_under_load_fails_nothing(tmp_path, capsys):
    server = start_server(tmp_path, workers=2, env=RELOAD_ENV)
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
        _write_atomically(certs / "tls.key", key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
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
    shutil.copy(ROOT / "webhook" / "data" / "default-policy.yaml", policy)
    server = start_server(tmp_path, workers=2, policy=policy, env=RELOAD_ENV)
    try:
        assert _pool_in_answer(server) == "h100-80"
        gen = LoadGenerator(server, rps=100, connections=6).start()
        time.sleep(2)
        _write_atomically(policy, policy.read_bytes().replace(b"name: h100-80", b"name: h100-renamed"))
        switched = _wait_for(lambda: all(_pool_in_answer(server) == "h100-renamed" for _ in range(8)))
        _write_atomically(policy, b"pools: 5\n")  # invalid: the last good policy stays
        time.sleep(2)
        still = [_pool_in_answer(server) for _ in range(8)]
        result = gen.stop()
        with capsys.disabled():
            print(f"\npolicy replaced, then made invalid, under load: {result.summary()}")
        assert switched, "the new policy was not applied"
        assert still == ["h100-renamed"] * 8
        assert not result.failures, result.summary()
        assert server.healthy()
    finally:
        server.stop()
