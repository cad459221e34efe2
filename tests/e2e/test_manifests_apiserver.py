"""manifests/base and `gpu-rightsizer certs install` against a real kube-apiserver v1.36.3.

The base manifests are applied as they are (so the API server itself accepts the
MutatingWebhookConfiguration, its CEL matchConditions and the RBAC). `certs install` runs as
the manifests' own `gpu-rightsizer-certs` ServiceAccount (a real token), which proves the
Role/ClusterRole grant enough, and the API server refuses anything beyond. Then the
webhook configuration, pointed at a real `gpu-rightsizer serve`, shows which pod creates
the API server sends to it (namespaceSelector + CEL matchConditions evaluated by the
API server itself).
"""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

pytest.importorskip("controlplane", reason="needs tests/e2e/controlplane.py (the e2e control plane)")

from webhook.certs.bundle import TlsBundle, bundle_problem, service_dns_names, write_ca_and_serving_cert  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
NAMESPACE = "gpu-rightsizer-system"
NAMES = service_dns_names("gpu-rightsizer", NAMESPACE)
CLI = [sys.executable, "-m", "webhook.cli"]


def _kustomize_base() -> list[dict]:
    binary = (
        subprocess.run(
            [str(ROOT / "scripts" / "install-kustomize.sh")], capture_output=True, text=True, check=True, timeout=900
        )
        .stdout.strip()
        .splitlines()[-1]
    )
    out = subprocess.run(
        [binary, "build", str(ROOT / "manifests" / "base")], capture_output=True, text=True, check=True, timeout=120
    ).stdout
    return [d for d in yaml.safe_load_all(out) if d]


@pytest.fixture(scope="module")
def installed_base(control_plane):
    objects = _kustomize_base()
    for obj in objects:
        if obj["kind"] == "Deployment":
            # Stored and validated as written, but no pods: without kubelets a bound pod
            # never finishes terminating, and the namespace could not be deleted after.
            obj["spec"]["replicas"] = 0
    control_plane.apply(*objects)
    try:
        yield objects
    finally:
        # The webhook points at a Service with no running server and fails closed: it must
        # not outlive this module in the shared control plane.
        control_plane.kubectl(
            "delete",
            "-f",
            "-",
            "--ignore-not-found",
            "--timeout=90s",
            input=yaml.safe_dump_all(objects),
            check=False,
            timeout=120,
        )


def _service_account_kubeconfig(plane, tmp_path: Path) -> Path:
    token = plane.kubectl("create", "token", "gpu-rightsizer-certs", "-n", NAMESPACE).stdout.strip()
    config = yaml.safe_load(Path(plane.kubeconfig).read_text())
    config["users"] = [{"name": "certs", "user": {"token": token}}]
    for ctx in config["contexts"]:
        ctx["context"]["user"] = "certs"
    path = tmp_path / "certs-kubeconfig"
    path.write_text(yaml.safe_dump(config))
    return path


def _install(kubeconfig: Path, *args: str) -> list[str]:
    done = subprocess.run(
        [*CLI, "certs", "install", "--kubeconfig", str(kubeconfig), *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.splitlines()


def _state(plane) -> tuple[dict, dict]:
    return (
        plane.get_json("secret", "gpu-rightsizer-tls", "-n", NAMESPACE),
        plane.get_json("mutatingwebhookconfiguration", "gpu-rightsizer"),
    )


def _bundle(secret: dict) -> TlsBundle:
    return TlsBundle(*(base64.b64decode(secret["data"][k]) for k in ("tls.crt", "tls.key", "ca.crt")))


def _ca_bundle(mwc: dict) -> bytes:
    (hook,) = mwc["webhooks"]
    return base64.b64decode(hook["clientConfig"]["caBundle"])


def test_certs_install_creates_updates_and_is_rerun_safe(control_plane, installed_base, tmp_path):
    plane = control_plane
    sa_config = _service_account_kubeconfig(plane, tmp_path)

    out = _install(sa_config, "--generate")
    assert any("generated a new CA" in line for line in out)
    secret, mwc = _state(plane)
    assert secret["type"] == "kubernetes.io/tls"
    first = _bundle(secret)
    assert bundle_problem(first, NAMES) is None
    assert _ca_bundle(mwc) == first.ca_cert

    # Re-run: nothing is written.
    out = _install(sa_config, "--generate")
    assert "secret/gpu-rightsizer-tls: unchanged" in " ".join(out)
    again_secret, again_mwc = _state(plane)
    assert again_secret["metadata"]["resourceVersion"] == secret["metadata"]["resourceVersion"]
    assert again_mwc["metadata"]["resourceVersion"] == mwc["metadata"]["resourceVersion"]

    # A new certificate from `certs generate`: the Secret takes it; the caBundle trusts the
    # new CA and still the old one (servers reload the Secret some seconds later).
    write_ca_and_serving_cert(tmp_path / "certs", NAMES)
    out = _install(sa_config, "--cert-dir", str(tmp_path / "certs"))
    secret, mwc = _state(plane)
    second = _bundle(secret)
    assert second.cert == (tmp_path / "certs" / "tls.crt").read_bytes()
    bundle = _ca_bundle(mwc)
    assert bundle.startswith(second.ca_cert.strip()) and first.ca_cert.strip() in bundle
    assert bundle_problem(TlsBundle(second.cert, second.key, bundle), NAMES) is None
    assert bundle_problem(TlsBundle(first.cert, first.key, bundle), NAMES) is None
    rv = (secret["metadata"]["resourceVersion"], mwc["metadata"]["resourceVersion"])
    _install(sa_config, "--cert-dir", str(tmp_path / "certs"))
    secret, mwc = _state(plane)
    assert (secret["metadata"]["resourceVersion"], mwc["metadata"]["resourceVersion"]) == rv


def test_certs_service_account_can_do_nothing_else(control_plane, installed_base, tmp_path):
    sa_config = _service_account_kubeconfig(control_plane, tmp_path)

    def can(*args: str) -> str:
        return subprocess.run(
            [str(control_plane.bin_dir / "kubectl"), "--kubeconfig", str(sa_config), "auth", "can-i", *args],
            capture_output=True,
            text=True,
        ).stdout.strip()

    assert can("patch", "mutatingwebhookconfigurations/gpu-rightsizer") == "yes"
    assert can("patch", "mutatingwebhookconfigurations/other") == "no"
    assert can("get", "secrets/gpu-rightsizer-tls", "-n", NAMESPACE) == "yes"
    assert can("get", "secrets/other", "-n", NAMESPACE) == "no"
    assert can("list", "secrets", "-n", NAMESPACE) == "no"
    assert can("create", "secrets", "-n", "default") == "no"
    assert can("create", "pods", "-n", NAMESPACE) == "no"


def test_base_manifests_are_accepted_as_written(control_plane, installed_base):
    # The API server stored the webhook with its CEL matchConditions unchanged.
    mwc = control_plane.get_json("mutatingwebhookconfiguration", "gpu-rightsizer")
    rendered = next(o for o in installed_base if o["kind"] == "MutatingWebhookConfiguration")
    assert json.dumps(mwc["webhooks"][0]["matchConditions"]) == json.dumps(rendered["webhooks"][0]["matchConditions"])


# --- the webhook configuration as kube-apiserver evaluates it ------------------------


def _pod(name: str, annotations: dict | None = None, gpu: str | None = "containers") -> dict:
    container = {"name": "main", "image": "registry.example/llm:1"}
    spec: dict = {"containers": [dict(container)]}
    if gpu == "containers":
        spec["containers"][0]["resources"] = {"limits": {"nvidia.com/gpu": "1"}}
    elif gpu == "initContainers":
        spec["initContainers"] = [
            {
                **container,
                "name": "warm",
                "resources": {"requests": {"nvidia.com/gpu": "1"}, "limits": {"nvidia.com/gpu": "1"}},
            }
        ]
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "annotations": annotations or {}},
        "spec": spec,
    }


def _dry_run_create(plane, namespace: str, pod: dict) -> dict:
    out = plane.kubectl("create", "--dry-run=server", "-o", "json", "-n", namespace, "-f", "-", input=json.dumps(pod))
    return json.loads(out.stdout)


def test_api_server_calls_the_webhook_only_for_gpu_pods_not_skipped(control_plane, installed_base, tmp_path):
    from tests.support.server import LiveServer

    plane = control_plane
    with LiveServer(tmp_path, workers=1) as server:
        # The manifests' own webhook configuration, pointed at this server by URL (there
        # are no kubelets to run the Deployment); everything else as written.
        mwc = json.loads(json.dumps(next(o for o in installed_base if o["kind"] == "MutatingWebhookConfiguration")))
        hook = mwc["webhooks"][0]
        hook["clientConfig"] = {
            "url": f"{server.url}/mutate",
            "caBundle": base64.b64encode(Path(server.ca_file).read_bytes()).decode(),
        }
        plane.kubectl("replace", "-f", "-", input=json.dumps(mwc))
        plane.create_namespace("rightsized")
        plane.kubectl("label", "namespace", "rightsized", "gpu-rightsizer.io/enabled=true")
        plane.create_namespace("not-opted-in")

        def called(name: str, wait: float = 3.0) -> bool:
            # Admission lines reach the log within logs.FLUSH_SECONDS: wait that long
            # (and more) before saying a pod was, or was not, sent to us.
            deadline = time.monotonic() + wait
            while True:
                if any(line.get("name") == name for line in server.log_lines() if line["msg"] == "admission"):
                    return True
                if time.monotonic() > deadline:
                    return False
                time.sleep(0.1)

        sized = {"gpu-rightsizer.io/model-size": "7b"}
        stored = _dry_run_create(plane, "rightsized", _pod("llm", sized))
        assert stored["spec"]["containers"][0]["resources"]["limits"] == {"nvidia.com/mig-1g.20gb": "1"}
        assert stored["spec"]["priorityClassName"] == "gpu-rightsizer-inference"
        assert stored["spec"]["priority"] == 100000  # the manifests' PriorityClass
        assert called("llm")

        _dry_run_create(plane, "rightsized", _pod("init-gpu", sized, gpu="initContainers"))
        assert called("init-gpu")

        for name, namespace, pod in [
            ("cpu-only", "rightsized", _pod("cpu-only", sized, gpu=None)),
            ("skipped", "rightsized", _pod("skipped", {**sized, "gpu-rightsizer.io/skip": "true"})),
            ("elsewhere", "not-opted-in", _pod("elsewhere", sized)),
        ]:
            stored = _dry_run_create(plane, namespace, pod)
            assert "gpu-rightsizer.io/decision" not in stored["metadata"].get("annotations", {})
        # The API server answered those without calling the webhook at all.
        time.sleep(0.5)
        assert not any(called(n, wait=1.0) for n in ("cpu-only", "skipped", "elsewhere"))
        plane.kubectl("delete", "namespace", "rightsized", "not-opted-in", "--wait=false")
