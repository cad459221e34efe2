"""What one GPU can hold: every valid set of MIG instances of a model, from its placements.

The rules are the ones `nvidia-smi mig -lgipp` encodes (NVIDIA MIG User Guide,
"Supported MIG Profiles" / placements): an instance of a profile starts at one of the
profile's start slices and spans ``placement_size`` memory slices; no two instances
share a memory slice; the instances' compute slices add up to at most the GPU's; a
profile has at most ``max_instances`` instances; and a GPU has one set of media
extension engines, so at most one "+me" instance.

The planner only needs the distinct *counts* per profile (mig-parted takes counts and
tries creation orders until the driver accepts one: NVIDIA/mig-parted
pkg/mig/config/config.go, iteratePermutationsUntilSuccess), so each distinct count
vector is kept with one concrete placement that proves it exists.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from webhook.core.catalog import GpuModel, MigProfile

WHOLE_GPU = "whole-gpu"  # the demand key and layout of a GPU with MIG disabled


@dataclass(frozen=True, order=True)
class Instance:
    start: int  # first memory slice
    size: int  # memory slices spanned
    profile: str


@dataclass(frozen=True)
class Layout:
    """One GPU's MIG state: a whole GPU (mig_enabled False) or a set of instances."""

    mig_enabled: bool
    instances: tuple[Instance, ...] = ()

    @property
    def counts(self) -> dict[str, int]:
        if not self.mig_enabled:
            return {WHOLE_GPU: 1}
        out: dict[str, int] = {}
        for inst in self.instances:
            out[inst.profile] = out.get(inst.profile, 0) + 1
        return out

    @property
    def key(self) -> tuple[tuple[str, int], ...]:
        """Identity for planning: the counts, not the positions."""
        return tuple(sorted(self.counts.items()))

    def describe(self) -> str:
        if not self.mig_enabled:
            return "MIG disabled (whole GPU)"
        if not self.instances:
            return "MIG enabled, no instances"
        return " + ".join(
            f"{n}x {p}" for p, n in sorted(self.counts.items(), key=lambda kv: (-_slices_of(kv[0]), kv[0]))
        )


WHOLE_LAYOUT = Layout(mig_enabled=False)


def _slices_of(profile_name: str) -> int:
    head = profile_name.split("g.", 1)[0]
    return int(head) if head.isdigit() else 0


def _candidates(profiles: tuple[MigProfile, ...]) -> list[tuple[MigProfile, int]]:
    return sorted(
        ((p, s) for p in profiles for s in p.placement_starts),
        key=lambda ps: (ps[1], -ps[0].placement_size, ps[0].name),
    )


def _enumerate(model: GpuModel, profiles: tuple[MigProfile, ...]):
    """Yield every non-empty valid instance set (as a tuple of (profile, start))."""
    candidates = _candidates(profiles)
    chosen: list[tuple[MigProfile, int]] = []

    def walk(i: int, used_mask: int, compute: int, per_profile: dict[str, int], media: int):
        if i == len(candidates):
            if chosen:
                yield tuple(chosen)
            return
        yield from walk(i + 1, used_mask, compute, per_profile, media)
        profile, start = candidates[i]
        mask = ((1 << profile.placement_size) - 1) << start
        if (
            used_mask & mask
            or start + profile.placement_size > model.memory_slices
            or compute + profile.compute_slices > model.compute_slices
            or per_profile.get(profile.name, 0) >= profile.max_instances
            or (profile.is_media_extension and media >= 1)
        ):
            return
        chosen.append((profile, start))
        per_profile[profile.name] = per_profile.get(profile.name, 0) + 1
        yield from walk(
            i + 1, used_mask | mask, compute + profile.compute_slices, per_profile, media + profile.is_media_extension
        )
        per_profile[profile.name] -= 1
        chosen.pop()

    yield from walk(0, 0, 0, {}, 0)


def _layout(instances) -> Layout:
    return Layout(True, tuple(sorted(Instance(s, p.placement_size, p.name) for p, s in instances)))


@functools.lru_cache(maxsize=64)
def all_layouts(model: GpuModel, profiles: tuple[MigProfile, ...] | None = None) -> tuple[Layout, ...]:
    """Every valid placement-level layout with at least one instance."""
    return tuple(_layout(found) for found in _enumerate(model, profiles or model.profiles))


@functools.lru_cache(maxsize=64)
def configurations(model: GpuModel, profiles: tuple[MigProfile, ...] | None = None) -> tuple[Layout, ...]:
    """One layout per distinct count vector, in a stable order (most instances first)."""
    seen: dict[tuple, Layout] = {}
    for layout in all_layouts(model, profiles):
        seen.setdefault(layout.key, layout)
    return tuple(sorted(seen.values(), key=lambda l: (-len(l.instances), l.key)))


def realise(model: GpuModel, counts: dict[str, int]) -> Layout | None:
    """A concrete placement for the given counts, or None when no GPU of ``model`` holds them."""
    counts = {p: n for p, n in counts.items() if n}
    if not counts:
        return Layout(True, ())
    if WHOLE_GPU in counts:
        return WHOLE_LAYOUT if counts == {WHOLE_GPU: 1} else None
    profiles = []
    for name in counts:
        profile = model.profile(name)
        if profile is None:
            return None
        profiles.append(profile)
    key = tuple(sorted(counts.items()))
    for layout in configurations(model, tuple(p for p in model.profiles if p in profiles)):
        if layout.key == key:
            return layout
    return None


def memory_mib(model: GpuModel, layout: Layout) -> int:
    if not layout.mig_enabled:
        return model.memory_mib
    return sum(model.profile(i.profile).memory_mib for i in layout.instances)


def compute_slices(model: GpuModel, layout: Layout) -> int:
    if not layout.mig_enabled:
        return model.compute_slices
    return sum(model.profile(i.profile).compute_slices for i in layout.instances)
