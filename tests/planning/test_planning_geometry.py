import re

import pytest

from tests.support.fixtures import mig_profile_table
from tests.support.layouts import count_vectors, layout_problems
from webhook.core.catalog import builtin_catalog
from webhook.planning.geometry import all_layouts, configurations, realise

CATALOG = builtin_catalog()
H100 = CATALOG.lookup("H100-80GB")


def _table(name: str) -> dict[int, tuple[int, list[int], int]]:
    """profile id -> (instances total, placement starts, size) from -lgip / -lgipp."""
    text = mig_profile_table(name)
    totals = {int(m.group(1)): int(m.group(2)) for m in re.finditer(r"MIG \S+\s+(\d+)\s+\d+/(\d+)", text)}
    out = {}
    for m in re.finditer(r"Profile ID\s+(\d+) Placements?\s*: \{([\d,]+)\}:(\d+)", text):
        pid = int(m.group(1))
        out[pid] = (totals[pid], [int(s) for s in m.group(2).split(",")], int(m.group(3)))
    return out


@pytest.mark.parametrize("filename,model_key", [("h100-80gb-hbm3.txt", "H100-80GB"), ("h200-141gb.txt", "H200-141GB")])
def test_homogeneous_maximum_matches_real_gpu_tables(filename, model_key):
    """The most instances of one profile the enumeration fits on a GPU is the
    `Instances Total` a real GPU reports, and the placements are the real ones."""
    table = _table(filename)
    model = CATALOG.lookup(model_key)
    assert table, "no profiles parsed from the table"
    for profile in model.profiles:
        total, starts, size = table[profile.profile_id]
        assert list(profile.placement_starts) == starts and profile.placement_size == size
        most = max(l.counts.get(profile.name, 0) for l in all_layouts(model) if set(l.counts) == {profile.name})
        assert most == total, profile.name


@pytest.mark.parametrize(
    "counts",
    [
        {"1g.10gb": 7},
        {"2g.20gb": 3},
        {"2g.20gb": 3, "1g.10gb": 1},
        {"4g.40gb": 1, "3g.40gb": 1},
        {"3g.40gb": 2},
        {"1g.20gb": 4},
        {"7g.80gb": 1},
        {"4g.40gb": 1, "2g.20gb": 1, "1g.10gb": 1},
        {"3g.40gb": 1, "2g.20gb": 1, "1g.10gb": 2},
        {"1g.10gb": 1, "1g.10gb+me": 1, "3g.40gb": 1},
    ],
)
def test_known_valid_h100_layouts(counts):
    layout = realise(H100, counts)
    assert layout is not None
    assert layout_problems("H100-80GB", [(i.profile, i.start, i.size) for i in layout.instances]) == []


@pytest.mark.parametrize(
    "counts",
    [
        {"1g.10gb": 8},  # 7 compute slices
        {"4g.40gb": 2},
        {"3g.40gb": 2, "1g.10gb": 1},  # both halves taken
        {"1g.20gb": 4, "1g.10gb": 1},  # all eight memory slices taken
        {"7g.80gb": 1, "1g.10gb": 1},
        {"1g.10gb+me": 2},
    ],
)
def test_known_invalid_h100_layouts(counts):
    assert realise(H100, counts) is None


def test_three_2g_and_a_1g20_is_valid():
    # 2g.20gb at 0, 2, 4 and 1g.20gb at 6: eight memory slices, seven compute slices.
    assert realise(H100, {"2g.20gb": 3, "1g.20gb": 1}) is not None


@pytest.mark.parametrize("model_key", ["H100-80GB", "A30-24GB"])
def test_enumeration_equals_independent_brute_force(model_key):
    model = CATALOG.lookup(model_key)
    names = [p.name for p in model.default_profiles]
    ours = {l.key for l in configurations(model, model.default_profiles)}
    assert ours == count_vectors(model_key, names)


def test_every_enumerated_layout_passes_the_checker():
    for model in CATALOG.models.values():
        for layout in configurations(model):
            assert layout_problems(model.key, [(i.profile, i.start, i.size) for i in layout.instances]) == [], (
                model.key,
                layout,
            )
