"""The webhook's rewrite served by Dynamic Resource Allocation on the real node: GPU pods
rewritten to `nvidia.com/mig-<profile>` get a ResourceClaim the scheduler allocates from the
MIG devices a DRA kubelet plugin publishes, and run with the device it prepared.

What runs: the real kubelet, containerd and scheduler of the tier; gpu-rightsizer installed
with `kubectl apply -k manifests/overlays/self-signed` (install.py); the DeviceClasses
`gpu-rightsizer dra deviceclasses` prints (KEP-5004 `extendedResourceName`, webhook/core/dra.py);
and `fake-nvidia-dra-plugin` (go/draplugin), a kubelet plugin built on
k8s.io/dynamic-resource-allocation/kubeletplugin v0.36.3 for driver `gpu.nvidia.com` that
publishes a ResourceSlice shaped like NVIDIA's DRA driver's (kubernetes-sigs/dra-driver-nvidia-gpu,
site/content/docs/reference/resourceslice-attributes.md) and, on NodePrepareResources, writes
a CDI spec setting NVIDIA_VISIBLE_DEVICES=<the device's MIG UUID> into containerd's CDI dir.

Keeping the two plugins apart: the fake *device* plugin keeps advertising only
`nvidia.com/gpu` while this module runs, so every `nvidia.com/mig-<profile>` is 0 in the
node's allocatable and the scheduler serves it from DRA (the scheduler's DRA plugin uses a
DeviceClass's extended resource only on nodes whose allocatable of it is 0:
pkg/scheduler/framework/plugins/dynamicresources/extendeddynamicresources.go,
filterExtendedResources). At the end the tier's usual layout is advertised again.
"""

from __future__ import annotations

import contextlib
import io
import json
import time

import pytest
import yaml
from cluster import LAYOUT
from controlplane import wait_for
from install import install, sleeping_gpu_pod, uninstall

from webhook.cli.main import main

TEAM = "dra-team"
DRIVER = "gpu.nvidia.com"
NODE = "gpu-node-1"
A = "gpu-rightsizer.io/"
# NVIDIA mig-parted's H100 "all-balanced" layout: 2 x 1g.10gb (slices 0, 1), 1 x 2g.20gb
# (2-3) and 1 x 3g.40gb (4-7), as PROFILE@START on the node's one GPU.
MIGS = ["1g.10gb@0", "1g.10gb@1", "2g.20gb@2", "3g.40gb@4"]
SHOW_DEVICE = (
    "import os, time; print('NVIDIA_VISIBLE_DEVICES=' + os.environ.get('NVIDIA_VISIBLE_DEVICES', ''), flush=True); "
    "time.sleep(3600)"
)


def gpu_pod(name: str, image: str, **annotations: str) -> dict:
    """One whole GPU and a sizing annotation; the container prints the device it was given."""
    pod = sleeping_gpu_pod(name, TEAM, image, {A + k.replace("_", "-"): v for k, v in annotations.items()})
    pod["spec"]["containers"][0]["command"] = ["python3", "-c", SHOW_DEVICE]
    return pod


def stored(plane, name: str) -> dict:
    return plane.get_json("pod", name, "-n", TEAM)


def attribute(device: dict, name: str) -> str:
    return next(iter(device["attributes"][name].values()))


def feature_enabled(metrics: str, gate: str) -> bool:
    return any(
        line.startswith("kubernetes_feature_enabled{") and f'name="{gate}"' in line and line.rstrip().endswith(" 1")
        for line in metrics.splitlines()
    )


@pytest.fixture(scope="module")
def dra(node, tmp_path_factory):
    plane, real = node.plane, node.node
    # Whole GPUs stay with the device plugin; MIG slices come from DRA only.
    real.advertise({"nvidia.com/gpu": 1})
    wait_for(
        lambda: all(
            v == "0"
            for k, v in plane.get_json("node", NODE)["status"]["allocatable"].items()
            if k.startswith("nvidia.com/mig-")
        ),
        60,
        message="no MIG resource left in the node's allocatable",
    )
    started = time.monotonic()
    slice_ = real.start_dra_plugin(MIGS)
    published = time.monotonic() - started
    with contextlib.redirect_stdout(io.StringIO()) as out:
        assert main(["dra", "deviceclasses"]) == 0
    classes = [d for d in yaml.safe_load_all(out.getvalue()) if d]
    plane.kubectl("apply", "-f", "-", input=out.getvalue())
    overlay, took = install(plane, node.image.name, "overlays/self-signed", tmp_path_factory.mktemp("dra"))
    plane.kubectl("create", "namespace", TEAM)
    plane.kubectl("label", "namespace", TEAM, "gpu-rightsizer.io/enabled=true")
    plane.wait_for_service_account(TEAM)
    print(
        f"\nDRA: the plugin's ResourceSlice published {published:.1f}s after its start; "
        f"{len(classes)} DeviceClasses applied; webhook ready {took:.0f}s after kubectl apply -k"
    )
    try:
        yield {"slice": slice_, "classes": classes}
    finally:
        plane.kubectl("delete", "namespace", TEAM, "--wait=true", timeout=180, check=False)
        uninstall(plane, overlay)
        plane.kubectl("delete", "deviceclass", "-l", "app.kubernetes.io/part-of=gpu-rightsizer", check=False)
        real.stop_dra_plugin()
        plane.kubectl("delete", "resourceslices", "--field-selector", f"spec.driver={DRIVER}", check=False)
        real.advertise(LAYOUT)


def test_feature_gates_and_the_plugins_resource_slice(node, dra):
    plane = node.plane
    # DRA is GA (locked on) in v1.36; KEP-5004's DRAExtendedResource and DRAPartitionableDevices
    # are beta and on by default. Both the API server and the kubelet say so in their metrics.
    apiserver = plane.kubectl("get", "--raw", "/metrics").stdout
    kubelet = plane.kubectl("get", "--raw", f"/api/v1/nodes/{NODE}/proxy/metrics").stdout
    for gate in ("DynamicResourceAllocation", "DRAExtendedResource", "DRAPartitionableDevices"):
        assert feature_enabled(apiserver, gate), f"kube-apiserver: {gate} is not enabled"
        assert feature_enabled(kubelet, gate), f"kubelet: {gate} is not enabled"

    spec = dra["slice"]["spec"]
    assert (spec["driver"], spec["nodeName"], spec["pool"]["name"]) == (DRIVER, NODE, NODE)
    by_name = {d["name"]: d for d in spec["devices"]}
    # The driver's canonical MIG names (gpu-<minor>-mig-<profile>-<profile id>-<start>).
    assert set(by_name) == {
        "gpu-0-mig-1g10gb-19-0",
        "gpu-0-mig-1g10gb-19-1",
        "gpu-0-mig-2g20gb-14-2",
        "gpu-0-mig-3g40gb-9-4",
    }
    small = by_name["gpu-0-mig-1g10gb-19-0"]
    assert {k: attribute(small, k) for k in ("type", "profile", "productName")} == {
        "type": "mig",
        "profile": "1g.10gb",
        "productName": "NVIDIA H100 80GB HBM3",
    }
    assert attribute(small, "uuid").startswith("MIG-") and attribute(small, "parentUUID").startswith("GPU-")
    assert small["capacity"]["memory"]["value"] == "9984Mi"  # the catalog's 1g.10gb, driver 580
    # The generated classes select these devices: one class per profile of the default pool.
    assert {c["spec"]["extendedResourceName"] for c in dra["classes"]} >= {
        f"nvidia.com/mig-{attribute(d, 'profile')}" for d in spec["devices"]
    }


def test_rewritten_pods_run_on_the_dra_devices_of_their_profile(node, dra):
    """Three GPU pods through the in-cluster webhook: two 1g.10gb, one 3g.40gb. Each gets a
    ResourceClaim the scheduler allocated from the plugin's device of that profile, runs, and
    sees that device's MIG UUID. The third 1g.10gb pod stays Pending with the scheduler's
    reason until one of the first two is deleted, then runs on the device it freed."""
    plane, real, image = node.plane, node.node, node.image.name
    devices = {d["name"]: d for d in dra["slice"]["spec"]["devices"]}
    wanted = {"small-a": "1g.10gb", "small-b": "1g.10gb", "big": "3g.40gb"}
    started = time.monotonic()
    for name, profile in wanted.items():
        sizing = {"model_size": "13b"} if profile == "3g.40gb" else {"gpu_memory": "5Gi"}
        done = plane.kubectl("apply", "-f", "-", input=json.dumps(gpu_pod(name, image, **sizing)))
        assert f"nvidia.com/gpu: 1 -> nvidia.com/mig-{profile}" in done.stderr, done.stderr

    def running() -> list[dict]:
        pods = [stored(plane, n) for n in wanted]
        return pods if all(p["status"]["phase"] == "Running" for p in pods) else []

    try:
        pods = wait_for(running, 180, interval=1, message="the three DRA-served pods Running")
    except TimeoutError:
        print(plane.kubectl("get", "pods,resourceclaims,events", "-n", TEAM, "-o", "wide", check=False).stdout)
        print(real.log_tails())
        raise
    to_running = time.monotonic() - started

    def claim_device(pod: dict) -> tuple[dict, dict]:
        """The pod's scheduler-made claim and the slice device it was allocated."""
        status = pod["status"]["extendedResourceClaimStatus"]
        claim = plane.get_json("resourceclaim", status["resourceClaimName"], "-n", TEAM)
        (result,) = claim["status"]["allocation"]["devices"]["results"]
        assert (result["driver"], result["pool"]) == (DRIVER, NODE), result
        assert [r["name"] for r in claim["status"]["reservedFor"]] == [pod["metadata"]["name"]]
        return claim, devices[result["device"]]

    def seen_device(name: str) -> str:
        lines = wait_for(
            lambda: [
                x
                for x in plane.kubectl("logs", "-n", TEAM, name).stdout.splitlines()
                if x.startswith("NVIDIA_VISIBLE_DEVICES=")
            ],
            60,
            message=f"{name}'s log",
        )
        return lines[0].split("=", 1)[1]

    given = {}
    for pod in pods:
        name = pod["metadata"]["name"]
        profile = pod["metadata"]["annotations"][A + "assigned-profile"]
        assert profile == wanted[name]
        assert pod["spec"]["containers"][0]["resources"]["limits"] == {f"nvidia.com/mig-{profile}": "1"}
        assert pod["spec"]["nodeName"] == NODE
        claim, device = claim_device(pod)
        assert claim["metadata"]["name"].startswith(f"{name}-extended-resources-")
        assert attribute(device, "profile") == profile, (name, device["name"])
        uuid = attribute(device, "uuid")
        # What the container sees is what the plugin's CDI spec for this claim set.
        assert seen_device(name) == uuid, name
        spec = json.loads((real.cdi_dir / f"k8s.gpu.nvidia.com-claim_{claim['metadata']['uid']}.json").read_text())
        assert spec["devices"][0]["containerEdits"]["env"] == [f"NVIDIA_VISIBLE_DEVICES={uuid}"]
        given[name] = (device["name"], uuid, claim["metadata"]["uid"])
    assert given["small-a"][0] != given["small-b"][0]
    # No MIG resource came from the device plugin: the node's allocatable has none.
    allocatable = plane.get_json("node", NODE)["status"]["allocatable"]
    assert all(v == "0" for k, v in allocatable.items() if k.startswith("nvidia.com/mig-")), allocatable

    # Both 1g.10gb devices are taken: the next 1g.10gb pod stays Pending.
    plane.kubectl("apply", "-f", "-", input=json.dumps(gpu_pod("small-c", image, gpu_memory="5Gi")))

    def unschedulable() -> str:
        pod = stored(plane, "small-c")
        return next(
            (
                c.get("message", "")
                for c in pod["status"].get("conditions", [])
                if c["type"] == "PodScheduled" and c.get("reason") == "Unschedulable"
            ),
            "",
        )

    reason = wait_for(unschedulable, 60, interval=1, message="small-c reported unschedulable")
    assert "cannot allocate all claims" in reason, reason
    time.sleep(3)
    pending = stored(plane, "small-c")
    assert pending["status"]["phase"] == "Pending" and not pending["spec"].get("nodeName")
    assert pending["metadata"]["annotations"][A + "assigned-profile"] == "1g.10gb"

    # Deleting small-a unprepares its claim (the plugin removes its CDI spec) and frees its
    # device; small-c then runs on it.
    freed_name, freed_uuid, freed_claim = given["small-a"]
    deleted = time.monotonic()
    plane.kubectl("delete", "pod", "small-a", "-n", TEAM, "--wait=true", timeout=120)
    wait_for(
        lambda: not (real.cdi_dir / f"k8s.gpu.nvidia.com-claim_{freed_claim}.json").exists(),
        60,
        message="small-a's CDI spec removed",
    )
    wait_for(
        lambda: stored(plane, "small-c")["status"]["phase"] == "Running", 180, interval=1, message="small-c Running"
    )
    to_rerun = time.monotonic() - deleted
    _, device = claim_device(stored(plane, "small-c"))
    assert device["name"] == freed_name
    assert seen_device("small-c") == freed_uuid
    print(
        f"DRA on the real node: 2 x 1g.10gb + 1 x 3g.40gb Running {to_running:.0f}s after create, "
        f"devices {sorted((n, d) for n, (d, _, _) in given.items())}; the third 1g.10gb Pending: {reason!r}; "
        f"after deleting small-a it ran on {freed_name} ({freed_uuid}) {to_rerun:.0f}s later"
    )
