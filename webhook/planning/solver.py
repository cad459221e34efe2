"""The fleet problem: how many GPUs of each pool, with which layouts, cover the demand.

Per pool this is a small integer covering problem over the pool model's distinct
per-GPU configurations (webhook.planning.geometry). It is solved exactly with OR-Tools
CP-SAT, one objective at a time (lexicographic): fewest left-over units (only when the
supply is limited), fewest GPUs, fewest reconfigured GPUs (live nodes), least stranded
memory (memory of the planned GPUs that no instance covers). Each stage is fixed at its
best value before the next one runs, so a later stage never trades away an earlier one.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

from ortools.sat.python import cp_model

from webhook.core.errors import RightsizerError
from webhook.core.policy import Pool
from webhook.planning.geometry import WHOLE_GPU, WHOLE_LAYOUT, Layout, configurations, memory_mib


class PlanError(RightsizerError, ValueError):
    """No plan satisfies the demand with the GPUs given."""


@dataclass(frozen=True)
class LiveGpu:
    node: str
    index: int
    current: Layout | None  # None: the node's current layout is unknown
    label: str | None = None  # the node's nvidia.com/mig.config


@dataclass
class PoolProblem:
    pool: Pool
    demand: dict[str, int]  # resource (profile or WHOLE_GPU) -> units
    limit: int | None = None  # fleet sizing: at most this many GPUs (None: as many as needed)
    live: list[LiveGpu] | None = None  # live supply: exactly these GPUs
    # live: demand units running on each node now; among interchangeable GPUs the plan
    # uses those on busy nodes, so fewer pods move
    occupancy: dict[str, int] = field(default_factory=dict)


@dataclass
class PlannedGpu:
    layout: Layout
    used: bool = True
    node: str | None = None
    index: int | None = None
    current: Layout | None = None
    label: str | None = None  # the node's nvidia.com/mig.config now

    @property
    def reconfigure(self) -> bool:
        if self.node is None:
            return False  # a new fleet: nothing to reconfigure
        return self.used and (self.current is None or self.current.key != self.layout.key)


@dataclass
class StageResult:
    name: str
    value: int
    proven: bool
    bound: float


@dataclass
class PoolPlan:
    pool: Pool
    demand: dict[str, int]
    gpus: list[PlannedGpu]
    unserved: dict[str, int]
    stages: list[StageResult]
    lower_bound: int
    seconds: float
    supply: str

    @property
    def used_gpus(self) -> list[PlannedGpu]:
        return [g for g in self.gpus if g.used]

    @property
    def gpu_count(self) -> int:
        return len(self.used_gpus)

    @property
    def reconfigurations(self) -> int:
        return sum(g.reconfigure for g in self.gpus)

    @property
    def stranded_mib(self) -> int:
        model = self.pool.model
        return sum(model.memory_mib - memory_mib(model, g.layout) for g in self.used_gpus)

    @property
    def gpu_stage(self) -> StageResult | None:
        return next((s for s in self.stages if s.name == "gpus"), None)

    @property
    def proven_optimal(self) -> bool:
        """Fewest GPUs proven: the solver closed the gap, or the count meets the bound."""
        stage = self.gpu_stage
        return stage is None or stage.proven or self.gpu_count <= self.lower_bound

    @property
    def gap(self) -> int:
        stage = self.gpu_stage
        bound = max(self.lower_bound, math.ceil(stage.bound - 1e-6) if stage else 0)
        return 0 if self.proven_optimal else max(0, self.gpu_count - bound)


def lower_bound(pool: Pool, demand: dict[str, int]) -> int:
    """GPUs no layout can beat: whole GPUs, plus the MIG units' compute slices, memory
    slices and per-profile instance limits, each divided by what one GPU holds."""
    model = pool.model
    whole = demand.get(WHOLE_GPU, 0)
    compute = memory = 0
    per_profile = 0
    for name, n in demand.items():
        if name == WHOLE_GPU or n == 0:
            continue
        profile = model.profile(name)
        compute += profile.compute_slices * n
        memory += profile.placement_size * n
        per_profile = max(per_profile, math.ceil(n / profile.max_instances))
    return whole + max(math.ceil(compute / model.compute_slices), math.ceil(memory / model.memory_slices), per_profile)


def _check_demand(pool: Pool, demand: dict[str, int]) -> None:
    for name in demand:
        if name != WHOLE_GPU and pool.model.profile(name) is None:
            raise PlanError(f"pool {pool.name}: demand for {name!r}, which {pool.model.key} does not offer")


def _options(problem: PoolProblem) -> list[Layout]:
    pool = problem.pool
    options = [WHOLE_LAYOUT, *configurations(pool.model, pool.profiles)]
    known = {o.key for o in options}
    for gpu in problem.live or ():
        if gpu.current is not None and gpu.current.key not in known and gpu.current.instances:
            options.append(gpu.current)
            known.add(gpu.current.key)
    return options


def solve_pool(problem: PoolProblem, time_limit: float = 10.0, workers: int = 1) -> PoolPlan:
    started = time.perf_counter()
    pool, demand = problem.pool, {k: v for k, v in problem.demand.items() if v > 0}
    _check_demand(pool, demand)
    options = _options(problem)
    model = cp_model.CpModel()
    total_units = sum(demand.values())

    if problem.live is not None:
        supply = f"{len(problem.live)} live GPUs"
        classes: dict[object, list[LiveGpu]] = {}
        for gpu in problem.live:
            classes.setdefault(gpu.current.key if gpu.current else None, []).append(gpu)
        uses = {}  # (class key, option index) -> var
        for key, members in classes.items():
            for j in range(len(options)):
                uses[key, j] = model.NewIntVar(0, len(members), f"y_{len(uses)}")
            model.Add(sum(uses[key, j] for j in range(len(options))) <= len(members))
        limited = True
    else:
        supply = "as many GPUs as needed" if problem.limit is None else f"{problem.limit} GPUs"
        cap = total_units if problem.limit is None else min(problem.limit, total_units)
        uses = {(None, j): model.NewIntVar(0, cap, f"x_{j}") for j in range(len(options))}
        if problem.limit is not None:
            model.Add(sum(uses.values()) <= problem.limit)
        limited = problem.limit is not None

    unserved = {r: model.NewIntVar(0, n if limited else 0, f"u_{r}") for r, n in demand.items()}
    for resource, n in demand.items():
        model.Add(
            sum(
                options[j].counts.get(resource, 0) * var
                for (_, j), var in uses.items()
                if options[j].counts.get(resource)
            )
            + unserved[resource]
            >= n
        )

    gpus_expr = sum(uses.values())
    stranded = [pool.model.memory_mib - memory_mib(pool.model, o) for o in options]
    stages_def = []
    if limited:
        stages_def.append(("unserved", sum(unserved.values())))
    stages_def.append(("gpus", gpus_expr))
    if problem.live is not None:
        stages_def.append(
            ("reconfigurations", sum(var for (key, j), var in uses.items() if key is None or options[j].key != key))
        )
    stages_def.append(("stranded-MiB", sum(stranded[j] * var for (_, j), var in uses.items())))

    solver = cp_model.CpSolver()
    # One worker by default: CP-SAT's parallel portfolio may return a different optimum
    # on each run, and a config that changes between identical runs makes noisy diffs.
    solver.parameters.num_workers = workers
    stages: list[StageResult] = []
    deadline = started + time_limit
    for i, (name, expr) in enumerate(stages_def):
        model.Minimize(expr)
        # Earlier stages get most of the time: they decide the headline figures.
        remaining = max(0.05, deadline - time.perf_counter())
        solver.parameters.max_time_in_seconds = remaining / (len(stages_def) - i) * (2 if i == 0 else 1)
        status = solver.Solve(model)
        if status not in (cp_model.OPTIMAL, cp_model.FEASIBLE):
            if i == 0 and status == cp_model.INFEASIBLE:
                raise PlanError(f"pool {pool.name}: no layout covers the demand")
            if not stages:
                raise PlanError(
                    f"pool {pool.name}: the solver found no plan within {time_limit:g}s ({solver.StatusName(status)})"
                )
            break  # keep the previous stage's solution (hinted below)
        value = round(solver.ObjectiveValue())
        stages.append(StageResult(name, value, status == cp_model.OPTIMAL, solver.BestObjectiveBound()))
        values = {k: solver.Value(v) for k, v in uses.items()}
        left = {r: solver.Value(v) for r, v in unserved.items()}
        model.Add(expr <= value)
        model.ClearHints()
        for k, v in uses.items():
            model.AddHint(v, values[k])
        for r, v in unserved.items():
            model.AddHint(v, left[r])

    gpus = _expand(problem, options, values)
    plan = PoolPlan(
        pool=pool,
        demand=demand,
        gpus=gpus,
        unserved={r: n for r, n in left.items() if n},
        stages=stages,
        lower_bound=lower_bound(pool, {r: n - left[r] for r, n in demand.items()}),
        seconds=time.perf_counter() - started,
        supply=supply,
    )
    return plan


def _expand(problem: PoolProblem, options: list[Layout], values: dict) -> list[PlannedGpu]:
    if problem.live is None:
        return [
            PlannedGpu(options[j]) for (_, j), n in sorted(values.items(), key=lambda kv: kv[0][1]) for _ in range(n)
        ]
    out: list[PlannedGpu] = []
    by_class: dict[object, list[LiveGpu]] = {}
    for gpu in problem.live:
        by_class.setdefault(gpu.current.key if gpu.current else None, []).append(gpu)
    for key, members in by_class.items():
        free = sorted(members, key=lambda g: -problem.occupancy.get(g.node, 0))
        # Unchanged GPUs first, so a GPU that keeps its layout is a GPU that already has it.
        order = sorted(range(len(options)), key=lambda j: options[j].key != key)
        for j in order:
            for _ in range(values.get((key, j), 0)):
                gpu = free.pop(0)
                out.append(PlannedGpu(options[j], True, gpu.node, gpu.index, gpu.current, gpu.label))
        for gpu in free:
            out.append(PlannedGpu(gpu.current or WHOLE_LAYOUT, False, gpu.node, gpu.index, gpu.current, gpu.label))
    out.sort(key=lambda g: (g.node or "", g.index or 0))
    return out
