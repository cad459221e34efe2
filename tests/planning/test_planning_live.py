"""The pure parts of reading a cluster: pods -> demand, nodes -> GPUs and their layouts.
(tests/e2e/test_plan_live.py runs the whole thing against a real API server.)"""

from webhook.core.policy import default_policy
from webhook.planning.geometry import WHOLE_GPU, WHOLE_LAYOUT, realise
from webhook.planning.live import demand_from_pods, gpus_of_node, layout_of_config_name, supply_from_nodes

POLICY = default_policy()
H100 = POLICY.pools[0].model


def _node(name, labels, allocatable):
    return {"metadata": {"name": name, "labels": labels}, "status": {"allocatable": allocatable}}


def _pod(name, limits, annotations=None, phase="Running", node="n1"):
    return {
        "metadata": {"name": name, "namespace": "ml", "annotations": annotations or {}},
        "spec": {"nodeName": node, "containers": [{"name": "c", "resources": {"limits": limits}}]},
        "status": {"phase": phase},
    }


def test_standard_mig_parted_names():
    assert layout_of_config_name("all-disabled", H100) == WHOLE_LAYOUT
    assert layout_of_config_name("all-1g.10gb", H100).counts == {"1g.10gb": 7}
    assert layout_of_config_name("all-3g.40gb", H100).counts == {"3g.40gb": 2}
    assert layout_of_config_name("all-1g.10gb.me", H100).counts == {"1g.10gb+me": 1}
    assert layout_of_config_name("all-balanced", H100).counts == {"1g.10gb": 2, "2g.20gb": 1, "3g.40gb": 1}
    assert layout_of_config_name("all-enabled", H100).instances == ()
    assert layout_of_config_name("somebody-elses", H100) is None


def test_planner_names_and_config_file_entries_read_back():
    layout = realise(H100, {"3g.40gb": 1, "1g.20gb": 2})
    from webhook.planning.migparted import config_for_node, layout_name

    assert layout_of_config_name(layout_name(layout), H100).key == layout.key
    name, entries = config_for_node([layout, WHOLE_LAYOUT])
    read = layout_of_config_name(name, H100, {name: entries})
    assert [l.key for l in read] == [layout.key, WHOLE_LAYOUT.key]


def test_node_layout_from_label_then_allocatable():
    labels = {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3", "nvidia.com/gpu.count": "2"}
    pool, gpus, how = gpus_of_node(_node("a", {**labels, "nvidia.com/mig.config": "all-2g.20gb"}, {}), POLICY)
    assert pool.name == "h100-80" and [g.current.counts for g in gpus] == [{"2g.20gb": 3}] * 2 and "mig.config" in how
    # unknown label: mixed-strategy allocatable, spread evenly over the MIG GPUs
    _, gpus, how = gpus_of_node(
        _node(
            "b", {**labels, "nvidia.com/mig.config": "custom"}, {"nvidia.com/gpu": "1", "nvidia.com/mig-3g.40gb": "2"}
        ),
        POLICY,
    )
    assert [g.current.counts for g in gpus] == [{WHOLE_GPU: 1}, {"3g.40gb": 2}] and how == "status.allocatable"
    # nothing to go on: unknown, so every use counts as a reconfiguration
    _, gpus, how = gpus_of_node(_node("c", labels, {"nvidia.com/mig-1g.10gb": "3"}), POLICY)
    assert [g.current for g in gpus] == [None, None] and how.startswith("unknown")


def test_single_strategy_product_and_non_gpu_nodes():
    nodes = [
        _node(
            "s",
            {
                "nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3-MIG-1g.10gb",
                "nvidia.com/gpu.count": "1",
                "nvidia.com/mig.config": "all-1g.10gb",
                "nvidia.com/mig.strategy": "single",
            },
            {"nvidia.com/gpu": "7"},
        ),
        _node("cpu", {}, {"cpu": "8"}),
        _node("t4", {"nvidia.com/gpu.product": "Tesla-T4", "nvidia.com/gpu.count": "1"}, {"nvidia.com/gpu": "1"}),
    ]
    supply, notes = supply_from_nodes(nodes, POLICY)
    assert [(g.node, g.current.counts) for g in supply["h100-80"]] == [("s", {"1g.10gb": 7})]
    assert any("t4" in n and "no pool matches" in n for n in notes) and not any("cpu" in n for n in notes)


def test_pods_keep_their_slice_or_get_the_decision():
    pods = [
        _pod("held", {"nvidia.com/mig-2g.20gb": "1"}, {"gpu-rightsizer.io/assigned-profile": "2g.20gb"}),
        _pod("fresh", {"nvidia.com/gpu": "1"}, {"gpu-rightsizer.io/model-size": "7b"}),
        _pod("whole", {"nvidia.com/gpu": "2"}),
        _pod("done", {"nvidia.com/gpu": "1"}, {"gpu-rightsizer.io/model-size": "7b"}, phase="Succeeded"),
    ]
    demand = demand_from_pods(pods, POLICY)
    by = {w.name: w for w in demand.workloads}
    assert set(by) == {"held", "fresh", "whole"}
    assert (
        by["held"].action == "assigned" and dict(by["held"].per_replica) == {"2g.20gb": 1} and by["held"].node == "n1"
    )
    assert by["fresh"].action == "rewrite" and dict(by["fresh"].per_replica) == {"1g.20gb": 1}
    assert dict(by["whole"].per_replica) == {WHOLE_GPU: 2}


def test_a_slice_no_pool_has_is_reported_not_resized():
    demand = demand_from_pods([_pod("odd", {"nvidia.com/mig-1g.5gb": "1"})], POLICY)
    w = demand.workloads[0]
    assert (
        w.action == "invalid"
        and "nvidia.com/mig-1g.5gb, which no pool's GPU model has" in w.message
        and not demand.units
    )
