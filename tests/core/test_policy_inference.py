"""The policy's inference-estimate constants and pool strategy."""

from __future__ import annotations

from fractions import Fraction

import pytest

from webhook.core.errors import PolicyError
from webhook.core.policy import default_policy, parse_policy_yaml

POOLS = "pools: [{name: h, gpuModel: H100-80GB}]\n"


def test_defaults():
    policy = default_policy()
    assert (policy.activation_mib, policy.runtime_overhead_mib) == (1536, 768)
    assert policy.gpu_memory_utilization == Fraction(9, 10)
    assert all(p.strategy == "mixed" for p in policy.pools)
    # A policy that does not mention them gets the same defaults.
    bare = parse_policy_yaml(POOLS)
    assert (bare.activation_mib, bare.runtime_overhead_mib, bare.gpu_memory_utilization) == (1536, 768, Fraction(9, 10))


def test_values_are_read_exactly():
    policy = parse_policy_yaml(
        POOLS + "estimate: {activationMiB: 0, runtimeOverheadMiB: 2048, gpuMemoryUtilization: 0.95}\n"
    )
    assert (policy.activation_mib, policy.runtime_overhead_mib) == (0, 2048)
    assert policy.gpu_memory_utilization == Fraction(19, 20)
    assert parse_policy_yaml(POOLS + "estimate: {gpuMemoryUtilization: 1}\n").gpu_memory_utilization == 1


@pytest.mark.parametrize(
    "estimate,path",
    [
        ("{activationMiB: -1}", "estimate.activationMiB"),
        ("{runtimeOverheadMiB: 1.5}", "estimate.runtimeOverheadMiB"),
        ("{gpuMemoryUtilization: 0}", "estimate.gpuMemoryUtilization"),
        ("{gpuMemoryUtilization: 1.1}", "estimate.gpuMemoryUtilization"),
        ("{activationMib: 10}", "estimate.activationMib"),  # the spelling is activationMiB
    ],
)
def test_bad_values_name_the_field(estimate, path):
    with pytest.raises(PolicyError, match="^" + path.replace(".", r"\.")):
        parse_policy_yaml(POOLS + f"estimate: {estimate}\n")


def test_single_pool_product():
    policy = parse_policy_yaml(
        "pools:\n"
        "  - {name: a, gpuModel: H100-80GB, strategy: single, nodeSelector: {nvidia.com/gpu.product: NVIDIA-H100-80GB-HBM3}}\n"
        "  - {name: b, gpuModel: H200-141GB, strategy: single}\n"
    )
    a, b = policy.pools
    assert a.mig_product(a.profiles[0]) == "NVIDIA-H100-80GB-HBM3-MIG-1g.10gb"
    assert b.product == b.model.aliases[0]
