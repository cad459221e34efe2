"""The density report's charts and words: the matplotlib Figures are inspected before they
are saved (not pixels): every bar carries its value, a percentage axis stops at 100 %,
no legend or caption covers a bar, titles and axis labels name what and the unit, and
"stranded" is defined in the chart and in report.md exactly as it is counted."""

import functools
import re
from pathlib import Path

import pytest

from webhook.core.policy import default_policy, parse_policy_yaml
from webhook.planning.charts import CAPTIONS, TERMS, build_figures
from webhook.planning.demand import Demand, Workload, demand_from_manifests
from webhook.planning.fleet import plan_fleet
from webhook.planning.geometry import WHOLE_GPU, memory_mib
from webhook.planning.report import markdown, summary, write_report

MIX = Path(__file__).resolve().parents[2] / "examples" / "reference-mix"
TWO_POOLS = parse_policy_yaml(
    """
pools:
  - {name: h100-80, gpuModel: H100-80GB, nodeSelector: {nvidia.com/gpu.product: NVIDIA-H100-80GB-HBM3}}
  - {name: a100-40, gpuModel: A100-40GB, nodeSelector: {nvidia.com/gpu.product: NVIDIA-A100-SXM4-40GB}}
"""
)


def _w(name, pool, per_replica, replicas):
    return Workload("t", "Pod", "ns", name, replicas, "rewrite", "", pool, tuple(sorted(per_replica.items())))


def _reference_plan():
    policy = default_policy()
    return plan_fleet(demand_from_manifests([str(MIX)], policy), policy)


@functools.cache
def _plans():
    """The reference mix; two pools (one of them all whole GPUs, no bar may lack a label
    even at zero); a fleet past the one-row-per-GPU limit; limited supply (left over)."""
    two = plan_fleet(Demand([_w("a", "h100-80", {"1g.20gb": 1}, 9), _w("b", "a100-40", {WHOLE_GPU: 1}, 3)]), TWO_POOLS)
    big = plan_fleet(Demand([_w("many", "h100-80", {"1g.10gb": 1}, 500)]), default_policy())
    short = plan_fleet(Demand([_w("c", "h100-80", {"3g.40gb": 1}, 5)]), default_policy(), {"h100-80": 2})
    return {"reference": _reference_plan(), "two-pools": two, "big": big, "limited": short}


@pytest.fixture(params=["reference", "two-pools", "big", "limited"], scope="module")
def drawn(request):
    plan = _plans()[request.param]
    figures = build_figures(plan, summary(plan))
    for _, fig in figures:
        fig.canvas.draw()  # lays the figure out: every extent below is the saved one
    return plan, figures


def _subfigures(fig):
    yield fig
    for sub in fig.subfigs:
        yield from _subfigures(sub)


def _legends(fig):
    return [leg for f in _subfigures(fig) for leg in f.legends] + [
        ax.get_legend() for ax in fig.get_axes() if ax.get_legend() is not None
    ]


def _caption(fig):
    found = [t for f in _subfigures(fig) for t in f.texts if t.get_gid() == "caption"]
    assert len(found) == 1, "one caption per figure"
    return found[0]


def _bars(fig):
    return [(ax, bar) for ax in fig.get_axes() for container in ax.containers for bar in container]


def _number(text):
    found = re.search(r"-?\d+(?:\.(\d+))?", text)
    assert found, f"no number in the label {text!r}"
    return float(found.group(0)), len(found.group(1) or "")


def test_every_bar_carries_its_value_inside_its_axes(drawn):
    _, figures = drawn
    for name, fig in figures:
        renderer = fig.canvas.get_renderer()
        for ax, bar in _bars(fig):
            left, right = bar.get_x(), bar.get_x() + bar.get_width()
            labels = [t for t in ax.texts if left <= t.xy[0] <= right and t.xy[1] == bar.get_height()]
            assert len(labels) == 1, f"{name}: bar at x={left:.2f} has {len(labels)} value labels"
            value, decimals = _number(labels[0].get_text())
            assert abs(value - bar.get_height()) <= 0.5 * 10**-decimals + 1e-9, (name, labels[0].get_text())
            box, frame = labels[0].get_window_extent(renderer), ax.get_window_extent(renderer)
            assert frame.x0 <= box.x0 and box.x1 <= frame.x1 and frame.y0 <= box.y0 and box.y1 <= frame.y1, (
                f"{name}: label {labels[0].get_text()!r} leaves the plot area"
            )


def test_percentage_axes_stop_at_100(drawn):
    _, figures = drawn
    percent = [ax for _, fig in figures for ax in fig.get_axes() if "(%)" in ax.get_ylabel()]
    assert percent, "the utilisation chart has a percentage axis"
    for ax in percent:
        bottom, top = ax.get_ylim()
        assert bottom == 0 and top <= 100, ax.get_ylabel()
        assert all(bar.get_height() <= top for container in ax.containers for bar in container)


def test_no_legend_or_caption_covers_a_bar_a_label_or_an_axes(drawn):
    _, figures = drawn
    for name, fig in figures:
        renderer = fig.canvas.get_renderer()
        legends = _legends(fig)
        assert legends or name != "utilisation.png", "the utilisation chart's legend says what the colours mean"
        caption = _caption(fig).get_window_extent(renderer)
        for legend in legends:
            box = legend.get_window_extent(renderer)
            for ax, bar in _bars(fig):
                assert not box.overlaps(bar.get_window_extent(renderer)), f"{name}: legend covers a bar"
            for ax in fig.get_axes():
                for text in ax.texts:
                    assert not box.overlaps(text.get_window_extent(renderer)), f"{name}: legend covers a label"
                for tick in ax.get_xticklabels():
                    assert not box.overlaps(tick.get_window_extent(renderer)), f"{name}: legend covers a tick"
            assert not box.overlaps(caption), f"{name}: legend covers the caption"
        for ax in fig.get_axes():
            assert not caption.overlaps(ax.get_tightbbox(renderer)), f"{name}: caption covers an axes"
        boxes = [caption] + [legend.get_window_extent(renderer) for legend in legends]
        for box in boxes + [ax.get_tightbbox(renderer) for ax in fig.get_axes()]:
            page = fig.bbox
            assert page.x0 <= box.x0 and box.x1 <= page.x1 and page.y0 <= box.y0 and box.y1 <= page.y1, (
                f"{name}: an axes (title, labels), a legend or the caption runs off the figure"
            )


def test_titles_and_axis_labels_say_what_and_the_unit(drawn):
    _, figures = drawn
    for name, fig in figures:
        for ax in fig.get_axes():
            if ax.get_title():
                assert len(ax.get_title()) > 10
            if ax.containers:  # a bar chart: its value axis names the unit
                assert re.search(r"\((%|GiB|count)\)$", ax.get_ylabel()), (name, ax.get_ylabel())
        assert any(ax.get_title() for ax in fig.get_axes()), f"{name}: no title"


def test_the_utilisation_chart_explains_stranded(drawn):
    plan, figures = drawn
    fig = dict(figures)["utilisation.png"]
    entries = [t.get_text() for legend in _legends(fig) for t in legend.get_texts()]
    assert any(e.startswith("stranded: memory in no MIG instance") for e in entries), entries
    caption = _caption(fig).get_text().replace("\n", " ")
    assert "Stranded = GPU memory that exists but that no MIG instance provides" in caption
    assert "minus its instances' usable memory" in caption
    # The stranded bar is the planner's count: whole-GPU memory minus the instances' memory.
    ax = fig.get_axes()[1]
    stranded_bars = ax.containers[0]
    for pool_plan, bar in zip(plan.pools, stranded_bars):
        model = pool_plan.pool.model
        mib = sum(model.memory_mib - memory_mib(model, g.layout) for g in pool_plan.used_gpus)
        assert bar.get_height() == pytest.approx(mib / 1024, abs=0.005)


def test_layout_chart_shows_each_gpus_stranded_memory(drawn):
    plan, figures = drawn
    for pool_plan in plan.pools:
        if not pool_plan.used_gpus:
            continue
        fig = dict(figures)[f"layout-{pool_plan.pool.name}.png"]
        main, right = fig.get_axes()
        assert right.get_ylabel() == "stranded per GPU (GiB)"
        rows = sorted(zip(right.get_yticks(), right.get_yticklabels()), key=lambda tick: -tick[0])
        shown = [float(label.get_text()) for _, label in rows]  # top row first
        model = pool_plan.pool.model
        if len(pool_plan.used_gpus) <= 64:  # one row per GPU, top row first
            expected = [(model.memory_mib - memory_mib(model, g.layout)) / 1024 for g in pool_plan.used_gpus]
            assert shown == pytest.approx(expected, abs=0.005)
        else:
            assert "one row per layout" in main.get_title()


def test_report_md_defines_stranded_next_to_the_chart(tmp_path):
    write_report(_reference_plan(), str(tmp_path))
    md = (tmp_path / "report.md").read_text()
    definition = re.search(r"^- \*\*stranded\*\*: (.+)$", md, re.M)
    assert definition, "report.md defines the stranded column"
    text = definition.group(1)
    assert "exists but that no pod can be given" in text and "minus the usable memory of its layout's instances" in text
    assert "0 for a GPU with MIG disabled" in text
    assert re.search(r"^- \*\*stranded slices\*\*: a live cluster's figure", md, re.M)
    charts = md.index("## Charts")
    assert md.index("**stranded**") < charts < md.index("![utilisation.png](utilisation.png)")
    after = md[md.index("![utilisation.png](utilisation.png)") :]
    assert after.split("\n")[2] == f"*{CAPTIONS['utilisation']}*"
    for png in ("gpus.png", "utilisation.png", "layout-h100-80.png"):
        assert (tmp_path / png).read_bytes().startswith(b"\x89PNG\r\n\x1a\n")


def test_the_stranded_example_matches_the_catalog():
    """The definition's worked example (whole H100 vs 4 x 1g.20gb) is the catalog's."""
    model = default_policy().pools[0].model
    whole = model.memory_mib / 1024
    four = 4 * model.profile("1g.20gb").memory_mib / 1024
    assert f"{whole:.2f} GiB as a whole GPU, {four:.2f} GiB as 4 x 1g.20gb" in TERMS["stranded"]
    # and the columns the definitions name are the table's
    md = markdown(summary(_reference_plan()), [])
    header = next(line for line in md.splitlines() if line.startswith("| pool |"))
    for term in ("slice util.", "memory util.", "stranded", "idle instances"):
        assert f" {term} |" in header and term in TERMS
