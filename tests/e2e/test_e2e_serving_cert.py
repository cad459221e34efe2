"""The throwaway serving cert that later webhook tests hand to kube-apiserver as caBundle."""

from __future__ import annotations

import base64
import socket
import ssl
import threading

import pytest
from controlplane import free_port, make_serving_cert


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
def test_serving_cert_verifies_for_loopback_names(tmp_path, host):
    cert = make_serving_cert(tmp_path)
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(cert.cert_file, cert.key_file)
    port = free_port()
    listener = socket.create_server(("127.0.0.1", port))

    def serve_one() -> None:
        conn, _ = listener.accept()
        with server_ctx.wrap_socket(conn, server_side=True) as tls:
            tls.sendall(b"ok")

    thread = threading.Thread(target=serve_one, daemon=True)
    thread.start()
    client_ctx = ssl.create_default_context(cafile=str(cert.ca_file))
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
        with client_ctx.wrap_socket(raw, server_hostname=host) as tls:
            assert tls.recv(2) == b"ok"
    thread.join(5)
    listener.close()
    assert base64.b64decode(cert.ca_bundle_b64) == cert.ca_file.read_bytes()
