"""Installing and removing gpu-rightsizer on the real node, as README tells a user to: a copy
of manifests/, `kustomize edit set image` in the overlay applied, `kubectl apply -k`."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from pathlib import Path

from controlplane import KubectlError

REPO = Path(__file__).resolve().parents[2]
NS = "gpu-rightsizer-system"
SHIPPED_IMAGE = "ghcr.io/gpu-rightsizer/gpu-rightsizer"
GPU_TAINT = "nvidia.com/gpu=present:NoSchedule"


def kustomize_binary() -> str:
    done = subprocess.run([str(REPO / "scripts" / "install-kustomize.sh")], capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout.strip().splitlines()[-1]


def install(plane, image: str, overlay: str, workdir: Path) -> tuple[Path, float]:
    """Apply ``manifests/<overlay>`` (copied under ``workdir``) with the one image override;
    wait for the certs Job and both replicas. Returns (the overlay applied, seconds taken)."""
    copy = workdir / "manifests"
    shutil.copytree(REPO / "manifests", copy)
    where = copy / overlay
    edit = subprocess.run(
        [kustomize_binary(), "edit", "set", "image", f"{SHIPPED_IMAGE}={image}"],
        cwd=where,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert edit.returncode == 0, edit.stderr
    # The webhook runs on CPU nodes in a real cluster; here, on the one node, untainted.
    plane.kubectl("taint", "node", "gpu-node-1", "nvidia.com/gpu-", check=False)
    started = time.monotonic()
    plane.kubectl("apply", "-k", str(where), timeout=120)
    try:
        plane.kubectl(
            "wait", "-n", NS, "--for=condition=complete", "job/gpu-rightsizer-certs", "--timeout=180s", timeout=200
        )
        plane.kubectl("rollout", "status", "-n", NS, "deployment/gpu-rightsizer", "--timeout=240s", timeout=260)
    except KubectlError:
        print(plane.kubectl("get", "all,events", "-n", NS, "-o", "wide", check=False).stdout)
        raise
    return where, time.monotonic() - started


def uninstall(plane, overlay: Path) -> None:
    plane.kubectl("delete", "-k", str(overlay), "--wait=true", "--ignore-not-found", timeout=240)


def sleeping_gpu_pod(name: str, namespace: str, image: str, annotations: dict[str, str]) -> dict:
    """A pod as an ML engineer writes it: one whole GPU, its sizing annotations, and a
    container that just waits (the project image has python3)."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace, "annotations": dict(annotations)},
        "spec": {
            "restartPolicy": "Never",
            "terminationGracePeriodSeconds": 1,
            "containers": [
                {
                    "name": "main",
                    "image": image,
                    "imagePullPolicy": "IfNotPresent",
                    "command": ["python3", "-c", "import time; time.sleep(3600)"],
                    "resources": {"limits": {"nvidia.com/gpu": 1}},
                }
            ],
        },
    }


POLICY_CONFIGMAP = "gpu-rightsizer-policy"


def policy_text(plane) -> str:
    return plane.get_json("configmap", POLICY_CONFIGMAP, "-n", NS)["data"]["policy.yaml"]


def set_policy(plane, text: str) -> None:
    """Edit the policy ConfigMap as `kubectl edit` would; the kubelet's volume update and
    the servers' reload take it from there."""
    patch = json.dumps({"data": {"policy.yaml": text}})
    plane.kubectl("patch", "configmap", POLICY_CONFIGMAP, "-n", NS, "--type=merge", "-p", patch)
