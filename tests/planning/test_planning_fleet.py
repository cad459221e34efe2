import pytest

from tests.support.layouts import layout_problems
from webhook.core.policy import default_policy
from webhook.planning.demand import Demand, Workload
from webhook.planning.fleet import parse_gpus, plan_fleet
from webhook.planning.geometry import WHOLE_GPU, realise
from webhook.planning.solver import LiveGpu, PlanError

POLICY = default_policy()
H100 = POLICY.pools[0].model


def _w(name, per_replica, replicas=1, node=None):
    return Workload(
        "t", "Pod", "ns", name, replicas, "rewrite", "", "h100-80", tuple(sorted(per_replica.items())), node
    )


def test_every_unit_lands_on_a_distinct_valid_instance():
    demand = Demand(
        [_w("a", {"1g.10gb": 1}, 9), _w("b", {"3g.40gb": 1}, 3), _w("c", {WHOLE_GPU: 2}, 2), _w("d", {"2g.20gb": 2})]
    )
    plan = plan_fleet(demand, POLICY)
    assert not plan.left_over and len(plan.placements) == len(demand.units)
    seen = set()
    for p in plan.placements:
        key = (id(p.gpu), p.instance)
        assert key not in seen
        seen.add(key)
        if p.instance is None:
            assert p.unit.resource == WHOLE_GPU and not p.gpu.layout.mig_enabled
        else:
            assert p.instance.profile == p.unit.resource and p.instance in p.gpu.layout.instances
            assert layout_problems(H100.key, [(i.profile, i.start, i.size) for i in p.gpu.layout.instances]) == []
    assert plan.whole_gpu_baseline == 9 + 3 + 4 + 2


def test_a_pod_is_placed_whole_or_left_over_whole():
    demand = Demand([_w("big", {WHOLE_GPU: 2})])
    plan = plan_fleet(demand, POLICY, {"h100-80": 1})
    assert plan.placements == [] and [u.label for u, _ in plan.left_over] == ["Pod/ns/big", "Pod/ns/big"]
    assert "does not fit: pool h100-80 has 1 GPUs" in plan.left_over[0][1]


def test_live_pods_stay_put_when_their_node_keeps_its_layout():
    seven = realise(H100, {"1g.10gb": 7})
    live = {"h100-80": [LiveGpu("n1", 0, seven, "all-1g.10gb"), LiveGpu("n2", 0, seven, "all-1g.10gb")]}
    demand = Demand([_w("p", {"1g.10gb": 1}, node="n2")])
    plan = plan_fleet(demand, POLICY, live=live)
    assert plan.gpu_count == 1 and plan.placements[0].gpu.node == "n2" and plan.moves() == []


def test_parse_gpus():
    assert parse_gpus("h100-80=16", POLICY) == {"h100-80": 16}
    assert parse_gpus("NVIDIA-H100-80GB-HBM3=4", POLICY) == {"h100-80": 4}
    with pytest.raises(PlanError, match="'x=y' is not NAME=COUNT"):
        parse_gpus("x=y", POLICY)
