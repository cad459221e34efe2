"""kube-apiserver calls a loopback HTTPS webhook registered by clientConfig.url.

A stand-in webhook (stdlib only) proves the plumbing the real gpu-rightsizer
tests will use: make_serving_cert's CA as caBundle, 127.0.0.1 URL, a JSONPatch
response applied to the stored pod.
"""

from __future__ import annotations

import base64
import json
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from controlplane import make_serving_cert, wait_for

NAMESPACE = "webhook-plumbing"
LABEL = "e2e.gpu-rightsizer/mutated"


class LabelingWebhook(BaseHTTPRequestHandler):
    """Allows every object and adds LABEL=true to it."""

    protocol_version = "HTTP/1.1"  # keep-alive, as kube-apiserver expects
    calls: list[str] = []

    def do_POST(self) -> None:  # noqa: N802 - http.server API
        review = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        LabelingWebhook.calls.append(self.path)
        patch = [{"op": "add", "path": f"/metadata/labels/{LABEL.replace('/', '~1')}", "value": "true"}]
        if not review["request"]["object"]["metadata"].get("labels"):
            patch.insert(0, {"op": "add", "path": "/metadata/labels", "value": {}})
        body = json.dumps(
            {
                "apiVersion": "admission.k8s.io/v1",
                "kind": "AdmissionReview",
                "response": {
                    "uid": review["request"]["uid"],
                    "allowed": True,
                    "patchType": "JSONPatch",
                    "patch": base64.b64encode(json.dumps(patch).encode()).decode(),
                },
            }
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:  # keep test output quiet
        pass


@pytest.fixture
def labeling_webhook(tmp_path):
    """Serve LabelingWebhook over TLS on 127.0.0.1; yield (url, ServingCert)."""
    cert = make_serving_cert(tmp_path / "certs")
    server = ThreadingHTTPServer(("127.0.0.1", 0), LabelingWebhook)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert.cert_file, cert.key_file)
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    LabelingWebhook.calls.clear()
    yield f"https://127.0.0.1:{server.server_address[1]}/mutate", cert
    server.shutdown()
    server.server_close()


def test_apiserver_applies_loopback_webhook_patch(control_plane, labeling_webhook):
    url, cert = labeling_webhook
    control_plane.create_namespace(NAMESPACE)
    control_plane.apply(
        {
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "MutatingWebhookConfiguration",
            "metadata": {"name": "e2e-labeling"},
            "webhooks": [
                {
                    "name": "label.e2e.gpu-rightsizer.io",
                    "clientConfig": {"url": url, "caBundle": cert.ca_bundle_b64},
                    "rules": [
                        {"apiGroups": [""], "apiVersions": ["v1"], "operations": ["CREATE"], "resources": ["pods"]}
                    ],
                    # Only this test's namespace: the plane is shared by the whole session.
                    "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": NAMESPACE}},
                    "admissionReviewVersions": ["v1"],
                    "sideEffects": "None",
                    "failurePolicy": "Fail",
                    "timeoutSeconds": 5,
                }
            ],
        }
    )
    try:
        pod = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "p", "namespace": NAMESPACE},
            "spec": {"containers": [{"name": "c", "image": "registry.k8s.io/pause:3.10"}]},
        }

        # The API server picks up a new webhook configuration asynchronously:
        # probe with server-side dry runs (sideEffects: None allows them).
        def dry_run_is_mutated() -> bool:
            out = control_plane.kubectl(
                "create", "--dry-run=server", "-o", "json", "-f", "-", input=json.dumps(pod)
            ).stdout
            return json.loads(out)["metadata"].get("labels", {}).get(LABEL) == "true"

        wait_for(dry_run_is_mutated, timeout=30, message="the webhook to take effect")
        control_plane.apply(pod)
        stored = control_plane.get_json("pod", "p", "-n", NAMESPACE)
        assert stored["metadata"]["labels"][LABEL] == "true"
        assert LabelingWebhook.calls and all(c.startswith("/mutate?timeout=") for c in LabelingWebhook.calls)
    finally:
        control_plane.kubectl("delete", "mutatingwebhookconfiguration", "e2e-labeling", check=False)
        control_plane.kubectl("delete", "namespace", NAMESPACE, "--wait=false", check=False)
