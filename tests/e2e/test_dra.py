"""DRA clusters on the real v1.36.3 control plane: the DeviceClasses `gpu-rightsizer dra
deviceclasses` prints let the scheduler serve the webhook's `nvidia.com/mig-<profile>`
requests from MIG devices published in a ResourceSlice shaped like NVIDIA's DRA driver's
(kubernetes-sigs/dra-driver-nvidia-gpu), on a node that advertises no MIG resource at all.

There is no kubelet: binding the pod, with a ResourceClaim the scheduler created and
allocated, is the proof. `gpu-rightsizer catalog --from-cluster` then reads the slices, and
a whole-GPU pod sent through the real webhook (`gpu-rightsizer serve` on loopback, as in
test_webhook.py) is rewritten as on a device-plugin cluster and bound to a DRA device.
"""

from __future__ import annotations

import contextlib
import io
import json

import pytest
import yaml
from controlplane import wait_for
from test_webhook import PRIORITY_CLASSES, Webhook, gpu_pod, project_webhook_configuration

from webhook.cli.main import main

NAMESPACE = "dra-e2e"
WEBHOOK_NAMESPACE = "dra-e2e-rightsized"  # opted in to the webhook
NODE = "dra-node-1"
DRIVER = "gpu.nvidia.com"
PRODUCT = "NVIDIA H100 80GB HBM3"  # NVML's name, as the driver's productName attribute carries it
# Two 1g.10gb devices, one 3g.40gb, one 1g.20gb; memory as the driver reports it (MemorySizeMB MiB, in
# bytes): 1g.10gb and 1g.20gb as driver 580 gives them (9984 and 20096 MiB, which the catalog
# records; it sizes with the older driver's 9856 and 19968), 3g.40gb 256 MiB below anything the
# catalog records, for `catalog --from-cluster` to find.
DEVICES = [
    ("mig-0-1g-0", "1g.10gb", "9984Mi"),
    ("mig-0-1g-1", "1g.10gb", "9984Mi"),
    ("mig-0-3g-4", "3g.40gb", "39936Mi"),
    ("mig-1-1g20-0", "1g.20gb", "20096Mi"),  # for the pod the webhook rewrites (a 7b model: 1g.20gb)
]


def _slice() -> dict:
    def device(name: str, profile: str, memory: str) -> dict:
        return {
            "name": name,
            "attributes": {
                "type": {"string": "mig"},
                "profile": {"string": profile},
                "productName": {"string": PRODUCT},
                "parentUUID": {"string": "GPU-00000000-0000-0000-0000-000000000001"},
            },
            "capacity": {"memory": {"value": memory}},
        }

    return {
        "apiVersion": "resource.k8s.io/v1",
        "kind": "ResourceSlice",
        "metadata": {"name": f"{NODE}-{DRIVER}"},
        "spec": {
            "driver": DRIVER,
            "nodeName": NODE,
            "pool": {"name": NODE, "generation": 1, "resourceSliceCount": 1},
            "devices": [device(*d) for d in DEVICES],
        },
    }


def _pod(name: str, profile: str) -> dict:
    # What the webhook's rewrite leaves in a pod: a limit on nvidia.com/mig-<profile>.
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": {
            "nodeSelector": {"kubernetes.io/hostname": NODE},
            "containers": [{"name": "c", "image": "x", "resources": {"limits": {f"nvidia.com/mig-{profile}": "1"}}}],
        },
    }


def _device_classes(capsys) -> list[dict]:
    code = main(["dra", "deviceclasses"])
    out = capsys.readouterr().out
    assert code == 0, out
    return [doc for doc in yaml.safe_load_all(out) if doc]


def _claims_of(cp, pod: str) -> list[dict]:
    claims = cp.get_json("resourceclaims", "-n", NAMESPACE)["items"]
    return [
        c
        for c in claims
        if any(ref.get("kind") == "Pod" and ref.get("name") == pod for ref in c["metadata"].get("ownerReferences", []))
    ]


@pytest.fixture(scope="module")
def dra_cluster(control_plane):
    """A node with no MIG allocatable, GFD's labels (the default policy's node affinity reads
    them), the driver-shaped ResourceSlice and the generated DeviceClasses; all removed
    afterwards: other e2e tests share the plane, and their nvidia.com/mig-* pods could be
    bound here."""
    cp = control_plane
    try:
        cp.create_namespace(NAMESPACE)
        labels = {
            "kubernetes.io/hostname": NODE,
            "nvidia.com/mig.capable": "true",
            "nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3",
        }
        node = cp.make_fake_gpu_node(NODE, labels=labels)
        assert not [r for r in node["status"]["allocatable"] if r.startswith("nvidia.com/")]
        cp.apply(_slice())
        yield cp
    finally:
        for namespace in (NAMESPACE, WEBHOOK_NAMESPACE):
            # No kubelet ever confirms a bound pod's graceful deletion: force it, or the pods
            # (and the opted-in namespace) linger Terminating and other tests (plan) read them.
            cp.kubectl("delete", "pods", "--all", "-n", namespace, "--grace-period=0", "--force", check=False)
            cp.kubectl("delete", "namespace", namespace, "--wait=false", "--ignore-not-found", check=False)
        cp.kubectl("delete", "deviceclass", "-l", "app.kubernetes.io/part-of=gpu-rightsizer", check=False)
        cp.kubectl("delete", "resourceslice", f"{NODE}-{DRIVER}", "--ignore-not-found", check=False)
        cp.kubectl("delete", "node", NODE, "--ignore-not-found", check=False)


def test_dra_extended_resource_serves_mig_requests(dra_cluster, capsys):
    cp = dra_cluster
    # The feature gates: the API serves DeviceClass.spec.extendedResourceName (DRAExtendedResource).
    explained = cp.kubectl("explain", "deviceclass.spec.extendedResourceName")
    assert "extendedResourceName" in explained.stdout
    classes = _device_classes(capsys)
    assert {c["spec"]["extendedResourceName"] for c in classes} >= {"nvidia.com/mig-1g.10gb", "nvidia.com/mig-3g.40gb"}
    cp.apply(*classes)
    stored = cp.get_json("deviceclass", "mig-1g.10gb.gpu.nvidia.com")
    assert stored["spec"]["extendedResourceName"] == "nvidia.com/mig-1g.10gb"

    for name, profile in [("small-1", "1g.10gb"), ("small-2", "1g.10gb"), ("medium-1", "3g.40gb")]:
        cp.apply(_pod(name, profile))

    devices = {name: profile for name, profile, _ in DEVICES}
    for name, profile in [("small-1", "1g.10gb"), ("small-2", "1g.10gb"), ("medium-1", "3g.40gb")]:
        wait_for(
            lambda name=name: cp.get_json("pod", name, "-n", NAMESPACE)["spec"].get("nodeName") == NODE,
            60,
            message=f"pod {name} bound to {NODE}",
        )
        (claim,) = _claims_of(cp, name)
        results = claim["status"]["allocation"]["devices"]["results"]
        assert [(r["driver"], r["pool"]) for r in results] == [(DRIVER, NODE)]
        assert devices[results[0]["device"]] == profile, (name, results)
    # Each 1g.10gb pod got its own device.
    smalls = {
        _claims_of(cp, n)[0]["status"]["allocation"]["devices"]["results"][0]["device"] for n in ("small-1", "small-2")
    }
    assert smalls == {"mig-0-1g-0", "mig-0-1g-1"}

    # No free 1g.10gb device is left: the third stays Pending with the scheduler's reason.
    cp.apply(_pod("small-3", "1g.10gb"))

    def unschedulable() -> str | None:
        pod = cp.get_json("pod", "small-3", "-n", NAMESPACE)
        for cond in pod.get("status", {}).get("conditions", []):
            if cond.get("type") == "PodScheduled" and cond.get("reason") == "Unschedulable":
                return cond.get("message", "")
        return None

    wait_for(unschedulable, 60, message="pod small-3 reported unschedulable")
    pod = cp.get_json("pod", "small-3", "-n", NAMESPACE)
    assert pod["status"]["phase"] == "Pending" and not pod["spec"].get("nodeName")
    assert "cannot allocate all claims" in unschedulable(), json.dumps(pod["status"])

    # The live catalog reads the same slice: per product and profile, the memory the
    # driver reports, and where it differs from the built-in catalog.
    code = main(["catalog", "--from-cluster", "--kubeconfig", str(cp.kubeconfig)])
    out = capsys.readouterr().out
    assert code == 0, out
    rows = [line.split() for line in out.splitlines() if line.startswith(PRODUCT)]
    product_words = len(PRODUCT.split())
    rows = [(row[product_words], *row[product_words + 1 :]) for row in rows]
    assert ("1g.10gb", "9984", "9856", "2", "ResourceSlice") in rows, out
    assert ("3g.40gb", "39936", "40192", "1", "ResourceSlice") in rows, out
    assert ("1g.20gb", "20096", "19968", "1", "ResourceSlice") in rows, out
    assert f"differs: {PRODUCT} 3g.40gb: driver reports 39936 MiB, catalog 40192 MiB (-256 MiB)" in out
    assert f"differs: {PRODUCT} 1g.10gb" not in out


def test_the_webhooks_rewrite_is_served_by_dra(dra_cluster, tmp_path):
    cp = dra_cluster
    # The classes are applied by the test above; apply them again so this one stands alone.
    with contextlib.redirect_stdout(io.StringIO()) as out:
        assert main(["dra", "deviceclasses"]) == 0
    cp.kubectl("apply", "-f", "-", input=out.getvalue())
    server = Webhook(tmp_path)
    server.start()
    config = project_webhook_configuration(server.url, server.cert.ca_bundle_b64)
    try:
        cp.kubectl("apply", "-f", str(PRIORITY_CLASSES))
        cp.apply(config)
        cp.create_namespace(WEBHOOK_NAMESPACE)
        cp.kubectl("label", "namespace", WEBHOOK_NAMESPACE, "gpu-rightsizer.io/enabled=true")
        pod = gpu_pod("llm-7b")  # nvidia.com/gpu: 1, a 7b model: the webhook picks 1g.20gb

        def rewritten(*extra: str):
            done = cp.kubectl(
                "apply", "-n", WEBHOOK_NAMESPACE, *extra, "-f", "-", input=yaml.safe_dump(pod), check=False
            )
            return done if done.returncode == 0 and "-> nvidia.com/mig-1g.20gb" in done.stderr else None

        # Wait until the API server calls the webhook (a server-side dry run persists nothing).
        wait_for(lambda: rewritten("--dry-run=server"), 60, message="the webhook to take effect")
        result = rewritten()
        assert result is not None
        assert "nvidia.com/gpu: 1 -> nvidia.com/mig-1g.20gb" in result.stderr, result.stderr
        stored = cp.get_json("pod", "llm-7b", "-n", WEBHOOK_NAMESPACE)
        assert stored["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/mig-1g.20gb"] == "1"
        wait_for(
            lambda: cp.get_json("pod", "llm-7b", "-n", WEBHOOK_NAMESPACE)["spec"].get("nodeName") == NODE,
            60,
            message=f"the rewritten pod bound to {NODE}",
        )
        claims = cp.get_json("resourceclaims", "-n", WEBHOOK_NAMESPACE)["items"]
        (claim,) = [c for c in claims if c["metadata"]["name"].startswith("llm-7b-extended-resources-")]
        results = claim["status"]["allocation"]["devices"]["results"]
        assert [(r["driver"], r["pool"], r["device"]) for r in results] == [(DRIVER, NODE, "mig-1-1g20-0")]
    finally:
        server.stop()
        cp.kubectl("delete", "mutatingwebhookconfiguration", config["metadata"]["name"], check=False)
