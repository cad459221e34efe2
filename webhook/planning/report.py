"""The density report: figures (report.json), prose (report.md), charts (PNG) and the
short terminal table. Figures are computed once, in :func:`summary`; every face of the
report prints the same dict."""

from __future__ import annotations

import json
import os
from collections import Counter

from webhook.core.catalog import MIB_PER_GIB
from webhook.planning.charts import CAPTIONS, TERMS, build_figures, save_figures
from webhook.planning.fleet import FleetPlan
from webhook.planning.geometry import memory_mib


def _pool_figures(plan: FleetPlan, pool_plan) -> dict:
    model = pool_plan.pool.model
    used = pool_plan.used_gpus
    held = [pl for pl in plan.placements if pl.unit.pool == pool_plan.pool.name]
    busy_compute = sum(
        model.compute_slices if pl.instance is None else model.profile(pl.instance.profile).compute_slices
        for pl in held
    )
    busy_memory = sum(
        model.memory_mib if pl.instance is None else model.profile(pl.instance.profile).memory_mib for pl in held
    )
    total_compute = len(used) * model.compute_slices
    total_memory = len(used) * model.memory_mib
    instance_memory = sum(memory_mib(model, g.layout) for g in used)
    stage = {s.name: {"value": s.value, "proven_optimal": s.proven, "bound": s.bound} for s in pool_plan.stages}
    return {
        "pool": pool_plan.pool.name,
        "gpu_model": model.key,
        "supply": pool_plan.supply,
        "demand": dict(sorted(pool_plan.demand.items())),
        "gpus": len(used),
        "whole_gpus": sum(not g.layout.mig_enabled for g in used),
        "lower_bound": pool_plan.lower_bound,
        "proven_optimal": pool_plan.proven_optimal,
        "gap_to_lower_bound": pool_plan.gap,
        "stages": stage,
        "reconfigurations": pool_plan.reconfigurations,
        "solve_seconds": round(pool_plan.seconds, 3),
        "slice_utilisation": round(busy_compute / total_compute, 4) if total_compute else None,
        "memory_utilisation": round(busy_memory / total_memory, 4) if total_memory else None,
        "stranded_memory_gib": round((total_memory - instance_memory) / MIB_PER_GIB, 2),
        "idle_instance_memory_gib": round((instance_memory - busy_memory) / MIB_PER_GIB, 2) if used else 0,
        "layouts": [
            {"layout": layout, "gpus": n} for layout, n in Counter(g.layout.describe() for g in used).most_common()
        ],
        "unserved": pool_plan.unserved,
    }


def summary(plan: FleetPlan) -> dict:
    workloads = Counter(w.action for w in plan.demand.workloads)
    ratio = plan.ratio
    return {
        "gpus_whole_gpu_requests": plan.whole_gpu_baseline,
        "gpus_right_sized": plan.gpu_count,
        "ratio": round(ratio, 3) if ratio else None,
        "lower_bound": plan.lower_bound,
        "proven_optimal": plan.proven_optimal,
        "pods": sum(w.replicas for w in plan.demand.workloads if w.pool),
        "workloads_by_decision": dict(sorted(workloads.items())),
        "pools": [_pool_figures(plan, p) for p in plan.pools],
        "workloads": [
            {
                "workload": w.label,
                "source": w.source,
                "replicas": w.replicas,
                "decision": w.action,
                "pool": w.pool,
                "per_replica": dict(w.per_replica),
                "message": w.message,
            }
            for w in plan.demand.workloads
        ],
        "left_over": [{"pod": u.label, "resource": u.resource, "why": why} for u, why in plan.left_over],
        "moves": [{"pod": u.label, "from": a, "to": b} for u, a, b in plan.moves()],
    }


def terminal_table(data: dict) -> str:
    lines = [
        f"{'pool':<14}{'model':<12}{'GPUs':>6}{'bound':>7}{'optimal':>9}{'slices':>8}{'memory':>8}{'stranded':>10}{'reconf':>8}"
    ]
    for p in data["pools"]:
        lines.append(
            f"{p['pool']:<14}{p['gpu_model']:<12}{p['gpus']:>6}{p['lower_bound']:>7}"
            f"{'yes' if p['proven_optimal'] else 'gap ' + str(p['gap_to_lower_bound']):>9}"
            f"{_pct(p['slice_utilisation']):>8}{_pct(p['memory_utilisation']):>8}"
            f"{p['stranded_memory_gib']:>7.1f}GiB{p['reconfigurations']:>8}"
        )
    ratio = f"{data['ratio']:.2f}x" if data["ratio"] else "n/a"
    lines.append(
        f"whole-GPU requests: {data['gpus_whole_gpu_requests']} GPUs; right-sized: {data['gpus_right_sized']} GPUs; "
        f"ratio {ratio}; lower bound {data['lower_bound']}; "
        + ("proven optimal" if data["proven_optimal"] else "NOT proven optimal (time limit)")
    )
    by_decision = data["workloads_by_decision"]
    lines.append(
        f"workloads: {sum(by_decision.values())} ({', '.join(f'{k}: {v}' for k, v in by_decision.items())}); "
        f"pods needing GPUs: {data['pods']}"
    )
    if data["left_over"]:
        lines.append(f"left over: {len(data['left_over'])} units that do not fit (listed on stderr and in the report)")
    return "\n".join(lines)


def _pct(x) -> str:
    return "-" if x is None else f"{100 * x:.0f}%"


def markdown(data: dict, charts: list[str]) -> str:
    out = ["# GPU density report", ""]
    ratio = f"{data['ratio']:.2f}x" if data["ratio"] else "n/a"
    out += [
        f"- Pods needing GPUs: {data['pods']} ({', '.join(f'{k}: {v}' for k, v in data['workloads_by_decision'].items())} workloads by webhook decision)",
        f"- GPUs with whole-GPU requests: **{data['gpus_whole_gpu_requests']}**",
        f"- GPUs with right-sized MIG slices: **{data['gpus_right_sized']}** (lower bound {data['lower_bound']}; "
        + ("proven optimal" if data["proven_optimal"] else "not proven optimal within the time limit")
        + ")",
        f"- Ratio: **{ratio}**",
        "",
        "| pool | model | supply | GPUs | lower bound | optimal | slice util. | memory util. | stranded | idle instances | reconfigured |",
        "|---|---|---|---:|---:|---|---:|---:|---:|---:|---:|",
    ]
    for p in data["pools"]:
        out.append(
            f"| {p['pool']} | {p['gpu_model']} | {p['supply']} | {p['gpus']} | {p['lower_bound']} | "
            f"{'yes' if p['proven_optimal'] else 'gap ' + str(p['gap_to_lower_bound'])} | {_pct(p['slice_utilisation'])} | "
            f"{_pct(p['memory_utilisation'])} | {p['stranded_memory_gib']:.1f} GiB | {p['idle_instance_memory_gib']:.1f} GiB | {p['reconfigurations']} |"
        )
    out += ["", "What the columns mean:", ""] + [f"- **{term}**: {text}." for term, text in TERMS.items()]
    out += ["", "## Charts"]
    for chart in charts:
        out += ["", f"![{chart}]({chart})", "", f"*{CAPTIONS[_caption_key(chart)]}*"]
    for p in data["pools"]:
        out += ["", f"## Pool {p['pool']} layouts", "", "| GPUs | layout |", "|---:|---|"]
        out += [f"| {l['gpus']} | {l['layout']} |" for l in p["layouts"]]
    out += [
        "",
        "## Workloads",
        "",
        "| workload | replicas | decision | per replica | message |",
        "|---|---:|---|---|---|",
    ]
    for w in data["workloads"]:
        per = ", ".join(f"{n}x {r}" for r, n in w["per_replica"].items()) or "-"
        out.append(
            f"| {w['workload']} | {w['replicas']} | {w['decision']} | {per} | {w['message'].replace('|', '/')} |"
        )
    if data["left_over"]:
        out += ["", "## Left over", ""] + [f"- {x['pod']} ({x['resource']}): {x['why']}" for x in data["left_over"]]
    if data["moves"]:
        out += ["", "## Pods that would move", ""] + [f"- {m['pod']}: {m['from']} -> {m['to']}" for m in data["moves"]]
    return "\n".join(out) + "\n"


def _caption_key(chart: str) -> str:
    return "layout" if chart.startswith("layout-") else chart.removesuffix(".png")


def write_report(plan: FleetPlan, directory: str) -> dict:
    os.makedirs(directory, exist_ok=True)
    data = summary(plan)
    charts = write_charts(plan, data, directory)
    with open(os.path.join(directory, "report.json"), "w", encoding="utf-8") as fh:
        json.dump(data, fh, indent=2)
        fh.write("\n")
    with open(os.path.join(directory, "report.md"), "w", encoding="utf-8") as fh:
        fh.write(markdown(data, charts))
    return data


def write_charts(plan: FleetPlan, data: dict, directory: str) -> list[str]:
    """The PNG charts (webhook/planning/charts.py) into ``directory``; their file names."""
    return save_figures(build_figures(plan, data), directory)
