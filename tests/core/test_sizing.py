"""Table-driven sizing: every catalog model at its exact boundaries, the core estimate,
and the choice between pools. Expected profiles are written out by hand from the
catalog's MiB figures (a need of exactly a profile's memory fits; one MiB more does not)."""

from __future__ import annotations

import pytest

from tests.support.fixtures import gpu_pod
from webhook.core.decision import decide
from webhook.core.policy import compile_policy


def one_pool_policy(model: str, **extra) -> object:
    return compile_policy({"pools": [{"name": "p", "gpuModel": model}], **extra})


BOUNDARIES = [
    # model, need (MiB), expected profile (None: larger than every profile)
    ("A30-24GB", 5952, "1g.6gb"),
    ("A30-24GB", 5953, "2g.12gb"),
    ("A30-24GB", 11968, "2g.12gb"),
    ("A30-24GB", 11969, "4g.24gb"),
    ("A30-24GB", 24000, "4g.24gb"),
    ("A30-24GB", 24001, None),
    ("A100-40GB", 1, "1g.5gb"),
    ("A100-40GB", 4864, "1g.5gb"),
    ("A100-40GB", 4865, "1g.10gb"),
    ("A100-40GB", 9856, "1g.10gb"),
    ("A100-40GB", 9857, "3g.20gb"),
    ("A100-40GB", 19968, "3g.20gb"),
    ("A100-40GB", 19969, "7g.40gb"),
    ("A100-40GB", 40192, "7g.40gb"),
    ("A100-40GB", 40193, None),
    ("A100-80GB", 9728, "1g.10gb"),
    ("A100-80GB", 9729, "1g.20gb"),
    ("A100-80GB", 19968, "1g.20gb"),
    ("A100-80GB", 19969, "3g.40gb"),
    ("A100-80GB", 40192, "3g.40gb"),
    ("A100-80GB", 40193, "7g.80gb"),
    ("A100-80GB", 80896, "7g.80gb"),
    ("A100-80GB", 80897, None),
    # H100 and H200: the least memory any driver was seen to give (docs/catalog.md).
    ("H100-80GB", 9856, "1g.10gb"),
    ("H100-80GB", 9857, "1g.20gb"),
    ("H100-80GB", 19968, "1g.20gb"),
    ("H100-80GB", 19969, "3g.40gb"),
    ("H100-80GB", 40192, "3g.40gb"),
    ("H100-80GB", 40193, "7g.80gb"),
    ("H100-80GB", 80896, "7g.80gb"),
    ("H100-80GB", 80897, None),
    ("H100-94GB", 11008, "1g.12gb"),
    ("H100-94GB", 11009, "1g.24gb"),
    ("H100-94GB", 22144, "1g.24gb"),
    ("H100-94GB", 22145, "3g.47gb"),
    ("H100-94GB", 47488, "3g.47gb"),
    ("H100-94GB", 47489, "7g.94gb"),
    ("H100-94GB", 95360, "7g.94gb"),
    ("H100-94GB", 95361, None),
    # The H200's names are not its memory: 1g.18gb has 16.00 GiB.
    ("H200-141GB", 16384, "1g.18gb"),
    ("H200-141GB", 16385, "1g.35gb"),
    ("H200-141GB", 33024, "1g.35gb"),
    ("H200-141GB", 33025, "3g.71gb"),
    ("H200-141GB", 71168, "3g.71gb"),
    ("H200-141GB", 71169, "7g.141gb"),
    ("H200-141GB", 143104, "7g.141gb"),
    ("H200-141GB", 143105, None),
    ("B200-180GB", 20992, "1g.23gb"),
    ("B200-180GB", 20993, "1g.45gb"),
    ("B200-180GB", 45312, "1g.45gb"),
    ("B200-180GB", 45313, "3g.90gb"),
    ("B200-180GB", 90624, "3g.90gb"),
    ("B200-180GB", 90625, "7g.180gb"),
    ("B200-180GB", 181248, "7g.180gb"),
    ("B200-180GB", 181249, None),
    ("RTX-PRO-6000-96GB", 24192, "1g.24gb"),
    ("RTX-PRO-6000-96GB", 24193, "2g.48gb"),
    ("RTX-PRO-6000-96GB", 48512, "2g.48gb"),
    ("RTX-PRO-6000-96GB", 48513, "4g.96gb"),
    ("RTX-PRO-6000-96GB", 97280, "4g.96gb"),
    ("RTX-PRO-6000-96GB", 97281, None),
    ("GH200-96GB", 11008, "1g.12gb"),
    ("GH200-96GB", 11009, "1g.24gb"),
    ("GH200-96GB", 22144, "1g.24gb"),
    ("GH200-96GB", 22145, "3g.48gb"),
    ("GH200-96GB", 47488, "3g.48gb"),
    ("GH200-96GB", 47489, "7g.96gb"),
    ("GH200-96GB", 95360, "7g.96gb"),
    ("GH200-96GB", 95361, None),
    ("H20-96GB", 11008, "1g.12gb"),
    ("H20-96GB", 95361, None),
    ("GH200-144GB", 17920, "1g.18gb"),
    ("GH200-144GB", 17921, "1g.36gb"),
    ("GH200-144GB", 36096, "1g.36gb"),
    ("GH200-144GB", 36097, "3g.72gb"),
    ("GH200-144GB", 72192, "3g.72gb"),
    ("GH200-144GB", 72193, "7g.144gb"),
    ("GH200-144GB", 144384, "7g.144gb"),
    ("GH200-144GB", 144385, None),
    ("GB200-186GB", 20480, "1g.23gb"),
    ("GB200-186GB", 20481, "1g.47gb"),
    ("GB200-186GB", 46592, "1g.47gb"),
    ("GB200-186GB", 46593, "3g.93gb"),
    ("GB200-186GB", 93184, "3g.93gb"),
    ("GB200-186GB", 93185, "7g.186gb"),
    ("GB200-186GB", 186368, "7g.186gb"),
    ("GB200-186GB", 186369, None),
    ("B300-288GB", 29568, "1g.34gb"),
    ("B300-288GB", 29569, "1g.67gb"),
    ("B300-288GB", 58240, "1g.67gb"),
    ("B300-288GB", 58241, "3g.135gb"),
    ("B300-288GB", 117504, "3g.135gb"),
    ("B300-288GB", 117505, "7g.269gb"),
    ("B300-288GB", 234112, "7g.269gb"),
    ("B300-288GB", 234113, None),
    ("GB300-278GB", 30464, "1g.35gb"),
    ("GB300-278GB", 30465, "1g.70gb"),
    ("GB300-278GB", 60928, "1g.70gb"),
    ("GB300-278GB", 60929, "3g.139gb"),
    ("GB300-278GB", 120960, "3g.139gb"),
    ("GB300-278GB", 120961, "7g.278gb"),
    ("GB300-278GB", 241920, "7g.278gb"),
    ("GB300-278GB", 241921, None),
    # RTX PRO 5000: 1g.12gb has fewer instances than 1g.12gb-me (same memory and slices).
    ("RTX-PRO-5000-48GB", 10368, "1g.12gb-me"),
    ("RTX-PRO-5000-48GB", 10369, "2g.24gb-me"),
    ("RTX-PRO-5000-48GB", 20864, "2g.24gb-me"),
    ("RTX-PRO-5000-48GB", 20865, "4g.48gb"),
    ("RTX-PRO-5000-48GB", 41728, "4g.48gb"),
    ("RTX-PRO-5000-48GB", 41729, None),
]


@pytest.mark.parametrize("model, need_mib, expected", BOUNDARIES)
def test_smallest_fitting_profile_at_exact_boundaries(model, need_mib, expected):
    policy = one_pool_policy(model)
    decision = decide(gpu_pod({"gpu-rightsizer.io/gpu-memory": f"{need_mib}Mi"}), policy)
    if expected is None:
        assert decision.action == "whole-gpu"
        assert decision.profile is None
    else:
        assert decision.action == "rewrite"
        assert decision.profile.name == expected


def test_boundaries_cover_every_catalog_model():
    from webhook.core.catalog import builtin_catalog

    assert {m for m, _, _ in BOUNDARIES} == set(builtin_catalog().keys)


CORE_ESTIMATES = [
    # annotations, expected profile on the default H100-80GB pool, need in GiB (2 decimals)
    ({"model-size": "7b"}, "1g.20gb", "15.65"),  # 7e9 x 2 x 1.2 = 16.8e9 B
    ({"model-size": "3b"}, "1g.10gb", "6.71"),  # 7.2e9 B
    ({"model-size": "13B"}, "3g.40gb", "29.06"),  # 31.2e9 B
    ({"model-size": "34b", "precision": "int4"}, "1g.20gb", "19.00"),  # 20.4e9 B = 19455 MiB
    ({"model-size": "70b", "precision": "int4"}, "3g.40gb", "39.12"),  # 42e9 B = 40054 MiB
    ({"model-size": "65b", "precision": "int8"}, "7g.80gb", "72.64"),  # 78e9 B
    ({"model-size": "30b", "precision": "fp8"}, "3g.40gb", "33.53"),  # 36e9 B
    ({"model-size": "350m", "precision": "fp32"}, "1g.10gb", "1.56"),  # 1.68e9 B
    ({"model-size": "1.5b", "precision": "bf16"}, "1g.10gb", "3.35"),  # 3.6e9 B
    ({"model-size": "560000000"}, "1g.10gb", "1.25"),  # 1.344e9 B
    # 4306152106 x 2.4 = 10334765054.4 B, just under 9856 MiB (1g.10gb on every driver seen):
    # fits 1g.10gb; one more param (10334765056.8 B) does not.
    ({"model-size": "4306152106"}, "1g.10gb", "9.62"),
    ({"model-size": "4306152107"}, "1g.20gb", "9.63"),
    ({"model-size": "0.5t", "precision": "int4"}, None, "279.40"),  # 3e11 B: whole GPU
]


@pytest.mark.parametrize("annotations, expected, gib", CORE_ESTIMATES)
def test_core_estimate_params_x_bytes_x_overhead(policy, annotations, expected, gib):
    pod = gpu_pod({f"gpu-rightsizer.io/{k}": v for k, v in annotations.items()})
    decision = decide(pod, policy)
    assert f"{decision.need.gib:.2f}" == gib
    assert (decision.profile.name if decision.profile else None) == expected
    assert f"= {gib} GiB" in decision.message


def test_overhead_factor_comes_from_the_policy(policy):
    pod = gpu_pod({"gpu-rightsizer.io/model-size": "5b"})
    plain = decide(pod, one_pool_policy("H100-80GB", estimate={"overheadFactor": 1.0}))
    assert plain.need.bytes == 10_000_000_000  # 9.31 GiB
    assert plain.profile.name == "1g.10gb"
    default = decide(pod, policy)  # x 1.2 = 11.18 GiB
    assert default.need.bytes == 12_000_000_000
    assert default.profile.name == "1g.20gb"


MULTI_POOL = {
    "pools": [
        {"name": "h100", "gpuModel": "H100-80GB"},
        {"name": "a100", "gpuModel": "A100-40GB", "nodeSelector": {"nvidia.com/gpu.product": "NVIDIA-A100-SXM4-40GB"}},
        {"name": "h100-twin", "gpuModel": "NVIDIA-H100-80GB-HBM3"},
        {"name": "nvl", "gpuModel": "H100-94GB"},
    ]
}


@pytest.mark.parametrize(
    "memory, pool, profile",
    [
        ("4Gi", "a100", "1g.5gb"),  # A100 1g.5gb 4864 MiB wastes least
        ("9Gi", "h100", "1g.10gb"),  # H100 and A100 1g.10gb: 9856 MiB each, a tie -> the first pool
        ("10Gi", "nvl", "1g.12gb"),  # 10240 MiB: over every 1g.10gb; NVL 1g.12gb 11008 < 1g.20gb 19968
        ("19Gi", "h100", "1g.20gb"),  # H100 1g.20gb and A100 3g.20gb: 19968 MiB each -> first pool
        ("19.6Gi", "nvl", "1g.24gb"),  # 20070 MiB: over every 19968 MiB slice; NVL 1g.24gb 22144
        ("39.3Gi", "nvl", "3g.47gb"),  # 40243 MiB: over H100 3g.40gb's 40192
        ("79Gi", "h100", "7g.80gb"),  # 80896 MiB: H100 7g.80gb exactly, tie with its twin -> first
    ],
)
def test_the_pool_that_wastes_least_wins_and_ties_go_to_the_first(memory, pool, profile):
    decision = decide(gpu_pod({"gpu-rightsizer.io/gpu-memory": memory}), compile_policy(MULTI_POOL))
    assert (decision.pool.name, decision.profile.name) == (pool, profile)


def test_a_pool_offers_only_its_listed_profiles():
    policy = compile_policy({"pools": [{"name": "p", "gpuModel": "H100-80GB", "profiles": ["3g.40gb", "7g.80gb"]}]})
    decision = decide(gpu_pod({"gpu-rightsizer.io/model-size": "1b"}), policy)
    assert decision.profile.name == "3g.40gb"


def test_media_extension_profiles_are_picked_only_when_listed():
    listed = compile_policy({"pools": [{"name": "p", "gpuModel": "H100-80GB", "profiles": ["1g.10gb+me", "7g.80gb"]}]})
    assert decide(gpu_pod({"gpu-rightsizer.io/model-size": "1b"}), listed).profile.name == "1g.10gb+me"
    both = compile_policy({"pools": [{"name": "p", "gpuModel": "H100-80GB", "profiles": ["1g.10gb+me", "1g.10gb"]}]})
    # Same memory and slices: the one with more instances per GPU wins.
    assert decide(gpu_pod({"gpu-rightsizer.io/model-size": "1b"}), both).profile.name == "1g.10gb"


def test_same_memory_goes_to_fewer_compute_slices():
    policy = one_pool_policy("H100-80GB")
    decision = decide(gpu_pod({"gpu-rightsizer.io/gpu-memory": "19Gi"}), policy)
    assert decision.profile.name == "1g.20gb"  # not 2g.20gb (same 19968 MiB)
    decision = decide(gpu_pod({"gpu-rightsizer.io/gpu-memory": "30Gi"}), policy)
    assert decision.profile.name == "3g.40gb"  # not 4g.40gb
