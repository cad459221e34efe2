"""Dynamic Resource Allocation: the DeviceClasses that serve `nvidia.com/mig-<profile>` from
the MIG devices of NVIDIA's DRA driver, and reading what that driver publishes.

Pure: no Kubernetes client; the command (webhook/cli/dra.py) prints, the e2e suite applies.

What this relies on:

- KEP-5004 "DRA: extended resource mapping" (kubernetes/enhancements,
  keps/sig-scheduling/5004-dra-extended-resource; feature gate `DRAExtendedResource`, beta
  and on by default in v1.36): a `resource.k8s.io/v1` DeviceClass with
  `spec.extendedResourceName` lets the scheduler satisfy a container's request for that
  extended resource from the devices the class selects, on nodes that do not advertise
  the resource in their allocatable; the scheduler creates the ResourceClaim itself
  (`<pod>-extended-resources-<suffix>`). docs/install.md "DRA clusters" shows it working
  on v1.36.3 (tests/e2e/test_dra.py).
- NVIDIA's DRA driver, kubernetes-sigs/dra-driver-nvidia-gpu (formerly
  NVIDIA/k8s-dra-driver-gpu), driver name `gpu.nvidia.com`: its kubelet plugin publishes
  each MIG device with the attributes `type` = "mig", `profile` = the MIG profile name as
  nvidia-smi spells it (e.g. "1g.10gb"), `productName` = the parent GPU's NVML name, and
  the capacity `memory` = the profile's MemorySizeMB x 1024 x 1024 bytes
  (cmd/gpu-kubelet-plugin: CommonAttributesMig, CommonCapacitiesMig; MigDeviceInfo.GetDevice
  in deviceinfo.go). Whole GPUs carry `type` = "gpu". Unqualified attribute names are in
  the driver's domain, so CEL reads them as `device.attributes['gpu.nvidia.com'].profile`.
- The driver's Helm chart sets `extendedResourceName: nvidia.com/gpu` on its own
  `gpu.nvidia.com` DeviceClass (whole GPUs), but per-profile MIG classes are admin
  configuration: "Nothing is automated by the driver today" (dra-driver-nvidia-gpu issue
  #939; examples in its PR #940, demo/specs/extended-resources/), hence these classes.

The profile attribute is the bare profile name, the same string on every GPU model that
offers it (A100-80GB's and H100-80GB's `1g.10gb` alike), so one class per profile name
serves every pool that offers it, exactly as one `nvidia.com/mig-1g.10gb` resource does on
device-plugin clusters.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from webhook.core.catalog import Catalog
from webhook.core.constants import GPU_RESOURCE, MIG_RESOURCE_PREFIX, PRODUCT_LABEL
from webhook.core.gpu_product import parse_product_label
from webhook.core.policy import Policy
from webhook.core.quantity import parse_quantity
from webhook.core.sizing import BYTES_PER_MIB

DRIVER = "gpu.nvidia.com"
DEVICE_CLASS_API = "resource.k8s.io/v1"
MIG_DEVICE_TYPE = "mig"
GPU_DEVICE_TYPE = "gpu"

# A DNS subdomain (RFC 1123), what metadata.name of a DeviceClass must be.
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
# A driver name: a DNS subdomain, as ResourceSlice.spec.driver must be.
_DRIVER = _DNS_SUBDOMAIN


def class_name(profile: str, driver: str = DRIVER) -> str:
    """The DeviceClass of ``profile``: "mig-1g.10gb.gpu.nvidia.com". "+" (media-extension
    profiles such as 1g.10gb+me) is not allowed in a name and becomes "-"."""
    name = f"mig-{profile}.{driver}".lower().replace("+", "-")
    if len(name) > 253 or not _DNS_SUBDOMAIN.match(name):
        raise ValueError(f"cannot name a DeviceClass for profile {profile!r}: {name!r} is not a DNS subdomain")
    return name


def selector_expression(profile: str, driver: str = DRIVER) -> str:
    """The CEL expression selecting ``driver``'s MIG devices of ``profile``."""
    if "'" in profile or "\\" in profile:
        raise ValueError(f"profile {profile!r} cannot be quoted in CEL")
    return (
        f"device.driver == '{driver}'"
        f" && device.attributes['{driver}'].type == '{MIG_DEVICE_TYPE}'"
        f" && device.attributes['{driver}'].profile == '{profile}'"
    )


def device_class(profile: str, driver: str = DRIVER, pools: Iterable[str] = ()) -> dict[str, Any]:
    """One DeviceClass that maps nvidia.com/mig-<profile> onto ``driver``'s MIG devices of
    that profile (KEP-5004 `extendedResourceName`)."""
    metadata: dict[str, Any] = {
        "name": class_name(profile, driver),
        "labels": {"app.kubernetes.io/part-of": "gpu-rightsizer"},
    }
    pool_names = list(pools)
    if pool_names:
        metadata["annotations"] = {"gpu-rightsizer.io/pools": ",".join(pool_names)}
    return {
        "apiVersion": DEVICE_CLASS_API,
        "kind": "DeviceClass",
        "metadata": metadata,
        "spec": {
            "extendedResourceName": MIG_RESOURCE_PREFIX + profile,
            "selectors": [{"cel": {"expression": selector_expression(profile, driver)}}],
        },
    }


def device_classes(policy: Policy, pools: Iterable[str] = (), driver: str = DRIVER) -> list[dict[str, Any]]:
    """The DeviceClasses for every MIG profile the policy's mixed-strategy pools offer (only
    the named ``pools`` when given), one per profile name, in the order the pools list them.
    Single-strategy pools are left out: their pods keep nvidia.com/gpu, which the driver
    maps itself. Raises KeyError naming a pool the policy does not have."""
    if not _DRIVER.match(driver) or len(driver) > 63:
        raise ValueError(f"driver {driver!r} is not a DNS subdomain of at most 63 characters")
    wanted = list(pools)
    known = {pool.name for pool in policy.pools}
    unknown = [name for name in wanted if name not in known]
    if unknown:
        raise KeyError(", ".join(unknown))
    offered: dict[str, list[str]] = {}
    for pool in policy.pools:
        if pool.strategy != "mixed" or (wanted and pool.name not in wanted):
            continue
        for profile in pool.profiles:
            offered.setdefault(profile.name, []).append(pool.name)
    return [device_class(profile, driver, names) for profile, names in offered.items()]


# --- reading what the driver publishes ------------------------------------------------


@dataclass(frozen=True)
class SeenProfile:
    """One MIG profile of one GPU product as a cluster reports it."""

    product: str  # GFD product label or the DRA driver's productName
    profile: str
    memory_mib: int | None  # None: the source does not say (device-plugin allocatable)
    count: int  # devices (DRA) or allocatable slices (device plugin) seen
    source: str  # "ResourceSlice" or "node"


def _attr(device: dict[str, Any], name: str, driver: str) -> Any:
    attrs = device.get("attributes") or {}
    value = attrs.get(name)
    if value is None:
        value = attrs.get(f"{driver}/{name}")
    if not isinstance(value, dict):
        return None
    for kind in ("string", "version", "int", "bool"):
        if kind in value:
            return value[kind]
    return None


def _memory_mib(device: dict[str, Any]) -> int | None:
    value = ((device.get("capacity") or {}).get("memory") or {}).get("value")
    if value is None:
        return None
    return int(parse_quantity(str(value)) // BYTES_PER_MIB)


def profiles_from_slices(slices: Iterable[dict[str, Any]], driver: str = DRIVER) -> list[SeenProfile]:
    """The MIG profiles per product in ``driver``'s ResourceSlices, grouped by (productName,
    profile, memory): devices of one profile whose driver reports different memory are
    kept apart, so a difference is not averaged away."""
    counts: dict[tuple[str, str, int | None], int] = {}
    for slice_ in slices:
        spec = slice_.get("spec") or {}
        if spec.get("driver") != driver:
            continue
        for device in spec.get("devices") or []:
            if _attr(device, "type", driver) != MIG_DEVICE_TYPE:
                continue
            profile = _attr(device, "profile", driver)
            if not isinstance(profile, str):
                continue
            product = str(_attr(device, "productName", driver) or "unknown")
            key = (product, profile, _memory_mib(device))
            counts[key] = counts.get(key, 0) + 1
    return [
        SeenProfile(product, profile, memory, count, "ResourceSlice")
        for (product, profile, memory), count in sorted(counts.items(), key=lambda kv: (kv[0][0], kv[0][1]))
    ]


def profiles_from_nodes(nodes: Iterable[dict[str, Any]]) -> list[SeenProfile]:
    """The MIG profiles per product on device-plugin nodes: GFD's product label and the
    node's allocatable nvidia.com/mig-<profile> (which says nothing of memory); on a
    single-strategy node, the label's -MIG-<profile> and its allocatable nvidia.com/gpu."""
    counts: dict[tuple[str, str], int] = {}
    for node in nodes:
        product = ((node.get("metadata") or {}).get("labels") or {}).get(PRODUCT_LABEL)
        if not product:
            continue
        single_profile = parse_product_label(product).mig_profile
        for resource, amount in ((node.get("status") or {}).get("allocatable") or {}).items():
            profile = None
            if resource.startswith(MIG_RESOURCE_PREFIX):
                profile = resource[len(MIG_RESOURCE_PREFIX) :]
            elif resource == GPU_RESOURCE and single_profile:
                profile = single_profile
            if profile:
                try:
                    count = int(str(amount))
                except ValueError:
                    continue
                counts[(product, profile)] = counts.get((product, profile), 0) + count
    return [SeenProfile(product, profile, None, count, "node") for (product, profile), count in sorted(counts.items())]


@dataclass(frozen=True)
class Difference:
    product: str
    profile: str
    what: str


def compare_with_catalog(seen: Iterable[SeenProfile], catalog: Catalog) -> list[Difference]:
    """Where what a cluster reports differs from the built-in catalog: an unknown product,
    a profile the catalog's model lacks, or memory other than the catalog's (less memory
    means a slice sized by the catalog may not hold what the webhook promised). Memory the
    catalog records for one of the drivers it was read on is no difference: the catalog
    sizes with the least of those on purpose (docs/catalog.md)."""
    found = []
    for item in seen:
        # Catalog.lookup reads GFD's -MIG-<profile> / -SHARED suffixes and NVML's spaces.
        model = catalog.lookup(item.product)
        if model is None:
            found.append(Difference(item.product, item.profile, "product not in the built-in catalog"))
            continue
        profile = model.profile(item.profile)
        if profile is None:
            found.append(Difference(item.product, item.profile, f"{model.key} has no such profile in the catalog"))
        elif (
            item.memory_mib is not None
            and item.memory_mib != profile.memory_mib
            and item.memory_mib not in dict(profile.memory_mib_seen).values()
        ):
            delta = item.memory_mib - profile.memory_mib
            found.append(
                Difference(
                    item.product,
                    item.profile,
                    f"driver reports {item.memory_mib} MiB, catalog {profile.memory_mib} MiB ({delta:+d} MiB)",
                )
            )
    return found
