"""Capacity-aware choice on the real node (docs/capacity.md): with capacity.mode prefer-free,
pods go to the smallest fitting profile that has a free slice now, and run; with the mode off
the static choice leaves them Pending; a burst of creates never takes more slices than exist."""

from __future__ import annotations

import json
import threading
import time

import pytest
from cluster import LAYOUT
from controlplane import wait_for
from install import install, policy_text, set_policy, sleeping_gpu_pod, uninstall

A = "gpu-rightsizer.io/"
TEAM = "cap-team"
SEQUENCE_LAYOUT = {"nvidia.com/mig-1g.10gb": 2, "nvidia.com/mig-2g.20gb": 1, "nvidia.com/mig-3g.40gb": 1}
BURST_LAYOUT = {"nvidia.com/mig-1g.10gb": 3, "nvidia.com/mig-2g.20gb": 2, "nvidia.com/mig-3g.40gb": 1}


def pod(name: str, image: str) -> dict:
    # 5 GiB fits every H100 profile: the smallest is 1g.10gb.
    return sleeping_gpu_pod(name, TEAM, image, {A + "gpu-memory": "5Gi"})


def stored(plane, name: str) -> dict:
    return plane.get_json("pod", name, "-n", TEAM)


def profile_of(p: dict) -> str:
    return p["metadata"]["annotations"][A + "assigned-profile"]


def clean_namespace(plane) -> None:
    plane.kubectl("delete", "pods", "--all", "-n", TEAM, "--wait=true", "--grace-period=1", timeout=180)


@pytest.fixture(scope="module")
def capacity_installed(node, tmp_path_factory):
    plane = node.plane
    overlay, took = install(plane, node.image.name, "overlays/self-signed-capacity", tmp_path_factory.mktemp("cap"))
    print(f"capacity install: ready {took:.0f}s after kubectl apply -k")
    plane.kubectl("create", "namespace", TEAM)
    plane.kubectl("label", "namespace", TEAM, "gpu-rightsizer.io/enabled=true")
    plane.wait_for_service_account(TEAM)
    yield overlay
    plane.kubectl("delete", "namespace", TEAM, "--wait=true", timeout=180, check=False)
    uninstall(plane, overlay)
    node.node.advertise(LAYOUT)


def test_one_after_another_the_smallest_free_fitting_profile_and_all_run(node, capacity_installed):
    plane, image = node.plane, node.image.name
    node.node.advertise(SEQUENCE_LAYOUT)
    time.sleep(3)  # every worker's watch sees the new allocatable
    expected = ["1g.10gb", "1g.10gb", "2g.20gb", "3g.40gb"]
    for i, profile in enumerate(expected):
        name = f"seq-{i}"
        done = plane.kubectl("apply", "-f", "-", input=json.dumps(pod(name, image)))
        assert profile_of(stored(plane, name)) == profile, done.stderr
        wait_for(lambda n=name: stored(plane, n)["spec"].get("nodeName"), 60, message=f"{name} scheduled")
        time.sleep(1)  # the binding reaches every worker's watch
    wait_for(
        lambda: all(stored(plane, f"seq-{i}")["status"]["phase"] == "Running" for i in range(4)),
        120,
        interval=1,
        message="the four pods Running",
    )
    fifth = plane.kubectl("apply", "-f", "-", input=json.dumps(pod("seq-4", image)))
    decision = stored(plane, "seq-4")["metadata"]["annotations"][A + "decision"]
    assert "nothing free" in decision and "0 of 2 free" in decision, decision
    assert "capacity: 1g.10gb: 0 of 2 free" in fifth.stderr  # the warning (bounded in length) says it too
    time.sleep(5)
    assert stored(plane, "seq-4")["status"]["phase"] == "Pending"
    print(f"capacity, one after another: {expected} Running; the fifth Pending: {decision}")


def test_with_the_mode_off_the_third_waits_for_its_static_slice(node, capacity_installed):
    plane, image = node.plane, node.image.name
    clean_namespace(plane)
    policy = policy_text(plane)
    set_policy(plane, policy.replace("mode: prefer-free", 'mode: "off"'))
    probe = pod("probe", image)
    wait_for(
        lambda: (
            "capacity:"
            not in json.loads(
                plane.kubectl("apply", "--dry-run=server", "-o", "json", "-f", "-", input=json.dumps(probe)).stdout
            )["metadata"]["annotations"][A + "decision"]
        ),
        200,
        interval=1,
        message="the webhook to follow capacity.mode off",
    )
    for i in range(3):
        plane.kubectl("apply", "-f", "-", input=json.dumps(pod(f"off-{i}", image)))
    assert [profile_of(stored(plane, f"off-{i}")) for i in range(3)] == ["1g.10gb"] * 3
    wait_for(lambda: stored(plane, "off-1")["status"]["phase"] == "Running", 120, interval=1, message="off-1 Running")
    time.sleep(5)
    assert stored(plane, "off-2")["status"]["phase"] == "Pending"
    set_policy(plane, policy)
    wait_for(
        lambda: (
            "capacity:"
            in json.loads(
                plane.kubectl("apply", "--dry-run=server", "-o", "json", "-f", "-", input=json.dumps(probe)).stdout
            )["metadata"]["annotations"][A + "decision"]
        ),
        200,
        interval=1,
        message="the webhook back on prefer-free",
    )


def test_a_burst_never_takes_more_slices_than_exist(node, capacity_installed):
    plane, image = node.plane, node.image.name
    clean_namespace(plane)
    node.node.advertise(BURST_LAYOUT)
    time.sleep(3)
    threads = [
        threading.Thread(
            target=plane.kubectl, args=("apply", "-f", "-"), kwargs={"input": json.dumps(pod(f"burst-{i}", image))}
        )
        for i in range(20)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    pods = [stored(plane, f"burst-{i}") for i in range(20)]

    def running() -> list[dict]:
        now = [stored(plane, f"burst-{i}") for i in range(20)]
        return [p for p in now if p["status"]["phase"] == "Running"]

    wait_for(lambda: len(running()) == 6, 180, interval=2, message="6 burst pods Running")
    time.sleep(5)
    final = [stored(plane, f"burst-{i}") for i in range(20)]
    by_phase = {}
    for p in final:
        by_phase.setdefault(p["status"]["phase"], []).append(profile_of(p))
    assert len(by_phase["Running"]) == 6 and len(by_phase.get("Pending", [])) == 14, by_phase
    assert sorted(by_phase["Running"]) == ["1g.10gb"] * 3 + ["2g.20gb"] * 2 + ["3g.40gb"], by_phase
    assert all(p["spec"]["containers"][0]["resources"]["limits"] for p in pods)
    pending = by_phase["Pending"]
    # The rest wait on the smallest fitting profile, but for the pods two workers decided
    # within one view's window (docs/capacity.md, "Races that remain"): a few at most.
    assert pending.count("1g.10gb") >= 12, pending
    print(
        f"capacity burst: 20 creates at once against 6 free slices: 6 Running; "
        f"14 Pending, {pending.count('1g.10gb')} of them on 1g.10gb: {sorted(pending)}"
    )
