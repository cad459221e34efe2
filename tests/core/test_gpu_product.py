"""GFD product labels read and written in one place, every suffix combination.

GFD (NVIDIA/k8s-device-plugin internal/lm/resource.go getProductName) writes
`<product>[-MIG-<profile>][-SHARED]`; its own tests expect "MOCKMODEL-MIG-1g.300gb-SHARED".
"""

from __future__ import annotations

import pytest

from tests.support.fixtures import gpu_pod
from webhook.core.catalog import builtin_catalog
from webhook.core.decision import decide
from webhook.core.errors import PolicyError
from webhook.core.gpu_product import ProductLabel, parse_product_label, sanitise
from webhook.core.policy import compile_policy, profile_node_requirements
from webhook.planning.live import node_pool

CASES = [
    # label, product, MIG profile, shared
    ("NVIDIA-H100-80GB-HBM3", "NVIDIA-H100-80GB-HBM3", None, False),
    ("NVIDIA-H100-80GB-HBM3-SHARED", "NVIDIA-H100-80GB-HBM3", None, True),
    ("NVIDIA-H100-80GB-HBM3-MIG-1g.10gb", "NVIDIA-H100-80GB-HBM3", "1g.10gb", False),
    ("NVIDIA-H100-80GB-HBM3-MIG-1g.10gb-SHARED", "NVIDIA-H100-80GB-HBM3", "1g.10gb", True),
    # a profile with a dash of its own (RTX PRO 6000's 1g.24gb-me)
    (
        "NVIDIA-RTX-PRO-6000-Blackwell-Server-Edition-MIG-1g.24gb-me-SHARED",
        "NVIDIA-RTX-PRO-6000-Blackwell-Server-Edition",
        "1g.24gb-me",
        True,
    ),
]


@pytest.mark.parametrize("label, product, profile, shared", CASES)
def test_every_suffix_combination_reads_and_writes_back(label, product, profile, shared):
    parsed = parse_product_label(label)
    assert parsed == ProductLabel(product, profile, shared)
    assert parsed.value == label


def test_nvml_names_and_plus_signs_are_sanitised_as_gfd_does():
    # sanitise drops what is not [A-Za-z0-9-_. ] and joins blanks with "-".
    assert sanitise("NVIDIA  H100 80GB HBM3") == "NVIDIA-H100-80GB-HBM3"
    assert ProductLabel("NVIDIA H200", "1g.18gb+me").value == "NVIDIA-H200-MIG-1g.18gbme"
    assert parse_product_label("NVIDIA H200") == ProductLabel("NVIDIA-H200")


@pytest.mark.parametrize(
    "name, key",
    [
        ("NVIDIA-H800-MIG-1g.10gb-SHARED", "H100-80GB"),
        ("NVIDIA-A800-80GB-PCIe-SHARED", "A100-80GB"),
        ("NVIDIA H20", "H20-96GB"),
        ("nvidia-gb200-mig-1g.23gb", "GB200-186GB"),
        ("NVIDIA-GH200-144G-HBM3e-MIG-3g.72gb", "GH200-144GB"),
        # NVML names of the driver's Compatible GPUs table (PCI 0x3182, 0x2342)
        ("NVIDIA B300 SXM6 AC", "B300-288GB"),
        ("NVIDIA-B300-SXM6-AC-MIG-1g.34gbme", "B300-288GB"),
        ("NVIDIA GH200 120GB", "GH200-96GB"),
    ],
)
def test_catalog_lookup_reads_the_suffixes(name, key):
    assert builtin_catalog().lookup(name).key == key


def _node(product: str) -> dict:
    return {"metadata": {"name": "n", "labels": {"nvidia.com/gpu.product": product}}, "status": {}}


@pytest.mark.parametrize("label", [c[0] for c in CASES[:4]])
def test_the_planner_finds_the_pool_of_every_label_form(label):
    policy = compile_policy({"pools": [{"name": "a", "gpuModel": "A100-40GB"}, {"name": "h", "gpuModel": "H100-80GB"}]})
    assert node_pool(_node(label), policy).name == "h"


def test_a_single_pool_on_shared_nodes_pins_the_shared_label():
    policy = compile_policy(
        {
            "pools": [
                {
                    "name": "h",
                    "gpuModel": "H100-80GB",
                    "strategy": "single",
                    "profiles": ["1g.20gb"],
                    "nodeSelector": {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3-SHARED"},
                }
            ]
        }
    )
    pool = policy.pools[0]
    assert (pool.product, pool.shared) == ("NVIDIA-H100-80GB-HBM3", True)
    required = profile_node_requirements(policy, pool, pool.profiles[0])
    assert {
        "key": "nvidia.com/gpu.product",
        "operator": "In",
        "values": ["NVIDIA-H100-80GB-HBM3-MIG-1g.20gb-SHARED"],
    } in required
    decision = decide(gpu_pod({"gpu-rightsizer.io/gpu-memory": "10Gi"}), policy)
    assert decision.profile.name == "1g.20gb"


@pytest.mark.parametrize(
    "pool, message",
    [
        (
            {"strategy": "mixed", "nodeSelector": {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3-MIG-1g.10gb"}},
            "pools[0].nodeSelector.nvidia.com/gpu.product: 'NVIDIA-H100-80GB-HBM3-MIG-1g.10gb' is a single-strategy label",
        ),
        (
            {"strategy": "single", "nodeSelector": {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3-MIG-1g.10gb"}},
            "names only 1g.10gb nodes; the pool's profiles must then be exactly [1g.10gb]",
        ),
        (
            {"nodeSelector": {"nvidia.com/gpu.product": "NVIDIA-H200-SHARED"}},
            "'NVIDIA-H200-SHARED' is a H200-141GB product, not the pool's gpuModel H100-80GB; accepted: NVIDIA-H100-80GB-HBM3",
        ),
    ],
)
def test_product_selectors_are_validated_with_the_field_path(pool, message):
    with pytest.raises(PolicyError) as err:
        compile_policy({"pools": [{"name": "h", "gpuModel": "H100-80GB", **pool}]})
    assert message in str(err.value)


def test_a_single_pool_may_select_its_one_profile_label():
    policy = compile_policy(
        {
            "pools": [
                {
                    "name": "h",
                    "gpuModel": "H100-80GB",
                    "strategy": "single",
                    "profiles": ["1g.10gb"],
                    "nodeSelector": {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3-MIG-1g.10gb"},
                }
            ]
        }
    )
    pool = policy.pools[0]
    assert pool.mig_product(pool.profiles[0]) == "NVIDIA-H100-80GB-HBM3-MIG-1g.10gb"
