"""GPU quotas after the rewrite, with the real ResourceQuota admission plugin: a namespace
capped at `requests.nvidia.com/gpu: 1` gets MIG pods up to one GPU's worth and the next one
is refused by the webhook (quota.mode gpu-equivalent); with quota.mode warn, the first
rewritten pod is told that it escapes the quota."""

from __future__ import annotations

import json
import time

import pytest
from controlplane import wait_for
from install import install, policy_text, set_policy, sleeping_gpu_pod, uninstall

A = "gpu-rightsizer.io/"
TEAM = "quota-team"


def pod(name: str, image: str, model_size: str = "13b") -> dict:
    # 13b fp16 x 1.2 needs a 3g.40gb on the default H100 pool: half a GPU each.
    return sleeping_gpu_pod(name, TEAM, image, {A + "model-size": model_size})


@pytest.fixture(scope="module")
def quota_installed(node, tmp_path_factory):
    plane = node.plane
    overlay, took = install(plane, node.image.name, "overlays/self-signed-quota", tmp_path_factory.mktemp("quota"))
    print(f"quota install: ready {took:.0f}s after kubectl apply -k")
    plane.kubectl("create", "namespace", TEAM)
    plane.kubectl("label", "namespace", TEAM, "gpu-rightsizer.io/enabled=true")
    plane.wait_for_service_account(TEAM)
    plane.apply(
        {
            "apiVersion": "v1",
            "kind": "ResourceQuota",
            "metadata": {"name": "team-gpus", "namespace": TEAM},
            "spec": {"hard": {"requests.nvidia.com/gpu": "1"}},
        }
    )
    wait_for(
        lambda: plane.get_json("resourcequota", "team-gpus", "-n", TEAM).get("status", {}).get("hard"),
        60,
        message="the quota controller to fill in the quota's status",
    )
    yield overlay
    plane.kubectl("delete", "namespace", TEAM, "--wait=true", timeout=180, check=False)
    uninstall(plane, overlay)


def create(plane, obj: dict, dry_run: bool = False):
    args = ["apply", "-f", "-"] + (["--dry-run=server"] if dry_run else [])
    return plane.kubectl(*args, input=json.dumps(obj), check=False)


def test_enforced_up_to_one_gpu_worth_then_refused_with_the_figures(node, quota_installed):
    plane, image = node.plane, node.image.name
    wait_for(
        lambda: "counted as 1/2 (0.50) GPU" in create(plane, pod("probe", image), dry_run=True).stderr,
        60,
        interval=0.5,
        message="the webhook's view of the namespace's quota",
    )
    first = create(plane, pod("half-1", image))
    assert first.returncode == 0, first.stderr
    assert "counted as 1/2 (0.50) GPU against ResourceQuota team-gpus" in first.stderr, first.stderr
    # Both replicas watch the namespace; a dry run shows when the first pod is counted.
    wait_for(
        lambda: "1 of 1 in use with this pod" in create(plane, pod("probe", image), dry_run=True).stderr,
        30,
        interval=0.5,
        message="the webhook to count the first pod",
    )
    second = create(plane, pod("half-2", image))
    assert second.returncode == 0 and "1 of 1 in use with this pod" in second.stderr, second.stderr
    time.sleep(3)  # the watch delivers the second pod (docs/quotas.md: the race window)
    third = create(plane, pod("half-3", image))
    assert third.returncode != 0
    assert "ResourceQuota team-gpus caps requests.nvidia.com/gpu at 1 in quota-team" in third.stderr, third.stderr
    assert "in use 1 GPU (2 x 3g.40gb at 1/2 (0.50)), this pod adds 1/2 (0.50)" in third.stderr
    assert plane.kubectl("get", "pod", "half-3", "-n", TEAM, check=False).returncode != 0
    stored = plane.get_json("pod", "half-1", "-n", TEAM)
    assert stored["spec"]["containers"][0]["resources"]["limits"] == {"nvidia.com/mig-3g.40gb": "1"}
    # The stock quota plugin charged nothing to requests.nvidia.com/gpu: only we held the line.
    used = plane.get_json("resourcequota", "team-gpus", "-n", TEAM)["status"].get("used", {})
    assert used.get("requests.nvidia.com/gpu", "0") == "0"


def test_warn_mode_says_the_first_rewritten_pod_escapes_the_quota(node, quota_installed):
    plane, image = node.plane, node.image.name
    policy = policy_text(plane)
    warned = policy.replace("mode: gpu-equivalent", "mode: warn")
    set_policy(plane, warned)
    message = "no ResourceQuota there caps nvidia.com/mig-3g.40gb: this pod is not counted against that GPU quota"
    wait_for(
        lambda: message in create(plane, pod("probe", image), dry_run=True).stderr,
        200,
        interval=1,
        message="the webhook to follow quota.mode warn",
    )
    fourth = create(plane, pod("half-4", image))
    assert fourth.returncode == 0 and message in fourth.stderr, fourth.stderr
