"""The built-in MIG catalog: GPU models and their MIG instance profiles.

The figures live in one data file, ``webhook/core/data/mig_catalog.yaml``, each model with
its source; this module only loads them into immutable objects and looks them up.

A profile's ``memory_mib`` is the least usable memory any driver was seen to give it (or
a lower bound where none was read): older drivers give 0.12-0.25 GiB less per slice than
R580, and the webhook cannot know which driver the node a pod lands on runs, so sizing
must hold on all of them (docs/catalog.md).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from typing import Any

import yaml

from webhook.core.gpu_product import parse_product_label

MIB_PER_GIB = 1024


@dataclass(frozen=True)
class MigProfile:
    name: str  # e.g. "3g.40gb"; the resource is nvidia.com/mig-<name>
    profile_id: int
    memory_mib: int  # usable memory on every driver seen (the least), not the name's GB
    compute_slices: int
    max_instances: int
    placement_starts: tuple[int, ...]  # nvidia-smi mig -lgipp start slices
    placement_size: int  # memory slices one instance spans
    # (driver or source, MiB) as read off real GPUs, where known; memory_mib is never above any.
    memory_mib_seen: tuple[tuple[str, int], ...] = ()

    @property
    def memory_gib(self) -> float:
        return self.memory_mib / MIB_PER_GIB

    @property
    def is_media_extension(self) -> bool:
        # "+me" variants take the GPU's only media engines, so one fits per GPU; they are
        # never picked by default because they would starve the plain profiles.
        return "+" in self.name


@dataclass(frozen=True)
class GpuModel:
    key: str  # catalog key, e.g. "H100-80GB"
    source: str
    aliases: tuple[str, ...]  # GPU feature discovery nvidia.com/gpu.product values
    alias_reasons: tuple[str, ...]  # why each alias is a real product name, in alias order
    compute_slices: int
    memory_slices: int
    profiles: tuple[MigProfile, ...]

    def profile(self, name: str) -> MigProfile | None:
        for profile in self.profiles:
            if profile.name == name:
                return profile
        return None

    @property
    def default_profiles(self) -> tuple[MigProfile, ...]:
        return tuple(p for p in self.profiles if not p.is_media_extension)

    @property
    def memory_mib(self) -> int:
        return max(p.memory_mib for p in self.profiles)


@dataclass(frozen=True)
class Catalog:
    models: Mapping[str, GpuModel]
    _aliases: Mapping[str, str]

    def lookup(self, name: str) -> GpuModel | None:
        """A model by catalog key, GPU feature discovery product label (its `-MIG-<profile>`
        and `-SHARED` suffixes read off by webhook.core.gpu_product) or NVML product name;
        case-insensitive."""
        key = self._aliases.get(name.lower()) or self._aliases.get(parse_product_label(name).product.lower())
        return self.models[key] if key else None

    @property
    def keys(self) -> tuple[str, ...]:
        return tuple(self.models)


def _profile_from_data(model: str, data: dict[str, Any]) -> MigProfile:
    placements = data["placements"]
    seen = tuple((str(driver), int(mib)) for driver, mib in (data.get("seenMiB") or {}).items())
    memory_mib = int(data["memoryMiB"])
    if seen and memory_mib > min(mib for _, mib in seen):
        # The catalog would promise memory a driver was seen not to give.
        raise ValueError(f"{model} {data['name']}: memoryMiB {memory_mib} is above a value seen: {dict(seen)}")
    return MigProfile(
        name=data["name"],
        profile_id=int(data["id"]),
        memory_mib=memory_mib,
        compute_slices=int(data["computeSlices"]),
        max_instances=int(data["maxInstances"]),
        placement_starts=tuple(int(s) for s in placements["starts"]),
        placement_size=int(placements["size"]),
        memory_mib_seen=seen,
    )


def catalog_from_data(data: dict[str, Any]) -> Catalog:
    models: dict[str, GpuModel] = {}
    aliases: dict[str, str] = {}
    for key, entry in data["models"].items():
        # aliases: {GFD product label: why it is one a real node shows}
        alias_map = {str(name): " ".join(str(reason).split()) for name, reason in (entry.get("aliases") or {}).items()}
        model = GpuModel(
            key=key,
            source=" ".join(str(entry["source"]).split()),
            aliases=tuple(alias_map),
            alias_reasons=tuple(alias_map.values()),
            compute_slices=int(entry["computeSlices"]),
            memory_slices=int(entry["memorySlices"]),
            profiles=tuple(_profile_from_data(key, p) for p in entry["profiles"]),
        )
        models[key] = model
        for name in (key, *model.aliases):
            if aliases.setdefault(name.lower(), key) != key:
                raise ValueError(f"{key}: alias {name!r} already names {aliases[name.lower()]}")
    return Catalog(models=models, _aliases=aliases)


@functools.lru_cache(maxsize=1)
def builtin_catalog() -> Catalog:
    text = resources.files("webhook.core").joinpath("data/mig_catalog.yaml").read_text()
    return catalog_from_data(yaml.safe_load(text))
