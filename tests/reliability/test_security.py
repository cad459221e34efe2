"""Security properties of a real `gpu-rightsizer serve`: TLS 1.2+ only, nothing but the
TLS port listening, no log line a pod author can forge, bandit clean."""

from __future__ import annotations

import json
import shutil
import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support.hostile.corpus import captured_review
from tests.support.served import socket_inodes

ROOT = Path(__file__).resolve().parents[2]


def _client(server, minimum: ssl.TLSVersion, maximum: ssl.TLSVersion) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.load_verify_locations(str(server.ca))
    context.minimum_version = minimum
    context.maximum_version = maximum
    # OpenSSL's default security level refuses to even offer TLS 1.0/1.1 (and their
    # SHA-1 signatures); level 0 makes this client offer them, so that a refusal seen
    # here comes from the server.
    context.set_ciphers("ALL:@SECLEVEL=0")
    return context


def _handshake(server, context: ssl.SSLContext) -> str:
    with socket.create_connection((server.host, server.port), timeout=5) as raw:
        with context.wrap_socket(raw, server_hostname=server.host) as tls:
            return tls.version()


@pytest.mark.filterwarnings("ignore:ssl.TLSVersion:DeprecationWarning")
@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1, ssl.TLSVersion.TLSv1_1], ids=["tls1.0", "tls1.1"])
def test_tls_below_1_2_is_refused_by_the_server(server, version):
    context = _client(server, version, version)
    with pytest.raises(ssl.SSLError) as refused:
        _handshake(server, context)
    # The server's alert, not the client's own "no protocols available".
    assert "ALERT_PROTOCOL_VERSION" in str(refused.value).upper() or "PROTOCOL VERSION" in str(refused.value).upper(), (
        refused.value
    )
    assert "NO_PROTOCOLS_AVAILABLE" not in str(refused.value).upper()


@pytest.mark.filterwarnings("ignore:ssl.TLSVersion:DeprecationWarning")
def test_the_same_old_protocol_client_is_accepted_once_it_offers_tls_1_2(server):
    # Control for the test above: the client setup itself works.
    assert _handshake(server, _client(server, ssl.TLSVersion.TLSv1, ssl.TLSVersion.TLSv1_2)) == "TLSv1.2"


@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3], ids=["tls1.2", "tls1.3"])
def test_tls_1_2_and_1_3_are_served(server, version):
    context = ssl.create_default_context(cafile=str(server.ca))
    context.minimum_version = context.maximum_version = version
    assert _handshake(server, context) == {"TLSv1_2": "TLSv1.2", "TLSv1_3": "TLSv1.3"}[version.name]


def test_plain_http_on_the_tls_port_gets_no_http_answer(server):
    body = json.dumps(captured_review()).encode()
    request = (
        b"POST /mutate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(body), body)
    )
    with socket.create_connection((server.host, server.port), timeout=5) as raw:
        raw.sendall(request)
        received = b""
        try:
            while chunk := raw.recv(65536):
                received += chunk
        except ConnectionResetError:
            pass
    assert b"HTTP/" not in received and b"allowed" not in received
    # At most a TLS alert record (content type 21) comes back.
    assert received == b"" or received[0] == 21, received[:20]
    assert server.healthy()


def _listening_inodes(kind: str) -> dict[str, int]:
    """inode -> port (tcp/tcp6) or -1 (unix) of listening sockets on this machine."""
    found = {}
    if kind == "unix":
        for line in Path("/proc/net/unix").read_text().splitlines()[1:]:
            parts = line.split()
            if int(parts[3], 16) & 0x10000:  # __SO_ACCEPTCON: listening
                found[parts[6]] = -1
        return found
    for line in Path(f"/proc/net/{kind}").read_text().splitlines()[1:]:
        parts = line.split()
        if parts[3] == "0A":  # TCP_LISTEN
            found[parts[9]] = int(parts[1].rsplit(":", 1)[1], 16)
    return found


def test_only_the_tls_port_listens(server):
    """No second (plain-HTTP) port, no control socket: every listening socket any process
    of the server holds is the one TLS port."""
    owned = set()
    for pid in {server.master_pid, *server.worker_pids()}:
        owned |= socket_inodes(pid)
    tcp = {**_listening_inodes("tcp"), **_listening_inodes("tcp6")}
    unix = _listening_inodes("unix")
    assert {tcp[i] for i in owned if i in tcp} == {server.port}
    assert not [i for i in owned if i in unix], "a listening Unix socket (gunicorn's control socket?)"


FORGED = "[2026-01-01 00:00:00 +0000] [1] [CRITICAL] FORGED"


def test_no_request_can_forge_a_log_line(server):
    """Newlines in every place a request can carry text; then no line of the server's
    log starts with the forged prefix."""
    payload = "x\n" + FORGED + "\r\n" + FORGED
    review = captured_review()
    review["request"]["uid"] = payload[:128]
    review["request"]["object"]["metadata"]["annotations"]["gpu-rightsizer.io/model-size"] = payload
    review["request"]["object"]["metadata"]["name"] = payload
    server.post_review(review)
    bad = captured_review()
    bad["kind"] = payload
    server.post_review(bad)
    server.post_review(b"{" + payload.encode())
    # Raw HTTP with the payload in the request line and a header: gunicorn logs bad requests.
    for raw in (
        b"POST /mutate\n" + FORGED.encode() + b" HTTP/1.1\r\nHost: x\r\n\r\n",
        b"POST /mutate HTTP/1.1\r\nHost: x\r\nX-A: b\n" + FORGED.encode() + b"\r\n\r\n",
        b"GET /" + FORGED.replace(" ", "%0A").encode() + b" HTTP/1.1\r\nHost: x\r\n\r\n",
    ):
        with server.tls_socket(5) as tls:
            tls.sendall(raw)
            try:
                tls.recv(65536)
            except OSError:
                pass
    # gunicorn's own log and the JSON lines (admission lines within logs.FLUSH_SECONDS)
    deadline = time.monotonic() + 5
    while FORGED not in (log := server.log_tail(10**7)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not [line for line in log.splitlines() if line.startswith("[2026-01-01")], log[-3000:]
    assert FORGED in log or "FORGED" in log, "the payload never reached a log: nothing was tested"


def test_bandit_finds_nothing_unexplained():
    bandit = shutil.which("bandit") or str(Path(sys.executable).with_name("bandit"))
    if not Path(bandit).exists():
        pytest.skip("bandit is not installed (pip install -e '.[test]')")
    run = subprocess.run(
        [bandit, "-c", str(ROOT / "pyproject.toml"), "-r", str(ROOT / "webhook"), "-q", "-f", "json"],
        capture_output=True,
        text=True,
    )
    report = json.loads(run.stdout)
    assert report["results"] == [], json.dumps(report["results"], indent=1)[:3000]
