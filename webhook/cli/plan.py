"""`gpu-rightsizer plan`: MIG layouts for a demand, a mig-parted config, a density report.

Demand comes from manifests (sized by the webhook's own decision) and/or a live cluster;
supply is "as many GPUs as needed", `--gpus POOL=N,...`, or the live GPU nodes.
Exit status: 0 planned, 1 some demand is left over or the webhook would refuse a workload, 2 bad input.
"""

from __future__ import annotations

import os
import sys

from webhook.cli.common import add_capacity_arguments, add_policy_argument, capacity_view_or_exit, policy_or_exit
from webhook.core.capacity import profile_use
from webhook.core.constants import MIG_CONFIG_LABEL
from webhook.planning import live as live_labels
from webhook.planning import migparted
from webhook.planning.demand import Demand, DemandError, demand_from_manifests
from webhook.planning.fleet import FleetPlan, parse_gpus, plan_fleet
from webhook.planning.geometry import WHOLE_GPU
from webhook.planning.report import summary, terminal_table, write_report
from webhook.planning.solver import PlanError


def add_arguments(parser) -> None:
    parser.add_argument(
        "paths",
        nargs="*",
        metavar="FILE_OR_DIR",
        help="manifests (YAML/JSON, multi-document; directories are read recursively)",
    )
    add_policy_argument(parser)
    parser.add_argument(
        "--kubeconfig", metavar="K", help="read pods of opted-in namespaces and GPU nodes from this cluster"
    )
    parser.add_argument("--in-cluster", action="store_true", help="as --kubeconfig, with the pod's service account")
    parser.add_argument(
        "--gpus",
        metavar="POOL=N,...",
        help="GPUs each pool has (pool name or GPU model); unnamed pools: as many as needed",
    )
    parser.add_argument(
        "--mig-config",
        metavar="FILE",
        help="the mig-parted config the cluster uses now (to read nodes' nvidia.com/mig.config)",
    )
    parser.add_argument(
        "--time-limit",
        type=float,
        default=10.0,
        metavar="SECONDS",
        help="solver time limit for the whole plan (default 10)",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=1,
        metavar="N",
        help="CP-SAT search workers (default 1: the same input gives the same plan; more can be faster but may pick another optimum)",
    )
    parser.add_argument(
        "--report", metavar="DIR", help="write report.md, report.json, PNG charts and the mig-parted config here"
    )
    add_capacity_arguments(parser, kubeconfig=False)
    parser.add_argument(
        "--config-out", metavar="FILE", help="write the mig-parted config here (default: printed after the table)"
    )


def _fail(message: str) -> int:
    print(f"gpu-rightsizer: {message}", file=sys.stderr)
    return 2


def run(args) -> int:
    policy = policy_or_exit(args.policy)
    if args.capacity_snapshot or (args.kubeconfig and not args.paths):
        _stranded(
            policy, capacity_view_or_exit(args.capacity_snapshot, None if args.capacity_snapshot else args.kubeconfig)
        )
        if args.capacity_snapshot and not args.paths and not args.kubeconfig and not args.in_cluster:
            return 0
    live_mode = bool(args.kubeconfig or args.in_cluster)
    if not args.paths and not live_mode:
        return _fail("plan needs manifests (FILE_OR_DIR...) or a cluster (--kubeconfig K / --in-cluster)")
    if args.workers < 1:
        return _fail(f"--workers: {args.workers} is not a positive number of workers")
    if args.time_limit <= 0:
        return _fail(f"--time-limit: {args.time_limit:g} is not a positive number of seconds")
    try:
        limits = parse_gpus(args.gpus, policy)
        demand = demand_from_manifests(args.paths, policy) if args.paths else Demand()
        supply = notes = None
        if live_mode:
            if args.gpus:
                return _fail("--gpus and a live cluster exclude each other: the cluster's nodes are the supply")
            supply, notes = _live(args, policy, demand)
    except (DemandError, PlanError, ValueError, OSError) as err:
        return _fail(str(err))
    except Exception as err:  # noqa: BLE001 - the kubernetes client's many errors: name them, no traceback
        if not type(err).__module__.startswith(("kubernetes", "urllib3")):
            raise
        return _fail(f"cannot read the cluster: {type(err).__name__}: {str(err).strip().splitlines()[0][:300]}")

    refused = [w for w in demand.workloads if w.action == "deny"]  # what the webhook would refuse
    for w in demand.workloads:
        if w.action in ("deny", "invalid"):
            print(f"gpu-rightsizer: {w.label} ({w.source}): not planned: {w.action}: {w.message}", file=sys.stderr)
        elif w.action in ("unchanged", "whole-gpu", "ignore") and any(r == WHOLE_GPU for r, _ in w.per_replica):
            print(f"gpu-rightsizer: {w.label}: keeps whole GPUs ({w.action}): {w.message}", file=sys.stderr)
    for note in notes or ():
        print(f"gpu-rightsizer: {note}", file=sys.stderr)
    if not demand.units:
        read = len(demand.workloads)
        print(
            f"gpu-rightsizer: nothing to plan: {read} workload(s) read, none needs a GPU "
            "(no nvidia.com/gpu request, skipped, refused or zero replicas)"
        )
        return 1 if refused else 0
    try:
        plan = plan_fleet(demand, policy, limits, supply, time_limit=args.time_limit, workers=args.workers)
    except PlanError as err:
        return _fail(str(err))

    data = summary(plan)
    print(terminal_table(data))
    config, labels = build_config(plan)
    if not plan.live:
        for pool_plan in plan.pools:
            for name, (layout, n) in migparted.layout_counts([g.layout for g in pool_plan.used_gpus]).items():
                print(f"  {pool_plan.pool.name}: {n:>4} GPUs  {name}  ({layout.describe()})")
    text = (
        "# mig-parted config written by gpu-rightsizer plan (apply with the GPU operator's mig-manager)\n"
        + migparted.dump(config)
    )
    try:
        _write_outputs(args, plan, text, labels)
    except OSError as err:
        return _fail(f"cannot write the report or config: {err}")
    for line in labels:
        print(line)
    for m in data["moves"]:
        print(f"move: {m['pod']}: {m['from']} -> {m['to']}")
    for item in data["left_over"]:
        print(f"left over: {item['pod']} ({item['resource']}): {item['why']}", file=sys.stderr)
    return 1 if data["left_over"] or refused else 0


def _write_outputs(args, plan: FleetPlan, text: str, labels: list[str]) -> None:
    if args.report:
        write_report(plan, args.report)
        with open(os.path.join(args.report, "mig-parted-config.yaml"), "w", encoding="utf-8") as fh:
            fh.write(text)
        if labels:
            with open(os.path.join(args.report, "label-nodes.sh"), "w", encoding="utf-8") as fh:
                fh.write("#!/bin/sh\nset -e\n" + "\n".join(labels) + "\n")
        print(f"report: {os.path.join(args.report, 'report.md')}")
    if args.config_out:
        with open(args.config_out, "w", encoding="utf-8") as fh:
            fh.write(text)
    elif not args.report:
        print(text, end="")


def _live(args, policy, demand: Demand):
    known = None
    if args.mig_config:
        with open(args.mig_config, encoding="utf-8") as fh:
            known = migparted.parse_config_file(fh.read())
    api = live_labels.api_client(args.kubeconfig)
    try:
        pods, nodes = live_labels.read_cluster(api)
    finally:
        api.close()
    demand.workloads[:0] = live_labels.demand_from_pods(pods, policy).workloads
    return live_labels.supply_from_nodes(nodes, policy, known)


def build_config(plan: FleetPlan) -> tuple[dict, list[str]]:
    """(mig-parted document, `kubectl label` lines for live nodes whose config changes)."""
    if not plan.live:
        layouts = [g.layout for p in plan.pools for g in p.used_gpus]
        return migparted.document(migparted.config_for_layouts(layouts)), []
    configs: dict[str, list[dict]] = {}
    labels = []
    by_node: dict[str, list] = {}
    for pool_plan in plan.pools:
        for gpu in pool_plan.gpus:
            by_node.setdefault(gpu.node, []).append(gpu)
    for node, gpus in sorted(by_node.items()):
        gpus.sort(key=lambda g: g.index)
        if not any(g.reconfigure for g in gpus):
            continue  # keeps its layout and its label
        name, entries = migparted.config_for_node([g.layout for g in gpus])
        configs[name] = entries
        if gpus[0].label != name:
            labels.append(f"kubectl label node {node} {MIG_CONFIG_LABEL}={name} --overwrite")
    return migparted.document(configs), labels


def _stranded(policy, view) -> None:
    """Free, waiting and stranded slices per pool and profile, now."""
    print(f"{'pool':<16} {'profile':<12} {'slices':>7} {'free':>6} {'waiting':>8} {'stranded':>9}")
    for row in profile_use(view, policy):
        if row.total or row.waiting:
            print(f"{row.pool:<16} {row.profile:<12} {row.total:>7} {row.free:>6} {row.waiting:>8} {row.stranded:>9}")
    print(
        "stranded: free slices of a profile while pods that would fit them wait Pending on a smaller one "
        "(capacity.mode prefer-free would route them there)"
    )
