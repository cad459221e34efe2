import functools
import random

import pytest

from tests.support.layouts import count_vectors, layout_problems
from webhook.core.policy import compile_policy, default_policy
from webhook.planning.geometry import WHOLE_GPU, realise
from webhook.planning.solver import LiveGpu, PlanError, PoolProblem, StageResult, lower_bound, solve_pool

POOL = default_policy().pools[0]
NAMES = [p.name for p in POOL.profiles]


@functools.cache
def _vectors(model_key="H100-80GB", names=tuple(NAMES)):
    return [dict(v) for v in count_vectors(model_key, list(names))]


def brute_force_gpus(demand: dict[str, int], model_key="H100-80GB", names=tuple(NAMES)) -> int:
    """Fewest GPUs by exhaustive search over the independently enumerated per-GPU sets."""
    keys = sorted(k for k in demand if k != WHOLE_GPU)
    vectors = [tuple(v.get(k, 0) for k in keys) for v in _vectors(model_key, names)]

    @functools.cache
    def best(rest: tuple[int, ...]) -> int:
        if not any(rest):
            return 0
        first = next(i for i, n in enumerate(rest) if n)
        return 1 + min(best(tuple(max(0, r - c) for r, c in zip(rest, v))) for v in vectors if v[first])

    return demand.get(WHOLE_GPU, 0) + best(tuple(demand[k] for k in keys))


def check_plan(plan, demand):
    covered: dict[str, int] = {}
    for gpu in plan.used_gpus:
        if gpu.layout.mig_enabled:
            assert layout_problems("H100-80GB", [(i.profile, i.start, i.size) for i in gpu.layout.instances]) == []
        for resource, n in gpu.layout.counts.items():
            covered[resource] = covered.get(resource, 0) + n
    for resource, n in demand.items():
        assert covered.get(resource, 0) + plan.unserved.get(resource, 0) >= n


@pytest.mark.parametrize("seed", range(25))
def test_gpu_count_equals_brute_force_optimum(seed):
    rng = random.Random(seed)
    demand = {}
    for name in rng.sample(NAMES, rng.randint(1, 4)):
        demand[name] = rng.randint(1, 5)
    if rng.random() < 0.3:
        demand[WHOLE_GPU] = rng.randint(1, 2)
    plan = solve_pool(PoolProblem(POOL, demand), time_limit=10)
    check_plan(plan, demand)
    assert plan.gpu_count == brute_force_gpus(demand), demand
    assert plan.proven_optimal and plan.gap == 0
    assert plan.gpu_count >= lower_bound(POOL, demand)


@pytest.mark.parametrize("model_key", ["A30-24GB", "A100-40GB", "H200-141GB"])
@pytest.mark.parametrize("seed", range(6))
def test_other_models_match_brute_force(model_key, seed):
    policy = compile_policy({"pools": [{"name": "p", "gpuModel": model_key}]})
    pool = policy.pools[0]
    names = tuple(p.name for p in pool.profiles)
    rng = random.Random(seed)
    demand = {name: rng.randint(1, 4) for name in rng.sample(names, min(3, len(names)))}
    plan = solve_pool(PoolProblem(pool, demand), time_limit=10)
    for gpu in plan.used_gpus:
        assert layout_problems(model_key, [(i.profile, i.start, i.size) for i in gpu.layout.instances]) == []
    assert plan.gpu_count == brute_force_gpus(demand, model_key, names), demand


def test_gap_is_reported_when_the_search_stops_early():
    plan = solve_pool(PoolProblem(POOL, {"1g.10gb": 1}))
    plan.stages[0] = StageResult("gpus", 3, proven=False, bound=2.0)
    plan.lower_bound = 1
    plan.gpus = plan.gpus * 3
    assert not plan.proven_optimal and plan.gap == 1


def test_reference_mix_meets_its_lower_bound():
    # examples/reference-mix as the webhook sizes it (test_planning_demand.test_reference_mix_sizes).
    demand = {"1g.10gb": 15, "1g.20gb": 60, "3g.40gb": 20, WHOLE_GPU: 10}
    plan = solve_pool(PoolProblem(POOL, demand))
    check_plan(plan, demand)
    # 10 whole GPUs + ceil((15 x 1 + 60 x 2 + 20 x 4) memory slices / 8) = 10 + 27
    assert lower_bound(POOL, demand) == 37 and plan.gpu_count == 37 and plan.proven_optimal


def test_stranded_memory_is_minimised_after_gpu_count():
    # One 1g.10gb fits anywhere; the least stranded layout fills the GPU with spare instances.
    plan = solve_pool(PoolProblem(POOL, {"1g.10gb": 1}))
    assert plan.gpu_count == 1
    layout = plan.used_gpus[0].layout
    assert plan.stranded_mib == min(
        POOL.model.memory_mib - sum(POOL.model.profile(p).memory_mib * n for p, n in v.items())
        for v in _vectors()
        if v.get("1g.10gb")
    )
    assert layout.counts.get("1g.10gb", 0) >= 1


def test_limited_supply_reports_left_over_units():
    plan = solve_pool(PoolProblem(POOL, {"3g.40gb": 5}, limit=2))
    assert plan.gpu_count == 2 and plan.unserved == {"3g.40gb": 1}


def test_no_supply_at_all_leaves_everything_over():
    plan = solve_pool(PoolProblem(POOL, {"1g.10gb": 3}, limit=0))
    assert plan.gpu_count == 0 and plan.unserved == {"1g.10gb": 3}


def test_demand_for_a_profile_the_model_lacks_is_a_clear_error():
    with pytest.raises(PlanError, match="pool h100-80: demand for '1g.5gb'"):
        solve_pool(PoolProblem(POOL, {"1g.5gb": 1}))


def test_live_supply_prefers_gpus_that_keep_their_layout():
    seven = realise(POOL.model, {"1g.10gb": 7})
    two = realise(POOL.model, {"3g.40gb": 2})
    live = [
        LiveGpu("n1", 0, seven, "all-1g.10gb"),
        LiveGpu("n1", 1, seven, "all-1g.10gb"),
        LiveGpu("n2", 0, two, "all-3g.40gb"),
    ]
    plan = solve_pool(PoolProblem(POOL, {"1g.10gb": 7, "3g.40gb": 1}, live=live))
    assert plan.gpu_count == 2 and plan.reconfigurations == 0
    used = {(g.node, g.index) for g in plan.used_gpus}
    assert ("n2", 0) in used and len(used & {("n1", 0), ("n1", 1)}) == 1


def test_live_supply_reconfigures_only_what_it_must():
    seven = realise(POOL.model, {"1g.10gb": 7})
    live = [LiveGpu("n1", i, seven, "all-1g.10gb") for i in range(2)]
    plan = solve_pool(PoolProblem(POOL, {"3g.40gb": 2, "1g.10gb": 3}, live=live))
    assert plan.gpu_count == 2 and plan.reconfigurations == 1
