"""An independent check of planned MIG layouts, written apart from the planner.

It reads the catalog's data file itself and applies the placement rules directly
(`nvidia-smi mig -lgipp`: an instance starts at one of its profile's start slices and
spans its size; instances do not share memory slices; compute slices and per-profile
instance counts stay within the GPU's; one "+me" instance per GPU), so a bug in
webhook.planning.geometry cannot hide itself.
"""

from __future__ import annotations

import functools
import itertools
from importlib import resources

import yaml


@functools.lru_cache(maxsize=1)
def raw_catalog() -> dict:
    return yaml.safe_load(resources.files("webhook.core").joinpath("data/mig_catalog.yaml").read_text())["models"]


def layout_problems(model_key: str, instances: list[tuple[str, int, int]]) -> list[str]:
    """Problems with one GPU's instances, given as (profile, start, size); [] when valid."""
    model = raw_catalog()[model_key]
    profiles = {p["name"]: p for p in model["profiles"]}
    problems = []
    used: dict[int, str] = {}
    compute = 0
    media = 0
    counts: dict[str, int] = {}
    for name, start, size in instances:
        p = profiles.get(name)
        if p is None:
            problems.append(f"{name}: not a profile of {model_key}")
            continue
        if start not in p["placements"]["starts"]:
            problems.append(f"{name} at {start}: allowed starts {p['placements']['starts']}")
        if size != p["placements"]["size"]:
            problems.append(f"{name} spans {size}, not {p['placements']['size']}")
        for s in range(start, start + size):
            if s >= model["memorySlices"]:
                problems.append(f"{name} at {start} runs past slice {model['memorySlices'] - 1}")
            if s in used:
                problems.append(f"{name} at {start} overlaps {used[s]} on slice {s}")
            used[s] = name
        compute += p["computeSlices"]
        counts[name] = counts.get(name, 0) + 1
        media += "+me" in name
    if compute > model["computeSlices"]:
        problems.append(f"{compute} compute slices > {model['computeSlices']}")
    for name, n in counts.items():
        if n > profiles[name]["maxInstances"]:
            problems.append(f"{n}x {name} > max {profiles[name]['maxInstances']}")
    if media > 1:
        problems.append(f"{media} +me instances; a GPU has one set of media engines")
    return problems


def count_vectors(model_key: str, profile_names: list[str]) -> set[tuple[tuple[str, int], ...]]:
    """Every distinct profile-count vector one GPU holds, by brute force over subsets of
    all (profile, start) candidates."""
    model = raw_catalog()[model_key]
    profiles = {p["name"]: p for p in model["profiles"] if p["name"] in profile_names}
    candidates = [(n, s, p["placements"]["size"]) for n, p in profiles.items() for s in p["placements"]["starts"]]
    found = set()
    for r in range(1, model["computeSlices"] + 1):
        for subset in itertools.combinations(candidates, r):
            if not layout_problems(model_key, list(subset)):
                counts: dict[str, int] = {}
                for n, _, _ in subset:
                    counts[n] = counts.get(n, 0) + 1
                found.add(tuple(sorted(counts.items())))
    return found
