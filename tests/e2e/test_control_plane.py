"""Smoke tests: the e2e control plane is a working Kubernetes, driven through real kubectl.

They prove what the webhook tests will rely on: namespaces get their default
ServiceAccount, the Priority admission plugin resolves a PriorityClass, and
kube-scheduler places pods on fake MIG nodes by their extended resources.
"""

from __future__ import annotations

import json

import pytest
from controlplane import wait_for

MIG_SMALL = "nvidia.com/mig-1g.10gb"
MIG_HUGE = "nvidia.com/mig-7g.80gb"
GPU_TAINT = {"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"}
GPU_TOLERATION = {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}


def pod_manifest(name: str, namespace: str, limits: dict | None = None, **spec) -> dict:
    """A one-container pod. There is no kubelet, so the image is never pulled."""
    container = {"name": "main", "image": "registry.k8s.io/pause:3.10"}
    if limits:
        container["resources"] = {"limits": limits}
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"containers": [container], **spec},
    }


@pytest.fixture(scope="module")
def namespace(control_plane):
    name = "smoke"
    control_plane.create_namespace(name)
    yield name
    control_plane.kubectl("delete", "namespace", name, "--wait=false", check=False)


@pytest.fixture(scope="module")
def gpu_nodes(control_plane):
    """One fake MIG node (tainted like the GPU operator does) and one CPU-only node."""
    gpu = control_plane.make_fake_gpu_node(
        "smoke-gpu-0",
        labels={"nvidia.com/mig.capable": "true"},
        taints=[GPU_TAINT],
        allocatable={MIG_SMALL: "2"},
    )
    cpu = control_plane.make_fake_gpu_node("smoke-cpu-0", labels={"node-role/cpu": "true"})
    yield gpu["metadata"]["name"], cpu["metadata"]["name"]
    control_plane.kubectl("delete", "node", "smoke-gpu-0", "smoke-cpu-0", check=False)


def test_server_reports_release_version(control_plane):
    version = json.loads(control_plane.kubectl("version", "-o", "json").stdout)
    assert version["serverVersion"]["gitVersion"] == "v1.36.3"


def test_new_namespace_gets_default_service_account(control_plane):
    control_plane.kubectl("create", "namespace", "smoke-sa")
    try:
        control_plane.wait_for_service_account("smoke-sa", timeout=30)
    finally:
        control_plane.kubectl("delete", "namespace", "smoke-sa", "--wait=false", check=False)


def test_priority_plugin_resolves_priority_class(control_plane, namespace):
    # Non-zero value and preemptionPolicy Never: both must be copied onto the pod
    # by the Priority admission plugin (the webhook tests depend on it).
    control_plane.apply(
        {
            "apiVersion": "scheduling.k8s.io/v1",
            "kind": "PriorityClass",
            "metadata": {"name": "smoke-thousand"},
            "value": 1000,
            "preemptionPolicy": "Never",
            "globalDefault": False,
        }
    )
    control_plane.apply(pod_manifest("prio", namespace, priorityClassName="smoke-thousand"))

    spec = control_plane.get_json("pod", "prio", "-n", namespace)["spec"]
    assert spec["priority"] == 1000
    assert spec["preemptionPolicy"] == "Never"


def test_scheduler_binds_mig_pod_to_gpu_node(control_plane, namespace, gpu_nodes):
    gpu_node, _ = gpu_nodes
    control_plane.apply(pod_manifest("mig-small", namespace, limits={MIG_SMALL: "1"}, tolerations=[GPU_TOLERATION]))

    node = wait_for(
        lambda: control_plane.get_json("pod", "mig-small", "-n", namespace)["spec"].get("nodeName"),
        timeout=30,
        message="mig-small to be scheduled",
    )
    assert node == gpu_node


def test_unsatisfiable_mig_pod_stays_pending(control_plane, namespace, gpu_nodes):
    control_plane.apply(pod_manifest("mig-huge", namespace, limits={MIG_HUGE: "1"}, tolerations=[GPU_TOLERATION]))

    def failed_scheduling_messages() -> list[str]:
        events = control_plane.get_json(
            "events", "-n", namespace, "--field-selector", "involvedObject.name=mig-huge,reason=FailedScheduling"
        )
        return [e.get("message", "") for e in events["items"]]

    messages = wait_for(failed_scheduling_messages, timeout=30, message="a FailedScheduling event for mig-huge")
    assert any(f"Insufficient {MIG_HUGE}" in m for m in messages), messages
    pod = control_plane.get_json("pod", "mig-huge", "-n", namespace)
    assert pod["status"]["phase"] == "Pending"
    assert not pod["spec"].get("nodeName")
