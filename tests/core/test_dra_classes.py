"""webhook/core/dra.py: the DeviceClasses per MIG profile, and reading what a cluster reports."""

from __future__ import annotations

import pytest

from webhook.core import dra
from webhook.core.catalog import builtin_catalog
from webhook.core.policy import default_policy, parse_policy_yaml

POLICY = """\
pools:
  - {name: h100, gpuModel: H100-80GB, profiles: [1g.10gb, 3g.40gb]}
  - {name: a100, gpuModel: A100-80GB, profiles: [1g.10gb, 2g.20gb]}
  - {name: a100-single, gpuModel: A100-40GB, strategy: single, profiles: [3g.20gb]}
"""


def test_one_class_per_profile_name_shared_by_the_pools_that_offer_it():
    classes = dra.device_classes(parse_policy_yaml(POLICY))
    assert [c["metadata"]["name"] for c in classes] == [
        "mig-1g.10gb.gpu.nvidia.com",
        "mig-3g.40gb.gpu.nvidia.com",
        "mig-2g.20gb.gpu.nvidia.com",
    ]
    first = classes[0]
    assert first["apiVersion"] == "resource.k8s.io/v1" and first["kind"] == "DeviceClass"
    assert first["metadata"]["annotations"] == {"gpu-rightsizer.io/pools": "h100,a100"}
    assert first["spec"]["extendedResourceName"] == "nvidia.com/mig-1g.10gb"
    assert first["spec"]["selectors"] == [
        {
            "cel": {
                "expression": "device.driver == 'gpu.nvidia.com' && device.attributes['gpu.nvidia.com'].type == 'mig'"
                " && device.attributes['gpu.nvidia.com'].profile == '1g.10gb'"
            }
        }
    ]
    # the single-strategy pool keeps nvidia.com/gpu: no class for its 3g.20gb
    assert "mig-3g.20gb.gpu.nvidia.com" not in {c["metadata"]["name"] for c in classes}


def test_pool_filter_driver_and_errors():
    policy = parse_policy_yaml(POLICY)
    assert [c["metadata"]["name"] for c in dra.device_classes(policy, ["a100"])] == [
        "mig-1g.10gb.gpu.nvidia.com",
        "mig-2g.20gb.gpu.nvidia.com",
    ]
    assert dra.device_classes(policy, ["a100-single"]) == []
    other = dra.device_classes(policy, ["h100"], driver="mig.example.com")
    assert other[0]["metadata"]["name"] == "mig-1g.10gb.mig.example.com"
    assert (
        "device.attributes['mig.example.com'].profile == '1g.10gb'"
        in other[0]["spec"]["selectors"][0]["cel"]["expression"]
    )
    with pytest.raises(KeyError):
        dra.device_classes(policy, ["nope"])
    with pytest.raises(ValueError):
        dra.device_classes(policy, driver="Not A Name")


def test_media_extension_profiles_get_a_valid_name():
    cls = dra.device_class("1g.10gb+me")
    assert cls["metadata"]["name"] == "mig-1g.10gb-me.gpu.nvidia.com"
    assert cls["spec"]["extendedResourceName"] == "nvidia.com/mig-1g.10gb+me"


def test_the_default_policy_gives_its_pools_profiles():
    policy = default_policy()
    names = [c["spec"]["extendedResourceName"] for c in dra.device_classes(policy)]
    assert names == [f"nvidia.com/mig-{p.name}" for p in policy.pools[0].profiles]


def _device(name, profile, memory, product="NVIDIA H100 80GB HBM3", kind="mig"):
    return {
        "name": name,
        "attributes": {"type": {"string": kind}, "profile": {"string": profile}, "productName": {"string": product}},
        "capacity": {"memory": {"value": memory}},
    }


def test_slices_grouped_by_product_profile_and_memory():
    slices = [
        {
            "spec": {
                "driver": "gpu.nvidia.com",
                "devices": [
                    _device("a", "1g.10gb", "9984Mi"),
                    _device("b", "1g.10gb", "9984Mi"),
                    _device("c", "1g.10gb", "9728Mi"),  # another node's older driver: kept apart
                    _device("g", "", "80Gi", kind="gpu"),
                ],
            }
        },
        {"spec": {"driver": "other.example.com", "devices": [_device("x", "1g.10gb", "1Gi")]}},
    ]
    seen = dra.profiles_from_slices(slices)
    assert [(s.product, s.profile, s.memory_mib, s.count) for s in seen] == [
        ("NVIDIA H100 80GB HBM3", "1g.10gb", 9984, 2),
        ("NVIDIA H100 80GB HBM3", "1g.10gb", 9728, 1),
    ]
    diffs = dra.compare_with_catalog(seen, builtin_catalog())
    # 9984 MiB is what R580 gives (the catalog records it and sizes with the older 9856):
    # no difference. 9728 MiB is below anything recorded.
    assert [(d.profile, d.what) for d in diffs] == [("1g.10gb", "driver reports 9728 MiB, catalog 9856 MiB (-128 MiB)")]


def test_nodes_and_gfd_suffixes():
    nodes = [
        {
            "metadata": {"labels": {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3-SHARED"}},
            "status": {"allocatable": {"nvidia.com/mig-1g.10gb": "7", "cpu": "8"}},
        },
        {
            "metadata": {"labels": {"nvidia.com/gpu.product": "NVIDIA-A100-SXM4-40GB-MIG-3g.20gb"}},
            "status": {"allocatable": {"nvidia.com/gpu": "2"}},
        },
        {
            "metadata": {"labels": {"nvidia.com/gpu.product": "NVIDIA-A100-SXM4-40GB"}},
            "status": {"allocatable": {"nvidia.com/mig-9g.99gb": "1"}},
        },
        {
            "metadata": {"labels": {"nvidia.com/gpu.product": "NVIDIA-V100"}},
            "status": {"allocatable": {"nvidia.com/mig-1g.5gb": "1"}},
        },
    ]
    seen = dra.profiles_from_nodes(nodes)
    assert [(s.product, s.profile, s.memory_mib, s.count) for s in seen] == [
        ("NVIDIA-A100-SXM4-40GB", "9g.99gb", None, 1),
        # single strategy: the profile from the label, the count from nvidia.com/gpu
        ("NVIDIA-A100-SXM4-40GB-MIG-3g.20gb", "3g.20gb", None, 2),
        ("NVIDIA-H100-80GB-HBM3-SHARED", "1g.10gb", None, 7),
        ("NVIDIA-V100", "1g.5gb", None, 1),
    ]
    catalog = builtin_catalog()
    assert [(d.product, d.what) for d in dra.compare_with_catalog(seen, catalog)] == [
        ("NVIDIA-A100-SXM4-40GB", "A100-40GB has no such profile in the catalog"),
        ("NVIDIA-V100", "product not in the built-in catalog"),
    ]
