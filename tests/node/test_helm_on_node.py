"""The Helm chart installed on the real node: `helm install` into a namespace that enforces
Pod Security `restricted`, the certs Job, both replicas Ready, a GPU pod rewritten through
the Service; `helm uninstall` leaves nothing that could refuse pods."""

from __future__ import annotations

import base64
import json
import subprocess
import time

from install import NS

from tests.support.chart import install_command, uninstall_command

A = "gpu-rightsizer.io/"
TEAM = "helm-team"


def gpu_pod(image: str) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "preview", "namespace": TEAM, "annotations": {A + "model-size": "3b"}},
        "spec": {
            "containers": [{"name": "main", "image": image, "resources": {"limits": {"nvidia.com/gpu": 1}}}],
        },
    }


def helm(plane, command: list[str]) -> subprocess.CompletedProcess:
    done = subprocess.run(command, capture_output=True, text=True, timeout=420)
    if done.returncode != 0:
        print(plane.kubectl("get", "all,events", "-n", NS, "-o", "wide", check=False).stdout)
    assert done.returncode == 0, done.stdout + done.stderr
    return done


def test_helm_install_rewrites_and_uninstall_leaves_nothing_that_refuses(node, tmp_path):
    plane, image = node.plane, node.image.name
    plane.kubectl("taint", "node", "gpu-node-1", "nvidia.com/gpu-", check=False)
    # As the chart's docs say: the namespace first, enforcing `restricted`.
    plane.kubectl("create", "namespace", NS)
    plane.kubectl("label", "namespace", NS, "pod-security.kubernetes.io/enforce=restricted")
    started = time.monotonic()
    helm(plane, install_command(kubeconfig=plane.kubeconfig, image=image, values_dir=tmp_path))
    print(f"helm install --wait --wait-for-jobs: {time.monotonic() - started:.0f}s")
    deployment = plane.get_json("deployment", "gpu-rightsizer", "-n", NS)
    assert deployment["status"].get("readyReplicas") == 2
    config = plane.get_json("mutatingwebhookconfiguration", "gpu-rightsizer")
    assert base64.b64decode(config["webhooks"][0]["clientConfig"]["caBundle"]).startswith(b"-----BEGIN CERTIFICATE")

    plane.kubectl("create", "namespace", TEAM)
    plane.kubectl("label", "namespace", TEAM, "gpu-rightsizer.io/enabled=true")
    plane.wait_for_service_account(TEAM)
    shown = json.loads(
        plane.kubectl("apply", "--dry-run=server", "-o", "json", "-f", "-", input=json.dumps(gpu_pod(image))).stdout
    )
    assert shown["spec"]["containers"][0]["resources"]["limits"] == {"nvidia.com/mig-1g.10gb": "1"}

    helm(plane, uninstall_command(kubeconfig=plane.kubeconfig))
    assert plane.kubectl("get", "mutatingwebhookconfiguration", "gpu-rightsizer", check=False).returncode != 0
    after = json.loads(
        plane.kubectl("apply", "--dry-run=server", "-o", "json", "-f", "-", input=json.dumps(gpu_pod(image))).stdout
    )
    assert after["spec"]["containers"][0]["resources"]["limits"] == {"nvidia.com/gpu": "1"}
    plane.kubectl("delete", "namespace", TEAM, NS, "--wait=true", timeout=180)
