"""The density report's charts, built as matplotlib Figures (``build_figures``) and then
saved (``save_figures``), so that tests can inspect what is drawn before it is a PNG.

Rules every chart keeps: each bar carries its value as text; a percentage axis stops at
100 %; a legend sits outside the plot area (below it), never on a bar; titles and axis
labels say what is counted and in which unit; each figure has a caption under it saying
what it shows, and the terms it uses are the ones ``TERMS`` defines for report.md too.
"""

from __future__ import annotations

import os
import textwrap
from collections.abc import Sequence
from typing import TYPE_CHECKING

from webhook.core.catalog import MIB_PER_GIB
from webhook.planning.geometry import memory_mib

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from webhook.planning.fleet import FleetPlan

MAX_GPU_ROWS = 64  # past this a row per GPU stops being readable
PERCENT_MAX = 100  # a share of something never passes all of it
CAPTION_FONT = 8
DPI = 100

# What report.md and the charts' captions and legends call things. "Stranded" is the
# planner's figure (webhook/planning/report.py, solver.PoolPlan.stranded_mib); the live
# view's "stranded slices" (webhook/core/capacity.py profile_use) is another count, named
# apart so the two are never confused.
TERMS = {
    "slice util.": (
        "compute slices of the instances (or whole GPUs) that hold a planned pod, as a share "
        "of all compute slices of the pool's planned GPUs (an H100 has 7)"
    ),
    "memory util.": (
        "usable memory of the instances (or whole GPUs) that hold a planned pod, as a share "
        "of the usable memory of the pool's planned GPUs counted as whole GPUs"
    ),
    "stranded": (
        "GPU memory that exists but that no pod can be given under the planned layouts, because "
        "no MIG instance provides it. Per GPU: its usable memory as one whole GPU minus the "
        "usable memory of its layout's instances (nvidia-smi mig -lgip), summed over the "
        "pool's planned GPUs; 0 for a GPU with MIG disabled. It comes from memory slices "
        "that no instance covers and from the smaller usable memory each instance gets "
        "(an H100-80GB: 79.00 GiB as a whole GPU, 78.00 GiB as 4 x 1g.20gb). The solver "
        "minimises it after the GPU count, by filling spare room with idle instances"
    ),
    "idle instances": (
        "usable memory of the MIG instances the planned layouts create but no planned pod "
        "holds: free for new pods of that profile"
    ),
    "stranded slices": (
        "a live cluster's figure, not this report's: `plan --capacity-snapshot FILE` (or "
        "`plan --kubeconfig K` without manifests) prints per pool and profile the free slices "
        "of a profile while pods that would fit them wait Pending on a smaller profile, "
        "counted as min(free slices, pods waiting on smaller profiles)"
    ),
}

_STRANDED_SHORT = "stranded: memory in no MIG instance (no pod can be given it)"
_IDLE_SHORT = "idle instances: created, no planned pod (free for new pods)"

CAPTIONS = {
    "gpus": (
        "Whole-GPU requests: GPUs the planned pods take when each gets the nvidia.com/gpu it "
        "asks for. Right-sized: GPUs the plan uses, each pod on the MIG slice the webhook "
        "gives it. Lower bound: no plan can use fewer (whole GPUs + the most of compute "
        "slices, memory slices and per-profile instance limits, divided by what one GPU holds)."
    ),
    "utilisation": (
        "Left: share of the planned GPUs' compute slices and memory held by planned pods "
        "(an instance counts whole when a pod holds it). Right: memory that holds no pod. "
        "Stranded = GPU memory that exists but that no MIG instance provides, so no pod can be "
        "given it: a GPU's memory as a whole GPU minus its instances' usable memory, summed "
        "over the planned GPUs (0 for whole GPUs). Idle instances = instances the layouts "
        "create that no planned pod holds (free for new pods)."
    ),
    "layout": (
        "One row per planned GPU (or per distinct layout in a large fleet); each MIG instance "
        "is drawn at its placement: start slice and size, as nvidia-smi mig -lgipp prints them. "
        "Hatched: an idle instance (no planned pod). Right axis: that GPU's stranded memory, "
        "the usable memory its instances do not provide."
    ),
}

# Colours with white value labels readable on them.
_WHOLE = "#6b6b6b"
_RIGHT_SIZED = "#4c7a00"
_BOUND = "#9a9a9a"
_COMPUTE = "#1f5fa8"
_MEMORY = "#c85a00"
_STRANDED = "#b2182b"
_IDLE = "#e08a2c"


def build_figures(plan: FleetPlan, data: dict) -> list[tuple[str, Figure]]:
    """(file name, Figure) for every chart of the report, drawn but not saved."""
    figures = [("gpus.png", _gpus_figure(data))]
    if data["pools"]:
        figures.append(("utilisation.png", _utilisation_figure(data)))
    for pool_plan in plan.pools:
        if pool_plan.used_gpus:
            figures.append((f"layout-{pool_plan.pool.name}.png", _layout_figure(plan, pool_plan)))
    return figures


def save_figures(figures: list[tuple[str, Figure]], directory: str) -> list[str]:
    for name, fig in figures:
        fig.savefig(os.path.join(directory, name), dpi=DPI)
    return [name for name, _ in figures]


# --- the figures ---------------------------------------------------------------------


def _new_figure(width: float, height: float, caption: str, ncols: int = 1) -> tuple[Figure, list[Axes]]:
    """A figure of two stacked parts, both laid out by constrained layout: the charts
    (``height`` inches; a legend goes under their axes) and the wrapped caption under them,
    outside every axes."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    lines = textwrap.wrap(caption, width=int(width * 15.5))
    caption_in = (len(lines) + 1) * CAPTION_FONT * 1.3 / 72
    fig = Figure(figsize=(width, height + caption_in), layout="constrained")
    FigureCanvasAgg(fig)  # Agg: files only, no display; fig.canvas.draw() lays it out
    charts, under = fig.subfigures(2, 1, height_ratios=[height, caption_in])
    under.text(0.01, 0.5, "\n".join(lines), fontsize=CAPTION_FONT, va="center", ha="left", gid="caption")
    axes = charts.subplots(1, ncols, squeeze=False)[0]
    return fig, list(axes)


def _label_bars(ax: Axes, bars: Sequence, texts: Sequence[str]) -> None:
    """Each bar's value: just above it, or just inside its top when the axis has no room
    above (a bar near the top of a percentage axis)."""
    top = ax.get_ylim()[1]
    for bar, text in zip(bars, texts):
        height = bar.get_height()
        inside = height > 0.88 * top
        ax.annotate(
            text,
            (bar.get_x() + bar.get_width() / 2, height),
            xytext=(0, -3 if inside else 3),
            textcoords="offset points",
            ha="center",
            va="top" if inside else "bottom",
            fontsize=9,
            color="white" if inside else "black",
            fontweight="bold" if inside else "normal",
        )


def _legend_below(ax: Axes, handles: Sequence, ncol: int) -> None:
    """One legend for the charts, under all their axes (constrained layout makes room)."""
    ax.figure.legend(handles=list(handles), loc="outside lower center", ncol=ncol, fontsize=8, frameon=False)


def _gpus_figure(data: dict) -> Figure:
    fig, (ax,) = _new_figure(5.5, 4.2, CAPTIONS["gpus"])
    values = [data["gpus_whole_gpu_requests"], data["gpus_right_sized"], data["lower_bound"]]
    bars = ax.bar(
        ["whole-GPU\nrequests", "right-sized\nMIG slices", "lower\nbound"],
        values,
        color=[_WHOLE, _RIGHT_SIZED, _BOUND],
        width=0.6,
    )
    ax.set_ylim(0, max(max(values), 1) * 1.15)  # room for the labels above the bars
    _label_bars(ax, bars, [str(v) for v in values])
    ax.set_ylabel("GPUs (count)")
    ratio = f": {data['ratio']:.2f}x fewer" if data["ratio"] else ""
    ax.set_title(f"GPUs needed for {data['pods']} pods{ratio}", fontsize=11)
    return fig


def _utilisation_figure(data: dict) -> Figure:
    pools = data["pools"]
    width = max(9.0, 3.0 + 2.0 * len(pools))
    fig, (left, right) = _new_figure(width, 4.2, CAPTIONS["utilisation"], ncols=2)
    names = [p["pool"] for p in pools]
    x = list(range(len(pools)))

    compute = [100 * (p["slice_utilisation"] or 0) for p in pools]
    memory = [100 * (p["memory_utilisation"] or 0) for p in pools]
    left.set_ylim(0, PERCENT_MAX)
    a = left.bar([i - 0.2 for i in x], compute, 0.4, color=_COMPUTE, label="compute slices held by pods")
    b = left.bar([i + 0.2 for i in x], memory, 0.4, color=_MEMORY, label="memory held by pods")
    _label_bars(left, a, [f"{v:.0f}%" for v in compute])
    _label_bars(left, b, [f"{v:.0f}%" for v in memory])
    left.set_xticks(x, names)
    left.set_xlabel("pool")
    left.set_ylabel("share of the planned GPUs (%)")
    left.set_title("Utilisation of the planned GPUs", fontsize=11)

    stranded = [p["stranded_memory_gib"] for p in pools]
    idle = [p["idle_instance_memory_gib"] for p in pools]
    right.set_ylim(0, max([*stranded, *idle, 1.0]) * 1.2)
    c = right.bar([i - 0.2 for i in x], stranded, 0.4, color=_STRANDED, label=_STRANDED_SHORT)
    d = right.bar([i + 0.2 for i in x], idle, 0.4, color=_IDLE, label=_IDLE_SHORT)
    _label_bars(right, c, [f"{v:.1f} GiB" for v in stranded])
    _label_bars(right, d, [f"{v:.1f} GiB" for v in idle])
    right.set_xticks(x, names)
    right.set_xlabel("pool")
    right.set_ylabel("memory holding no pod (GiB)")
    right.set_title("GPU memory holding no pod", fontsize=11)
    _legend_below(left, [a, b, c, d], ncol=2)
    return fig


def _layout_figure(plan: FleetPlan, pool_plan) -> Figure:
    from matplotlib.patches import Patch, Rectangle

    used = pool_plan.used_gpus
    model = pool_plan.pool.model
    per_gpu = len(used) <= MAX_GPU_ROWS
    busy = {(id(pl.gpu), pl.instance) for pl in plan.placements if pl.unit.pool == pool_plan.pool.name}
    # One row per GPU; a fleet too big for that gets one row per distinct layout.
    if per_gpu:
        rows = [(gpu, _gpu_name(gpu, r)) for r, gpu in enumerate(used)]
    else:
        groups: dict[tuple, list] = {}
        for gpu in used:
            groups.setdefault(gpu.layout.key, []).append(gpu)
        rows = [(gpus[0], f"{len(gpus)} GPUs") for gpus in sorted(groups.values(), key=len, reverse=True)]
    profiles = sorted(
        {i.profile for g, _ in rows for i in g.layout.instances}, key=lambda n: (model.profile(n).placement_size, n)
    )
    from matplotlib import colormaps

    palette = colormaps["tab10"]
    colours = {name: palette(i % 10) for i, name in enumerate(profiles)}
    fig, (ax,) = _new_figure(8.5, max(3.0, 1.6 + 0.28 * len(rows)), CAPTIONS["layout"])
    for row, (gpu, _) in enumerate(rows):
        y = len(rows) - 1 - row
        if not gpu.layout.mig_enabled:
            ax.add_patch(Rectangle((0, y + 0.1), model.memory_slices, 0.8, color=_WHOLE))
            ax.text(
                model.memory_slices / 2,
                y + 0.5,
                "whole GPU (MIG disabled)",
                ha="center",
                va="center",
                fontsize=7,
                color="white",
            )
            continue
        for inst in gpu.layout.instances:
            idle = per_gpu and (id(gpu), inst) not in busy
            ax.add_patch(
                Rectangle(
                    (inst.start, y + 0.1),
                    inst.size,
                    0.8,
                    facecolor=colours[inst.profile],
                    alpha=0.35 if idle else 1,
                    edgecolor="black",
                    hatch="//" if idle else None,
                    linewidth=0.5,
                )
            )
            ax.text(inst.start + inst.size / 2, y + 0.5, inst.profile, ha="center", va="center", fontsize=6)
    ax.set_xlim(0, model.memory_slices)
    ax.set_ylim(0, len(rows))
    ax.set_xticks(range(model.memory_slices + 1))
    ax.set_xlabel(f"memory slice (placement start; a {model.key} has {model.memory_slices})")
    ticks = [len(rows) - 1 - r + 0.5 for r in range(len(rows))]
    ax.set_yticks(ticks, [label for _, label in rows], fontsize=6)
    ax.set_ylabel("planned GPU" if per_gpu else "GPUs with this layout")
    stranded = ax.twinx()
    stranded.set_ylim(ax.get_ylim())
    stranded.set_yticks(
        ticks, [f"{(model.memory_mib - memory_mib(model, g.layout)) / MIB_PER_GIB:.2f}" for g, _ in rows], fontsize=6
    )
    stranded.set_ylabel("stranded per GPU (GiB)", fontsize=8)
    title = f"Pool {pool_plan.pool.name} ({model.key}): MIG layout of each planned GPU"
    if not per_gpu:
        title = f"Pool {pool_plan.pool.name} ({model.key}): {len(used)} GPUs, one row per layout"
    ax.set_title(title, fontsize=10)
    handles = []
    if any(per_gpu and (id(g), i) not in busy for g, _ in rows for i in g.layout.instances):
        handles.append(Patch(facecolor="white", edgecolor="black", hatch="//", label="idle instance (no planned pod)"))
    if any(not g.layout.mig_enabled for g, _ in rows):
        handles.append(Patch(facecolor=_WHOLE, label="whole GPU (MIG disabled)"))
    if handles:
        _legend_below(ax, handles, ncol=len(handles))
    return fig


def _gpu_name(gpu, row: int) -> str:
    return f"{gpu.node}/{gpu.index}" if gpu.node else f"gpu {row}"
