"""Sizing: how much GPU memory a pod needs, and which MIG profile of which pool fits it.

Pure functions of their arguments. Memory is compared in bytes, exactly (Fraction), so
a need of exactly a profile's usable memory fits it and one byte more does not.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from fractions import Fraction

from webhook.core.annotations import BYTES_PER_PARAM
from webhook.core.catalog import MIB_PER_GIB, MigProfile
from webhook.core.policy import Pool

BYTES_PER_MIB = 1024 * 1024
BYTES_PER_GIB = BYTES_PER_MIB * MIB_PER_GIB


@dataclass(frozen=True)
class MemoryNeed:
    bytes: int  # rounded up to a whole byte
    explanation: str  # the arithmetic, one line: "7B params x 2 B (fp16) x 1.2 = 15.65 GiB"
    # The fraction of a slice the workload may use (a serving engine's
    # gpu_memory_utilization); a profile fits when bytes <= utilization x its memory.
    utilization: Fraction = Fraction(1)

    @property
    def gib(self) -> float:
        return self.bytes / BYTES_PER_GIB

    def fits(self, profile: MigProfile) -> bool:
        # bytes <= utilization x memory, cross-multiplied: exact, and integer arithmetic
        # instead of building Fractions (the hot spot of a decision, per profile).
        u = self.utilization
        return self.bytes * u.denominator <= u.numerator * profile.memory_mib * BYTES_PER_MIB


@dataclass(frozen=True)
class PoolChoice:
    pool: Pool
    profile: MigProfile


def format_gib(n_bytes: float) -> str:
    return f"{n_bytes / BYTES_PER_GIB:.2f} GiB"


def format_params(params: float) -> str:
    for suffix, scale in (("T", 1e12), ("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if params >= scale:
            return f"{params / scale:.4g}{suffix}"
    return f"{params:.4g}"


@functools.lru_cache(maxsize=64)
def _decimal_ratio(value: float) -> tuple[int, int]:
    """The factor as written (1.2 is 6/5, not the binary float nearest to it)."""
    return Fraction(str(value)).as_integer_ratio()


def weights_need(params: float, precision: str, overhead_factor: float) -> MemoryNeed:
    """The core estimate: parameters x bytes per parameter x overhead factor."""
    # The same exact product as Fraction(params) * Fraction(bytes) * Fraction(str(factor)),
    # in integers: building Fractions was 40% of a decision (bench/bench_decide.py).
    p_num, p_den = params.as_integer_ratio()
    b_num, b_den = BYTES_PER_PARAM[precision].as_integer_ratio()
    f_num, f_den = _decimal_ratio(overhead_factor)
    n_bytes = -(-(p_num * b_num * f_num) // (p_den * b_den * f_den))
    return MemoryNeed(
        bytes=n_bytes,
        explanation=(
            f"{format_params(params)} params x {BYTES_PER_PARAM[precision]:g} B ({precision}) "
            f"x {overhead_factor:g} = {format_gib(n_bytes)}"
        ),
    )


def explicit_need(n_bytes: float, shown: str) -> MemoryNeed:
    n = math.ceil(n_bytes)
    return MemoryNeed(bytes=n, explanation=f"gpu-memory {shown} = {format_gib(n)}")


def describe_fit(need: MemoryNeed, profile: MigProfile) -> str:
    """Why ``need`` fits ``profile``: `... fits 3g.40gb (39.50 GiB usable)`, or with a
    utilization below 1 the comparison itself: `... <= 0.9 x 39.50 GiB of 3g.40gb`."""
    usable = format_gib(profile.memory_mib * BYTES_PER_MIB)
    if need.utilization == 1:
        return f"{need.explanation} fits {profile.name} ({usable} usable)"
    return f"{need.explanation} <= {float(need.utilization):g} x {usable} of {profile.name}"


def describe_excess(need: MemoryNeed, profile: MigProfile) -> str:
    """The lead of an oversize message: the core's `... = 156.46 GiB`, or with a
    utilization below 1 the failed comparison `... > 0.9 x 79.25 GiB of 7g.80gb:`."""
    if need.utilization == 1:
        return need.explanation
    usable = format_gib(profile.memory_mib * BYTES_PER_MIB)
    return f"{need.explanation} > {float(need.utilization):g} x {usable} of {profile.name}:"


def select_profile(need: MemoryNeed, profiles: Iterable[MigProfile]) -> MigProfile | None:
    """The fitting profile with the least memory; ties go to the fewest compute slices,
    then to the most instances per GPU (so 1g.10gb wins over 1g.10gb+me)."""
    fitting = [p for p in profiles if need.fits(p)]
    if not fitting:
        return None
    return min(fitting, key=lambda p: (p.memory_mib, p.compute_slices, -p.max_instances))


def choose_pool(need: MemoryNeed, pools: Sequence[Pool]) -> PoolChoice | None:
    """Among pools that fit the need, the one whose profile wastes least memory; ties go
    to the pool listed first. The need is the same for every pool, so least waste is
    least profile memory."""
    best: PoolChoice | None = None
    for pool in pools:
        profile = select_profile(need, pool.profiles)
        if profile is not None and (best is None or profile.memory_mib < best.profile.memory_mib):
            best = PoolChoice(pool, profile)
    return best


def largest_profile(pools: Sequence[Pool]) -> tuple[Pool, MigProfile]:
    return max(
        ((pool, p) for pool in pools for p in pool.profiles),
        key=lambda pair: pair[1].memory_mib,
    )
