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
    "GH200-96GB",
    "H20-96GB",
    "GH200-144GB",
    "GB200-186GB",
    "B300-288GB",
    "GB300-278GB",
    "RTX-PRO-5000-48GB",
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


def test_every_model_is_required_and_checked():
    assert set(REQUIRED_MODELS) == set(builtin_catalog().keys)


@pytest.mark.parametrize("key", REQUIRED_MODELS)
def test_sizing_memory_is_never_above_what_a_driver_gave(key):
    for p in builtin_catalog().models[key].profiles:
        assert all(p.memory_mib <= mib for _, mib in p.memory_mib_seen), p.name


@pytest.mark.parametrize("key", REQUIRED_MODELS)
def test_every_alias_says_why_it_is_a_real_product_name(key):
    model = builtin_catalog().models[key]
    assert model.aliases and len(model.alias_reasons) == len(model.aliases)
    assert all(len(reason) > 20 for reason in model.alias_reasons)
    # The first alias is the GFD product a single-strategy pool extends by default.
    assert model.aliases[0].startswith("NVIDIA-")


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
        # Instances of one profile never overlap: the placements hold max_instances of them.
        assert max(p.placement_starts) + p.placement_size <= model.memory_slices
        assert p.max_instances * p.placement_size <= model.memory_slices
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


# --- the models of issue 18, each against the table it rests on -------------------------
# name: (profile ID, GiB read off a real GPU or None where INFERRED, max instances).
# GiB -> MiB is x 1024; INFERRED values are lower bounds, checked as the rule the catalog
# notes state.
HOPPER_IDS = {1: 19, 2: 20, 3: 15, 4: 14, 5: 9, 6: 5, 7: 0}
NEW_MODEL_TABLES = {
    # NVIDIA/mig-parted PR #139 (GH200 144G HBM3e, 2024-10-23): nvidia-smi mig -lgip rows
    # 1-4; names and counts of the rest from mig-parted config-default.yaml.
    "GH200-144GB": {
        "1g.18gb": (19, 17.50, 7),
        "1g.18gb+me": (20, 17.50, 1),
        "1g.36gb": (15, 35.25, 4),
        "2g.36gb": (14, 35.25, 3),
        "3g.72gb": (9, None, 2),
        "4g.72gb": (5, None, 1),
        "7g.144gb": (0, None, 1),
    },
    # NVIDIA/gpu-operator PR #1303 (20.00 GiB for ID 19) and mig-parted issue #227 (22.00):
    # the least is used; 1g.47gb/2g.47gb 45.50 in both. Counts: mig-parted config-default.yaml.
    "GB200-186GB": {
        "1g.23gb": (19, 20.00, 7),
        "1g.23gb+me": (20, 20.00, 1),
        "1g.47gb": (15, 45.50, 4),
        "2g.47gb": (14, 45.50, 3),
        "3g.93gb": (9, None, 2),
        "4g.93gb": (5, None, 1),
        "7g.186gb": (0, None, 1),
    },
    # mig-parted config-default.yaml, the "H100-96GB, PG506-96GB, GH200" block.
    "GH200-96GB": {
        "1g.12gb": (19, None, 7),
        "1g.12gb+me": (20, None, 1),
        "1g.24gb": (15, None, 4),
        "2g.24gb": (14, None, 3),
        "3g.48gb": (9, None, 2),
        "4g.48gb": (5, None, 1),
        "7g.96gb": (0, None, 1),
    },
    # mig-parted config-default.yaml, B300 (0x318210DE), PR #251.
    "B300-288GB": {
        "1g.34gb": (19, None, 7),
        "1g.34gb+me": (20, None, 1),
        "1g.67gb": (15, None, 4),
        "2g.67gb": (14, None, 3),
        "3g.135gb": (9, None, 2),
        "4g.135gb": (5, None, 1),
        "7g.269gb": (0, None, 1),
    },
    # mig-parted config-default.yaml, GB300 (0x31C210DE), PR #251.
    "GB300-278GB": {
        "1g.35gb": (19, None, 7),
        "1g.35gb+me": (20, None, 1),
        "1g.70gb": (15, None, 4),
        "2g.70gb": (14, None, 3),
        "3g.139gb": (9, None, 2),
        "4g.139gb": (5, None, 1),
        "7g.278gb": (0, None, 1),
    },
    # mig-parted pkg/mig/builder/builder_test.go "RTX-PRO-5000" names; counts no more than
    # the MIG User Guide's "Max Number of Instances: 2"; IDs as on the RTX PRO 6000.
    "RTX-PRO-5000-48GB": {
        "1g.12gb": (14, None, 1),
        "1g.12gb+me": (21, None, 1),
        "1g.12gb+gfx": (47, None, 1),
        "1g.12gb-me": (67, None, 2),
        "2g.24gb-me": (66, None, 1),
        "4g.48gb": (0, None, 1),
        "4g.48gb+gfx": (32, None, 1),
    },
}


@pytest.mark.parametrize("key", sorted(NEW_MODEL_TABLES))
def test_new_models_against_their_cited_tables(key):
    table = NEW_MODEL_TABLES[key]
    model = builtin_catalog().models[key]
    assert [p.name for p in model.profiles] == list(table)
    for p in model.profiles:
        pid, gib, max_instances = table[p.name]
        assert (p.profile_id, p.max_instances) == (pid, max_instances), p.name
        if gib is not None:
            assert p.memory_mib == int(gib * 1024), p.name
    # The GH100/GB100 tables share one layout; the RTX PRO 5000 the GB202 one.
    assert (model.compute_slices, model.memory_slices) == ((4, 12) if key.startswith("RTX") else (7, 8))


@pytest.mark.parametrize(
    "key, memory_gib",
    [
        # INFERRED: 2 x the read 2g, and 2 x that (a bound every GH100 read keeps)
        ("GH200-144GB", {"3g.72gb": 70.50, "7g.144gb": 141.00}),
        ("GB200-186GB", {"3g.93gb": 91.00, "7g.186gb": 182.00}),
        # INFERRED: the H100 NVL's real values (a 94GB board) as a bound for the 96GB one
        ("GH200-96GB", {"1g.12gb": 10.75, "1g.24gb": 21.625, "3g.48gb": 46.375, "7g.96gb": 93.125}),
        # INFERRED: 0.85 x the name in GiB, down to 1/8 GiB
        ("B300-288GB", {"1g.34gb": 28.875, "1g.67gb": 56.875, "3g.135gb": 114.75, "7g.269gb": 228.625}),
        ("GB300-278GB", {"1g.35gb": 29.75, "1g.70gb": 59.5, "3g.139gb": 118.125, "7g.278gb": 236.25}),
        ("RTX-PRO-5000-48GB", {"1g.12gb": 10.125, "2g.24gb-me": 20.375, "4g.48gb": 40.75}),
    ],
)
def test_inferred_memory_follows_the_stated_rule(key, memory_gib):
    model = builtin_catalog().models[key]
    for name, gib in memory_gib.items():
        assert model.profile(name).memory_gib == gib, name


def test_the_085_rule_holds_for_every_profile_read_off_a_real_gpu():
    # The rule's premise: every value seen is at least 0.889 x its name (H200 1g.18gb 16.00),
    # except the pre-production GB200 row whose name was 1g.24gb (the catalog calls it 1g.23gb).
    for model in builtin_catalog().models.values():
        for p in model.profiles:
            named = float(p.name.split(".")[1].split("gb")[0])
            for source, mib in p.memory_mib_seen:
                if source != "gpu-operator#1303":
                    assert mib / 1024 >= 0.85 * named, (model.key, p.name, source)


def test_h20_shares_the_gh200_96gb_table_and_a800_h800_are_aliases():
    catalog = builtin_catalog()
    assert catalog.models["H20-96GB"].profiles == catalog.models["GH200-96GB"].profiles
    assert catalog.lookup("NVIDIA-H20").key == "H20-96GB"
    assert catalog.lookup("NVIDIA-GH200-480GB").key == "GH200-96GB"
    assert catalog.lookup("A800-40GB").key == "A100-40GB"
    assert catalog.lookup("NVIDIA-A800-SXM4-80GB").key == "A100-80GB"
    assert catalog.lookup("NVIDIA-H800").key == "H100-80GB"
    assert catalog.lookup("NVIDIA-H800-NVL").key == "H100-94GB"
    assert catalog.lookup("NVIDIA-B300-SXM6-AC").key == "B300-288GB"
    assert catalog.lookup("NVIDIA-B300") is None  # not an NVML name: the driver calls 0x3182 "NVIDIA B300 SXM6 AC"
    assert catalog.lookup("NVIDIA-GH200-120GB").key == "GH200-96GB"
    assert catalog.lookup("NVIDIA-GB300").key == "GB300-278GB"
    assert catalog.lookup("NVIDIA-RTX-PRO-5000-Blackwell").key == "RTX-PRO-5000-48GB"


# scaleway/docs-content pages/gpu/how-to/use-nvidia-mig-technology.mdx: `nvidia-smi mig -lgip`
# and `-lgipp` on an NVIDIA H100 PCIe, driver 525.125.06 (name: ID, GiB, placement starts, size).
SCALEWAY_H100_525 = {
    "1g.10gb": (19, 9.62, (0, 1, 2, 3, 4, 5, 6), 1),
    "1g.10gb+me": (20, 9.62, (0, 1, 2, 3, 4, 5, 6), 1),
    "1g.20gb": (15, 19.50, (0, 2, 4, 6), 2),
    "2g.20gb": (14, 19.50, (0, 2, 4), 2),
    "3g.40gb": (9, 39.25, (0, 4), 4),
    "4g.40gb": (5, 39.25, (0,), 4),
    "7g.80gb": (0, 79.00, (0,), 8),
}


def test_h100_older_driver_table_is_recorded_and_sizes_every_profile():
    # 7g.80gb's 79.00 GiB was INFERRED until this R525 transcript showed it.
    model = builtin_catalog().models["H100-80GB"]
    assert {p.name for p in model.profiles} == set(SCALEWAY_H100_525)
    for p in model.profiles:
        pid, gib, starts, size = SCALEWAY_H100_525[p.name]
        seen = dict(p.memory_mib_seen)["525.125.06"]
        assert (p.profile_id, p.placement_starts, p.placement_size) == (pid, starts, size), p.name
        assert abs(seen / 1024 - gib) < 0.005 + 1e-9, p.name
        # the least any driver gave: R525's figure, below R580's
        assert p.memory_mib == seen == min(mib for _, mib in p.memory_mib_seen), p.name


# Two public A100-SXM4-80GB `nvidia-smi mig -lgip` transcripts (catalog source): name: (ID, GiB, max).
A100_80GB_LGIP = {
    "1g.10gb": (19, 9.50, 7),
    "1g.10gb+me": (20, 9.50, 1),
    "1g.20gb": (15, 19.50, 4),
    "2g.20gb": (14, 19.50, 3),
    "3g.40gb": (9, 39.25, 2),
    "4g.40gb": (5, 39.25, 1),
    "7g.80gb": (0, 79.00, 1),
}


def test_a100_80gb_against_the_transcripts_it_cites():
    model = builtin_catalog().models["A100-80GB"]
    assert {p.name for p in model.profiles} == set(A100_80GB_LGIP)
    for p in model.profiles:
        pid, gib, max_instances = A100_80GB_LGIP[p.name]
        assert (p.profile_id, p.max_instances, p.memory_mib) == (pid, max_instances, int(gib * 1024)), p.name
