"""The built-in catalog agrees with the MIG tables read off real GPUs, and is sound."""

from __future__ import annotations

import re

import pytest

from tests.support.fixtures import mig_profile_table as table
from webhook.core.catalog import builtin_catalog

REQUIRED_MODELS = [
    "A30-24GB",
    "A100-40GB",
    "A100-80GB",
    "H100-80GB",
    "H100-94GB",
    "H200-141GB",
    "B200-180GB",
    "RTX-PRO-6000-96GB",
]
_LGIP = re.compile(r"^\|\s+\d+\s+MIG (\S+)\s+(\d+)\s+\d+/(\d+)\s+([\d.]+)\s+\w+\s+\d+\s+(\d+)\s+\d+\s+\|$")
_LGIPP = re.compile(r"^GPU\s+\d+ Profile ID\s+(\d+) Placements?\s*: \{([\d,]+)\}:(\d+)$")
_NVML = re.compile(r"^(\d+) (\d+) (\d+) (\d+) (\d+) (\d+)$")


def parse_table(text: str) -> dict[str, dict]:
    """nvidia-smi mig -lgip / -lgipp (and NVML, where present) -> {name: figures}."""
    profiles, by_id = {}, {}
    for line in text.splitlines():
        if m := _LGIP.match(line):
            name, pid, total, gib, _dec = m.groups()
            profiles[name] = {"id": int(pid), "max": int(total), "gib": float(gib)}
            by_id[int(pid)] = profiles[name]
        elif m := _LGIPP.match(line):
            entry = by_id[int(m.group(1))]
            entry["starts"] = tuple(int(s) for s in m.group(2).split(","))
            entry["size"] = int(m.group(3))
        elif (m := _NVML.match(line)) and int(m.group(2)) in by_id:
            _idx, pid, max_inst, mib, slices, _sms = map(int, m.groups())
            by_id[pid].update(nvml_mib=mib, nvml_max=max_inst, slices=slices)
    return profiles


# The driver both tables in shared/mig-profiles were read on.
TABLE_DRIVER = "580.159.04"


@pytest.mark.parametrize("model_key, filename", [("H100-80GB", "h100-80gb-hbm3.txt"), ("H200-141GB", "h200-141gb.txt")])
def test_catalog_agrees_with_tables_read_off_real_gpus(model_key, filename):
    real = parse_table(table(filename))
    model = builtin_catalog().models[model_key]
    assert len(real) == 7, "the parser must find every profile of the table"
    assert {p.name for p in model.profiles} == set(real)
    for profile in model.profiles:
        row = real[profile.name]
        seen = dict(profile.memory_mib_seen)[TABLE_DRIVER]
        assert profile.profile_id == row["id"]
        assert profile.max_instances == row["max"]
        # The catalog records what this driver gave (nvidia-smi prints GiB to two decimals;
        # NVML gives exact MiB where captured) and sizes with no more than that.
        assert abs(seen / 1024 - row["gib"]) < 0.005 + 1e-9, profile.name
        assert profile.memory_mib <= seen
        if "nvml_mib" in row:
            assert seen == row["nvml_mib"]
            assert profile.compute_slices == row["slices"]
            assert profile.max_instances == row["nvml_max"]
        else:
            assert profile.compute_slices == int(profile.name.split("g.")[0])
        assert profile.placement_starts == row["starts"]
        assert profile.placement_size == row["size"]


def test_the_parser_reads_the_h200_names_that_are_not_its_memory():
    real = parse_table(table("h200-141gb.txt"))
    assert real["1g.18gb"]["gib"] == 16.00


@pytest.mark.parametrize("key", REQUIRED_MODELS)
def test_every_required_model_is_present_with_a_source(key):
    model = builtin_catalog().models[key]
    assert len(model.source) > 40
    assert model.profiles


@pytest.mark.parametrize("key", REQUIRED_MODELS)
def test_profiles_are_geometrically_sound(key):
    model = builtin_catalog().models[key]
    names = [p.name for p in model.profiles]
    assert len(names) == len(set(names))
    for p in model.profiles:
        assert 0 < p.compute_slices <= model.compute_slices
        assert 0 < p.memory_mib <= model.memory_mib
        assert p.max_instances >= 1
        assert all(0 <= s and s + p.placement_size <= model.memory_slices for s in p.placement_starts)
        assert p.max_instances <= len(p.placement_starts)
    # Memory grows with the slice count of the name: a bigger profile never has less.
    for a in model.profiles:
        for b in model.profiles:
            if a.placement_size < b.placement_size:
                assert a.memory_mib < b.memory_mib, (a.name, b.name)


@pytest.mark.parametrize(
    "alias, key",
    [
        ("NVIDIA-A100-SXM4-40GB", "A100-40GB"),
        ("NVIDIA-H100-80GB-HBM3", "H100-80GB"),
        ("nvidia-h100-nvl", "H100-94GB"),
        ("NVIDIA-H200", "H200-141GB"),
        ("NVIDIA-A30", "A30-24GB"),
        ("h100-80gb", "H100-80GB"),
    ],
)
def test_gpu_feature_discovery_product_names_are_aliases(alias, key):
    assert builtin_catalog().lookup(alias).key == key


def test_unknown_model_is_none():
    assert builtin_catalog().lookup("NVIDIA-GeForce-RTX-4090") is None


def test_default_profiles_leave_out_media_extension_variants():
    model = builtin_catalog().models["H100-80GB"]
    assert "1g.10gb+me" not in [p.name for p in model.default_profiles]
    assert "1g.10gb" in [p.name for p in model.default_profiles]
