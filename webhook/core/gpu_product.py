"""GPU feature discovery's `nvidia.com/gpu.product` value: read and written in one place.

GFD (now in NVIDIA/k8s-device-plugin, internal/lm/resource.go) builds the value in
`resourceLabeler.getProductName(parts...)`:

- each part goes through `sanitise`: every character outside `[A-Za-z0-9-_. ]` is
  dropped, then runs of blanks become one `-` (NVML's "NVIDIA H100 80GB HBM3" is
  labelled "NVIDIA-H100-80GB-HBM3"; a `+` in a MIG profile is dropped, so
  "1g.10gb+me" becomes "1g.10gbme");
- the parts are the GPU's NVML name, and on a `single`-strategy MIG node also "MIG" and
  the MIG device's profile (`NewMIGResourceLabeler`: `baseLabeler(count, model, "MIG",
  migProfile)`);
- when the resource is shared (time-slicing or MPS replicas) and not renamed,
  "SHARED" is appended last (`rl.isShared() && !rl.isRenamed()`).

So a label reads `<product>[-MIG-<profile>][-SHARED]`, in that order
(internal/lm/resource_test.go expects "MOCKMODEL-MIG-1g.300gb-SHARED"). NVIDIA's DRA
driver publishes the NVML name itself (`productName`, spaces and all), which this module
reads the same way.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

SHARED_SUFFIX = "SHARED"
MIG_PART = "MIG"

# internal/lm/resource.go, sanitise: regexp "[^A-Za-z0-9-_. ]" removed.
_NOT_KEPT = re.compile(r"[^A-Za-z0-9\-_. ]")
_SHARED = re.compile(rf"-{SHARED_SUFFIX}$", re.IGNORECASE)
# The first "-MIG-": a profile may hold a dash itself (RTX PRO 6000's "1g.24gb-me").
_MIG = re.compile(rf"^(?P<product>.+?)-{MIG_PART}-(?P<profile>.+)$", re.IGNORECASE)


def sanitise(part: str) -> str:
    """One part of a GFD product label, as GFD writes it (its `sanitise`)."""
    return "-".join(_NOT_KEPT.sub("", part).split())


@dataclass(frozen=True)
class ProductLabel:
    """What one `nvidia.com/gpu.product` value says about a node's GPUs."""

    product: str  # the GPU's NVML name as GFD writes it, e.g. "NVIDIA-H100-80GB-HBM3"
    mig_profile: str | None = None  # single strategy: the MIG profile every GPU is split into
    shared: bool = False  # time-sliced or MPS-shared, not renamed

    @property
    def value(self) -> str:
        """The label value GFD writes for this product, profile and sharing."""
        parts = [sanitise(self.product)]
        if self.mig_profile is not None:
            parts += [MIG_PART, sanitise(self.mig_profile)]
        if self.shared:
            parts.append(SHARED_SUFFIX)
        return "-".join(parts)


def parse_product_label(value: str) -> ProductLabel:
    """A GFD label or an NVML product name, split into the GPU's product, the MIG profile
    of a single-strategy node and the sharing suffix (matched without regard to case, as
    catalog names are)."""
    name = sanitise(value)
    shared = bool(_SHARED.search(name))
    if shared:
        name = _SHARED.sub("", name)
    mig = _MIG.match(name)
    if mig:
        return ProductLabel(mig.group("product"), mig.group("profile"), shared)
    return ProductLabel(name, None, shared)
