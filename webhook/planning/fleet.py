"""From demand and supply to a fleet plan: one solved problem per pool, then every unit
of demand (one replica's MIG instance or whole GPU) put on a concrete instance."""

from __future__ import annotations

from dataclasses import dataclass

from webhook.core.catalog import builtin_catalog
from webhook.core.policy import Policy
from webhook.planning.demand import Demand, Unit
from webhook.planning.geometry import WHOLE_GPU, Instance
from webhook.planning.solver import LiveGpu, PlanError, PlannedGpu, PoolPlan, PoolProblem, solve_pool


@dataclass
class Placement:
    unit: Unit
    gpu: PlannedGpu
    instance: Instance | None  # None: a whole GPU


@dataclass
class FleetPlan:
    policy: Policy
    demand: Demand
    pools: list[PoolPlan]
    placements: list[Placement]
    left_over: list[tuple[Unit, str]]  # unit, why
    live: bool = False

    @property
    def whole_gpu_baseline(self) -> int:
        """GPUs the planned pods take when each keeps its whole-GPU request (a slice was
        a request for 1 GPU). Left-over pods are not counted on either side."""
        left = {(id(u.workload), u.replica) for u, _ in self.left_over}
        return sum(
            _whole_gpus(w) * sum((id(w), r) not in left for r in range(w.replicas))
            for w in self.demand.workloads
            if w.pool
        )

    @property
    def gpu_count(self) -> int:
        return sum(p.gpu_count for p in self.pools)

    @property
    def lower_bound(self) -> int:
        return sum(p.lower_bound for p in self.pools)

    @property
    def proven_optimal(self) -> bool:
        return all(p.proven_optimal for p in self.pools)

    @property
    def ratio(self) -> float | None:
        return self.whole_gpu_baseline / self.gpu_count if self.gpu_count else None

    def moves(self) -> list[tuple[Unit, str, str]]:
        """Live pods that would restart: (unit, from node, to node)."""
        out = []
        reconfigured = {g.node for p in self.pools for g in p.gpus if g.reconfigure}
        seen = set()
        for pl in self.placements:
            w = pl.unit.workload
            if w.node is None or (w.label, pl.unit.replica) in seen:
                continue
            if pl.gpu.node != w.node or w.node in reconfigured:
                seen.add((w.label, pl.unit.replica))
                out.append((pl.unit, w.node, pl.gpu.node))
        return out


def _whole_gpus(workload) -> int:
    """A replica's GPUs as written, before right-sizing: each slice was a request for 1 GPU."""
    return sum(n for _, n in workload.per_replica)


def parse_gpus(spec: str | None, policy: Policy) -> dict[str, int]:
    """`--gpus h100-80=16,H200-141GB=8` -> pool name -> GPUs. A catalog model key (or GPU
    product name) stands for the one pool of that model."""
    out: dict[str, int] = {}
    if not spec:
        return out
    catalog = builtin_catalog()
    for part in spec.split(","):
        name, sep, count = part.strip().partition("=")
        if not sep or not count.strip().isdigit():
            raise PlanError(f"--gpus: {part.strip()!r} is not NAME=COUNT (e.g. h100-80=16)")
        name = name.strip()
        pools = [p for p in policy.pools if p.name == name]
        if not pools:
            model = catalog.lookup(name)
            pools = [p for p in policy.pools if model is not None and p.model.key == model.key]
        if not pools:
            raise PlanError(
                f"--gpus: {name!r} is neither a pool nor the GPU model of one; pools: "
                + ", ".join(f"{p.name} ({p.model.key})" for p in policy.pools)
            )
        if len(pools) > 1:
            raise PlanError(
                f"--gpus: {name!r} is the model of several pools ({', '.join(p.name for p in pools)}); name the pool"
            )
        out[pools[0].name] = int(count)
    return out


def plan_fleet(
    demand: Demand,
    policy: Policy,
    limits: dict[str, int] | None = None,
    live: dict[str, list[LiveGpu]] | None = None,
    time_limit: float = 10.0,
    workers: int = 1,
) -> FleetPlan:
    limits = limits or {}
    counts = demand.counts()
    pools = []
    for pool in policy.pools:
        pool_demand = counts.get(pool.name, {})
        gpus = (live or {}).get(pool.name)
        if live is not None and gpus is None:
            gpus = []
        if not pool_demand and not gpus:
            continue
        occupancy: dict[str, int] = {}
        for unit in demand.units:
            if unit.pool == pool.name and unit.workload.node:
                occupancy[unit.workload.node] = occupancy.get(unit.workload.node, 0) + 1
        problem = PoolProblem(pool, pool_demand, limit=limits.get(pool.name), live=gpus, occupancy=occupancy)
        pools.append(solve_pool(problem, time_limit=time_limit / max(1, len(policy.pools)), workers=workers))
    placements, left_over = _place(demand.units, pools)
    return FleetPlan(policy, demand, pools, placements, left_over, live=live is not None)


def _place(units: list[Unit], pools: list[PoolPlan]) -> tuple[list[Placement], list[tuple[Unit, str]]]:
    placements, left_over = [], []
    by_pool = {p.pool.name: p for p in pools}
    for pool_name in dict.fromkeys(u.pool for u in units):
        plan = by_pool[pool_name]
        # free slots per resource, GPUs that keep their layout first (their pods stay put)
        slots: dict[str, list[tuple[PlannedGpu, Instance | None]]] = {}
        for gpu in sorted(plan.used_gpus, key=lambda g: g.reconfigure):
            if not gpu.layout.mig_enabled:
                slots.setdefault(WHOLE_GPU, []).append((gpu, None))
            for inst in gpu.layout.instances:
                slots.setdefault(inst.profile, []).append((gpu, inst))
        pods: dict[tuple, list[Unit]] = {}
        for unit in units:
            if unit.pool == pool_name:
                pods.setdefault((id(unit.workload), unit.replica), []).append(unit)
        # A pod is placed whole or not at all (half a 2-GPU pod does not run). Live pods
        # first try to stay on their node; then any free slots.
        ordered = sorted(pods.values(), key=lambda us: us[0].workload.node is None)
        for pod_units in ordered:
            node = pod_units[0].workload.node
            taken = _take(slots, pod_units, node) if node else None
            taken = taken or _take(slots, pod_units, None)
            if taken is None:
                left_over.extend((u, _why(plan, u.resource)) for u in pod_units)
            else:
                placements.extend(Placement(u, gpu, inst) for u, (gpu, inst) in zip(pod_units, taken))
    return placements, left_over


def _take(slots: dict, pod_units: list[Unit], node: str | None):
    """Remove and return one free slot per unit (on ``node`` when given), or None."""
    taken = []
    for unit in pod_units:
        free = slots.get(unit.resource, [])
        i = next((i for i, (g, _) in enumerate(free) if node is None or g.node == node), None)
        if i is None:
            for u, slot in zip(pod_units, taken):  # give back what this pod took
                slots[u.resource].insert(0, slot)
            return None
        taken.append(free.pop(i))
    return taken


def _why(plan: PoolPlan, resource: str) -> str:
    what = "whole GPU" if resource == WHOLE_GPU else f"{resource} instance"
    return (
        f"does not fit: pool {plan.pool.name} has {plan.supply}; with the rest of the demand planned no "
        f"{what} is free for it (pool demand {plan.demand.get(resource, 0)}, "
        f"{plan.unserved.get(resource, 0)} unserved; the plan serves as many units as the GPUs hold)"
    )
