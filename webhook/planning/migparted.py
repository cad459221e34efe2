"""The layout as a mig-parted configuration, and the node labels that select it.

Format: NVIDIA/mig-parted api/spec/v1/spec.go (Spec{version, mig-configs}; each entry
MigConfigSpec{device-filter, devices, mig-enabled, mig-devices}) and its
examples/config.yaml (`devices: all` or a list of GPU indices; `mig-devices` maps a
profile name to a count). mig-parted takes counts, not positions: it tries creation
orders until the driver accepts one (pkg/mig/config/config.go,
iteratePermutationsUntilSuccess), so any count set geometry.py found placeable applies.
The GPU operator's mig-manager applies the entry named by the node's
`nvidia.com/mig.config` label.
"""

from __future__ import annotations

import hashlib
import re

import yaml

from webhook.planning.geometry import Layout

PREFIX = "rightsizer"
_LABEL_VALUE = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$")


def _profile_token(name: str) -> str:
    # label values may not hold "+": mig-parted's own names write "1g.10gb+me" as "1g.10gb.me"
    return name.replace("+", ".")


def layout_name(layout: Layout) -> str:
    """A readable mig.config name for one GPU's layout: rightsizer-2x3g.40gb."""
    if not layout.mig_enabled:
        return "all-disabled"
    if not layout.instances:
        return "all-enabled"
    parts = [f"{n}x{_profile_token(p)}" for p, n in sorted(layout.counts.items())]
    return f"{PREFIX}-" + "-".join(parts)


def node_config_name(layouts: list[Layout]) -> str:
    """The name for a node whose GPUs (by index) get ``layouts``."""
    distinct = {l.key for l in layouts}
    if len(distinct) == 1:
        return layout_name(layouts[0])
    groups = _groups(layouts)
    name = f"{PREFIX}-" + "_".join(
        f"{len(idx)}{layout_name(l).removeprefix(PREFIX + '-').removeprefix('all-')}" for l, idx in groups
    )
    if len(name) > 63 or not _LABEL_VALUE.match(name):
        digest = hashlib.sha256(name.encode()).hexdigest()[:10]
        name = f"{PREFIX}-mixed-{digest}"
    return name


def _groups(layouts: list[Layout]) -> list[tuple[Layout, list[int]]]:
    groups: dict[tuple, tuple[Layout, list[int]]] = {}
    for index, layout in enumerate(layouts):
        groups.setdefault(layout.key, (layout, []))[1].append(index)
    return list(groups.values())


def _entry(layout: Layout, devices) -> dict:
    entry: dict = {"devices": devices, "mig-enabled": layout.mig_enabled}
    if layout.mig_enabled:
        entry["mig-devices"] = {p: n for p, n in sorted(layout.counts.items())}
    return entry


def layout_counts(layouts: list[Layout]) -> dict[str, tuple[Layout, int]]:
    """config name -> (layout, how many GPUs get it), most GPUs first."""
    out: dict[str, tuple[Layout, int]] = {}
    for layout in layouts:
        name = layout_name(layout)
        out[name] = (layout, out.get(name, (layout, 0))[1] + 1)
    return dict(sorted(out.items(), key=lambda kv: (-kv[1][1], kv[0])))


def config_for_layouts(layouts: list[Layout]) -> dict[str, list[dict]]:
    """name -> entries for GPU layouts applied to every GPU of a node (`devices: all`)."""
    return {layout_name(l): [_entry(l, "all")] for l in sorted({l.key: l for l in layouts}.values(), key=layout_name)}


def config_for_node(layouts: list[Layout]) -> tuple[str, list[dict]]:
    name = node_config_name(layouts)
    if len({l.key for l in layouts}) == 1:
        return name, [_entry(layouts[0], "all")]
    return name, [_entry(l, idx) for l, idx in _groups(layouts)]


def document(configs: dict[str, list[dict]]) -> dict:
    return {"version": "v1", "mig-configs": dict(sorted(configs.items()))}


class _FlowListDumper(yaml.SafeDumper):
    pass


def _represent_list(dumper, data):
    # device index lists read like mig-parted's examples: devices: [0, 1, 2, 3]
    flow = all(isinstance(x, int) for x in data)
    return dumper.represent_sequence("tag:yaml.org,2002:seq", data, flow_style=flow)


_FlowListDumper.add_representer(list, _represent_list)


def dump(doc: dict) -> str:
    return yaml.dump(doc, Dumper=_FlowListDumper, sort_keys=False, default_flow_style=False)


# --- reading the current state of a node --------------------------------------------


def parse_config_file(text: str) -> dict[str, list[dict]]:
    data = yaml.safe_load(text)
    if not isinstance(data, dict) or data.get("version") != "v1" or not isinstance(data.get("mig-configs"), dict):
        raise ValueError("not a mig-parted config: expected version: v1 and a mig-configs mapping")
    return data["mig-configs"]
