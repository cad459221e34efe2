"""`gpu-rightsizer plan --kubeconfig` against a real kube-apiserver with fake GPU nodes."""

from __future__ import annotations

import json

import yaml
from controlplane import wait_for

from webhook.cli.main import main

OPTED_IN = "plan-live"
OTHER = "plan-live-off"
H100 = "NVIDIA-H100-80GB-HBM3"


def _pod(name, namespace, resources, annotations=None):
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace, "annotations": annotations or {}},
        "spec": {"containers": [{"name": "c", "image": "registry.invalid/none", "resources": {"limits": resources}}]},
    }


def test_plan_reads_opted_in_pods_and_gpu_nodes(control_plane, tmp_path, capsys):
    cp = control_plane
    cp.create_namespace(OPTED_IN)
    cp.kubectl("label", "namespace", OPTED_IN, "gpu-rightsizer.io/enabled=true")
    cp.create_namespace(OTHER)
    cp.make_fake_gpu_node(
        "plan-gpu-a",
        labels={
            "nvidia.com/gpu.product": H100,
            "nvidia.com/gpu.count": "2",
            "nvidia.com/mig.config": "all-1g.10gb",
            "nvidia.com/mig.strategy": "mixed",
            "nvidia.com/mig.capable": "true",
        },
        allocatable={"nvidia.com/mig-1g.10gb": "14"},
    )
    cp.make_fake_gpu_node(
        "plan-gpu-b",
        labels={
            "nvidia.com/gpu.product": H100,
            "nvidia.com/gpu.count": "1",
            "nvidia.com/mig.config": "all-disabled",
            "nvidia.com/mig.strategy": "mixed",
        },
        allocatable={"nvidia.com/gpu": "1"},
    )
    cp.apply(
        # admitted through the webhook earlier: holds its slice
        _pod("admitted", OPTED_IN, {"nvidia.com/mig-1g.10gb": "1"}, {"gpu-rightsizer.io/assigned-profile": "1g.10gb"}),
        # never admitted through us: the planner sizes it with the webhook's decision (13B fp16 -> 3g.40gb)
        _pod("sized", OPTED_IN, {"nvidia.com/gpu": "1"}, {"gpu-rightsizer.io/model-size": "13b"}),
        # namespace not opted in: not the planner's business
        _pod("elsewhere", OTHER, {"nvidia.com/gpu": "1"}, {"gpu-rightsizer.io/model-size": "70b"}),
    )

    def scheduled() -> bool:
        pods = cp.get_json("pods", "-n", OPTED_IN)["items"]
        return len(pods) == 2 and all(p["spec"].get("nodeName") for p in pods)

    wait_for(scheduled, 60, message="the scheduler binds both pods to the fake GPU nodes")
    nodes = {p["metadata"]["name"]: p["spec"]["nodeName"] for p in cp.get_json("pods", "-n", OPTED_IN)["items"]}
    assert nodes == {"admitted": "plan-gpu-a", "sized": "plan-gpu-b"}

    report = tmp_path / "report"
    code = main(["plan", "--kubeconfig", str(cp.kubeconfig), "--report", str(report)])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert (
        "node plan-gpu-a: 2 GPUs in pool h100-80; current layout from nvidia.com/mig.config=all-1g.10gb" in captured.err
    )
    assert (
        "node plan-gpu-b: 1 GPUs in pool h100-80; current layout from nvidia.com/mig.config=all-disabled"
        in captured.err
    )

    data = json.loads((report / "report.json").read_text())
    workloads = {w["workload"]: w for w in data["workloads"]}
    assert set(workloads) == {f"Pod/{OPTED_IN}/admitted", f"Pod/{OPTED_IN}/sized"}
    assert workloads[f"Pod/{OPTED_IN}/admitted"]["decision"] == "assigned"
    assert workloads[f"Pod/{OPTED_IN}/sized"]["per_replica"] == {"3g.40gb": 1}
    # one GPU holds a 3g.40gb and a 1g.10gb; no GPU has both now, so exactly one changes
    pool = data["pools"][0]
    assert pool["gpus"] == 1 and pool["reconfigurations"] == 1 and pool["proven_optimal"]

    labels = [l for l in captured.out.splitlines() if l.startswith("kubectl label node ")]
    assert len(labels) == 1, captured.out
    node, value = labels[0].split()[3], labels[0].split()[4].split("=", 1)[1]
    config = yaml.safe_load((report / "mig-parted-config.yaml").read_text())
    assert config["version"] == "v1" and value in config["mig-configs"]
    entries = config["mig-configs"][value]
    devices = [e["mig-devices"] for e in entries if e["mig-enabled"]]
    assert any(d.get("3g.40gb") == 1 and d.get("1g.10gb", 0) >= 1 for d in devices)
    # both pods restart: one on the reconfigured node, the other moves onto it
    moved = {m["pod"] for m in data["moves"]}
    assert moved == {f"Pod/{OPTED_IN}/admitted", f"Pod/{OPTED_IN}/sized"}

    # the printed command is a real kubectl command the API server accepts
    cp.kubectl(*labels[0].split()[1:])
    assert cp.get_json("node", node)["metadata"]["labels"]["nvidia.com/mig.config"] == value
