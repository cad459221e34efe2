"""Integration: the real `gpu-rightsizer serve` (gunicorn over TLS, its own CA), driven
over HTTPS with certificate verification, as the API server drives it."""

from __future__ import annotations

import base64
import json
import subprocess
import sys

import jsonpatch
import pytest
import requests

from tests.support.fixtures import captured_review, validate_pod
from tests.support.server import RunningServer


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    running = RunningServer(tmp_path_factory.mktemp("serve"), "--workers", "2")
    yield running
    running.stop()


@pytest.fixture()
def session(server):
    with requests.Session() as s:
        s.verify = str(server.ca)
        s.trust_env = False  # else $REQUESTS_CA_BUNDLE overrides verify (psf/requests#3829)
        yield s


def post(session, server, body, content_type="application/json", path="/mutate?timeout=10s"):
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    return session.post(server.url + path, data=data, headers={"Content-Type": content_type}, timeout=10)


def test_a_captured_pod_create_is_rewritten_over_verified_tls(server, session):
    review = captured_review("pod-create")
    reply = post(session, server, review)
    assert reply.status_code == 200
    body = reply.json()
    assert body["apiVersion"] == "admission.k8s.io/v1" and body["kind"] == "AdmissionReview"
    response = body["response"]
    assert response["uid"] == review["request"]["uid"] and response["allowed"] is True
    assert response["patchType"] == "JSONPatch"
    mutated = jsonpatch.apply_patch(review["request"]["object"], json.loads(base64.b64decode(response["patch"])))
    validate_pod(mutated)
    assert mutated["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/mig-1g.20gb"] == "1"
    assert response["warnings"][0].startswith("gpu-rightsizer: nvidia.com/gpu: 1 -> nvidia.com/mig-1g.20gb")


def test_keep_alive_connections_are_reused(server, session):
    review = captured_review("pod-create")
    ports = set()
    for _ in range(5):
        reply = post(session, server, review)
        assert reply.status_code == 200
        assert reply.headers.get("Connection", "").lower() != "close"
        ports.add(reply.raw._connection.sock.getsockname()[1] if reply.raw._connection else None)
    assert len(ports) == 1, "the API server keeps its webhook connections alive; so must we"


def test_an_invalid_annotation_is_refused_in_a_well_formed_review(server, session):
    review = captured_review("pod-create")
    review["request"]["object"]["metadata"]["annotations"]["gpu-rightsizer.io/model-size"] = "huge"
    reply = post(session, server, review)
    assert reply.status_code == 200
    response = reply.json()["response"]
    assert response["allowed"] is False and response["status"]["code"] == 400
    assert 'gpu-rightsizer.io/model-size="huge"' in response["status"]["message"]


@pytest.mark.parametrize(
    "body, content_type, status, says",
    [
        (b"{not json", "application/json", 400, "not valid JSON"),
        (b"[1, 2]", "application/json", 400, "not a JSON array"),
        (b'"review"', "application/json", 400, "not a JSON string"),
        (
            {"apiVersion": "admission.k8s.io/v1beta1", "kind": "AdmissionReview", "request": {"uid": "u"}},
            "application/json",
            400,
            "admission.k8s.io/v1/AdmissionReview",
        ),
        ({"apiVersion": "admission.k8s.io/v1", "kind": "Pod"}, "application/json", 400, "apiVersion/kind"),
        (
            {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview"},
            "application/json",
            400,
            "request must be an object",
        ),
        (
            {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {}},
            "application/json",
            400,
            "request.uid",
        ),
        (
            {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {"uid": 5}},
            "application/json",
            400,
            "request.uid",
        ),
        (b"{}", "text/plain", 415, "Content-Type must be application/json"),
        (b"{}", "application/x-www-form-urlencoded", 415, "Content-Type"),
    ],
)
def test_bad_requests_get_a_4xx_with_a_json_message(server, session, body, content_type, status, says):
    reply = post(session, server, body, content_type)
    assert reply.status_code == status
    assert says in reply.json()["error"]


def raw_exchange(server, head: bytes) -> bytes:
    """Send ``head`` on a fresh verified TLS connection and read what comes back."""
    import socket
    import ssl

    context = ssl.create_default_context(cafile=str(server.ca))
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as raw:
        with context.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
            tls.sendall(head)
            chunks = []
            while chunk := tls.recv(65536):
                chunks.append(chunk)
                if b"\r\n\r\n" in b"".join(chunks) and b"}" in chunks[-1]:
                    break
            return b"".join(chunks)


@pytest.mark.parametrize("length", [3 * 1024 * 1024 + 1, 4 * 1024**3])
def test_a_body_over_the_limit_is_refused_with_413_before_it_is_read(server, length):
    # Only the headers are sent: the answer must come without the server reading a byte
    # of the body it was promised.
    head = (
        f"POST /mutate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {length}\r\n\r\n"
    ).encode()
    answer = raw_exchange(server, head)
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert b"limit" in answer


def test_unknown_paths_and_methods_get_json_errors(server, session):
    assert session.get(server.url + "/nope", timeout=5).status_code == 404
    reply = session.get(server.url + "/mutate", timeout=5)
    assert reply.status_code == 405 and "error" in reply.json()


def test_health_and_readiness(server, session):
    assert session.get(server.url + "/healthz", timeout=5).json() == {"status": "ok"}
    assert session.get(server.url + "/readyz", timeout=5).json()["status"] == "ready"


def test_the_generated_certificate_is_for_localhost_and_verifies(server):
    with pytest.raises(requests.exceptions.SSLError):
        requests.get(server.url + "/healthz", timeout=5)  # the system CAs do not know our CA
    assert requests.get(server.url.replace("127.0.0.1", "localhost") + "/healthz", verify=str(server.ca), timeout=5).ok


def test_serve_refuses_an_invalid_policy_naming_the_field(tmp_path):
    policy = tmp_path / "policy.yaml"
    policy.write_text("pools: [{name: p, gpuModel: V100}]\n")
    result = subprocess.run(
        [sys.executable, "-m", "webhook.cli", "serve", "--policy", str(policy), "--port", "0"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert result.returncode == 2
    assert "pools[0].gpuModel: 'V100' is not in the built-in catalog" in result.stderr
