"""GPU quotas after the rewrite (webhook/core/quota.py): shares, usage, the verdict, and the
translation into per-profile MIG quota items."""

from __future__ import annotations

from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from webhook.core.catalog import builtin_catalog
from webhook.core.gpu_requests import pod_requests
from webhook.core.quota import (
    build_quota_view,
    check_rewrite,
    mig_quota_items,
    share_table,
)

H100 = builtin_catalog().lookup("H100-80GB")
SHARES = share_table([H100])


def quota(namespace: str, hard: dict, name: str = "gpus", **spec) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "ResourceQuota",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"hard": hard, **spec},
    }


def pod(namespace: str, resources: dict, phase: str = "Running", init: dict | None = None) -> dict:
    spec: dict = {"containers": [{"name": "c", "resources": {"limits": resources}}]}
    if init:
        spec["initContainers"] = [{"name": "i", "resources": {"limits": init}}]
    return {"metadata": {"namespace": namespace, "name": "p"}, "spec": spec, "status": {"phase": phase}}


def test_a_slice_counts_as_its_dominant_share_of_an_h100():
    assert SHARES["1g.10gb"] == Fraction(1, 7)  # 1 of 7 compute slices, 1 of 8 memory slices
    assert SHARES["3g.40gb"] == Fraction(1, 2)  # 3 of 7 compute, but 4 of 8 memory slices
    assert SHARES["7g.80gb"] == 1
    assert SHARES["1g.20gb"] == Fraction(1, 4)  # 2 of 8 memory slices


def test_every_share_is_at_least_the_compute_share_and_what_fills_a_gpu_adds_to_at_most_one():
    for model in builtin_catalog().models.values():
        shares = share_table([model])
        for profile in model.profiles:
            assert Fraction(profile.compute_slices, model.compute_slices) <= shares[profile.name] <= 1
            if not profile.is_media_extension:
                assert shares[profile.name] * profile.max_instances <= 1, (model.key, profile.name)


def test_a_name_two_models_cut_differently_gets_the_larger_share():
    catalog = builtin_catalog()
    both = share_table([catalog.lookup("H100-80GB"), catalog.lookup("A100-40GB")])
    assert both["1g.10gb"] == Fraction(1, 4)  # 2 of 8 memory slices on an A100 40GB


def test_the_policy_counts_its_own_pools_models(tmp_path):
    from webhook.core.policy import default_policy

    assert default_policy().quota_shares["1g.10gb"] == Fraction(1, 7)  # the default pool is H100 80GB
    assert default_policy().quota_shares["1g.5gb"] == Fraction(1, 7)  # A100 40GB's, from the catalog


def test_usage_counts_live_pods_only_and_init_containers_as_their_max():
    view = build_quota_view(
        [],
        [
            pod("a", {"nvidia.com/gpu": "1"}),
            pod("a", {"nvidia.com/mig-1g.10gb": 2}),
            pod("a", {"nvidia.com/mig-1g.10gb": "1"}, phase="Succeeded"),
            pod("a", {"nvidia.com/mig-1g.10gb": 1}, phase="Pending", init={"nvidia.com/mig-1g.10gb": 3}),
            pod("b", {"cpu": "1"}),
        ],
    )
    assert view.usage["a"].whole_gpus == 1
    assert view.usage["a"].slices == {"1g.10gb": 5}
    assert "b" not in view.usage
    assert view.usage["a"].gpu_equivalents(SHARES) == 1 + Fraction(5, 7)


def test_pod_requests_reads_requests_and_limits_and_ignores_garbage():
    assert pod_requests({"spec": {"containers": [{"resources": {"requests": {"nvidia.com/gpu": "2"}}}]}}) == {
        "nvidia.com/gpu": 2
    }
    assert pod_requests({"spec": {"containers": [{"resources": {"limits": {"nvidia.com/gpu": "lots"}}}]}}) == {}
    assert pod_requests({"spec": "nope"}) == {}
    assert pod_requests({"spec": {"containers": ["x", {"resources": []}]}}) == {}


def test_quotas_capping_gpu_and_mig_keys_are_told_apart_and_scoped_ones_left_out():
    view = build_quota_view(
        [
            quota("a", {"requests.nvidia.com/gpu": "2", "requests.cpu": "10"}),
            quota("a", {"requests.nvidia.com/mig-3g.40gb": "1"}, name="mig"),
            quota("b", {"requests.nvidia.com/gpu": "1"}, scopes=["BestEffort"]),
        ],
        [],
    )
    assert [(q.name, q.key, q.hard) for q in view.gpu_quotas["a"]] == [("gpus", "requests.nvidia.com/gpu", 2)]
    assert view.mig_capped["a"] == frozenset({"nvidia.com/mig-3g.40gb"})
    assert "b" not in view.gpu_quotas


def test_no_gpu_quota_or_mode_off_says_nothing():
    view = build_quota_view([quota("a", {"requests.cpu": "1"})], [])
    assert check_rewrite("a", "1g.10gb", 1, view, "gpu-equivalent", SHARES).warning == ""
    capped = build_quota_view([quota("a", {"requests.nvidia.com/gpu": "1"})], [])
    assert check_rewrite("a", "1g.10gb", 1, capped, "off", SHARES).warning == ""
    assert check_rewrite("a", "1g.10gb", 1, None, "off", SHARES).warning == ""
    assert "GPU quota not checked: no current view" in check_rewrite("a", "1g.10gb", 1, None, "warn", SHARES).warning


def test_warn_mode_names_the_quota_and_the_escaping_resource():
    view = build_quota_view([quota("a", {"requests.nvidia.com/gpu": "2"}, name="team-gpus")], [])
    verdict = check_rewrite("a", "1g.10gb", 1, view, "warn", SHARES)
    assert verdict.refusal == ""
    assert "ResourceQuota team-gpus caps requests.nvidia.com/gpu at 2 in a" in verdict.warning
    assert "no ResourceQuota there caps nvidia.com/mig-1g.10gb" in verdict.warning


def test_a_quota_on_the_chosen_mig_resource_is_left_to_the_quota_plugin():
    view = build_quota_view([quota("a", {"requests.nvidia.com/gpu": "1", "requests.nvidia.com/mig-1g.10gb": "7"})], [])
    assert check_rewrite("a", "1g.10gb", 1, view, "gpu-equivalent", SHARES).warning == ""
    assert check_rewrite("a", "3g.40gb", 1, view, "warn", SHARES).warning  # this one still escapes


def test_enforce_admits_up_to_one_gpu_worth_and_refuses_the_next_with_the_figures():
    pods = [pod("a", {"nvidia.com/mig-1g.10gb": 1}) for _ in range(6)]
    view = build_quota_view([quota("a", {"requests.nvidia.com/gpu": "1"})], pods)
    seventh = check_rewrite("a", "1g.10gb", 1, view, "gpu-equivalent", SHARES)
    assert seventh.refusal == "" and "1 of 1 in use with this pod" in seventh.warning
    view = build_quota_view([quota("a", {"requests.nvidia.com/gpu": "1"})], [*pods, pods[0]])
    eighth = check_rewrite("a", "1g.10gb", 1, view, "gpu-equivalent", SHARES)
    assert eighth.refusal == (
        "ResourceQuota gpus caps requests.nvidia.com/gpu at 1 in a: in use 1 GPU (7 x 1g.10gb at 1/7 (0.14)), "
        "this pod adds 1/7 (0.14) (1 x nvidia.com/mig-1g.10gb at 1/7 (0.14) of a GPU each), 8/7 (1.14) > 1; "
        "refused (quota.mode: gpu-equivalent)"
    )


def test_the_strictest_of_several_gpu_quotas_applies():
    view = build_quota_view(
        [
            quota("a", {"requests.nvidia.com/gpu": "4"}, name="big"),
            quota("a", {"limits.nvidia.com/gpu": "1"}, name="small"),
        ],
        [pod("a", {"nvidia.com/mig-3g.40gb": 1})],
    )
    verdict = check_rewrite("a", "3g.40gb", 2, view, "gpu-equivalent", SHARES)
    assert "ResourceQuota small caps limits.nvidia.com/gpu at 1" in verdict.refusal
    assert "3/2 (1.50) > 1" in verdict.refusal


@settings(max_examples=200, deadline=None)
@given(
    hard=st.integers(min_value=0, max_value=4),
    used=st.lists(st.sampled_from(["1g.10gb", "1g.20gb", "2g.20gb", "3g.40gb", "4g.40gb", "7g.80gb"]), max_size=12),
    whole=st.integers(min_value=0, max_value=2),
    profile=st.sampled_from(["1g.10gb", "1g.20gb", "2g.20gb", "3g.40gb", "4g.40gb", "7g.80gb"]),
    slices=st.integers(min_value=1, max_value=3),
)
def test_enforcement_never_lets_gpu_equivalents_exceed_the_quota(hard, used, whole, profile, slices):
    pods = [pod("a", {"nvidia.com/mig-" + p: 1}) for p in used] + [
        pod("a", {"nvidia.com/gpu": 1}) for _ in range(whole)
    ]
    view = build_quota_view([quota("a", {"requests.nvidia.com/gpu": str(hard)})], pods)
    verdict = check_rewrite("a", profile, slices, view, "gpu-equivalent", SHARES)
    total = whole + sum(SHARES[p] for p in used) + slices * SHARES[profile]
    assert bool(verdict.refusal) == (total > hard)
    assert bool(verdict.warning) != bool(verdict.refusal)


@pytest.mark.parametrize(
    ("gpus", "expected"),
    [
        (Fraction(1), {"1g.10gb": 7, "1g.20gb": 4, "2g.20gb": 3, "3g.40gb": 2, "4g.40gb": 1, "7g.80gb": 1}),
        (Fraction(2), {"1g.10gb": 14, "1g.20gb": 8, "2g.20gb": 6, "3g.40gb": 4, "4g.40gb": 2, "7g.80gb": 2}),
        (Fraction(1, 2), {"1g.10gb": 3, "1g.20gb": 2, "2g.20gb": 1, "3g.40gb": 1, "4g.40gb": 0, "7g.80gb": 0}),
    ],
)
def test_translation_bounds_each_profile_by_what_the_gpus_hold(gpus, expected):
    items = mig_quota_items(gpus, H100.default_profiles)
    assert items == {f"requests.nvidia.com/mig-{p}": n for p, n in expected.items()}


@pytest.mark.parametrize(
    ("text", "mode"), [("off", "off"), ('"off"', "off"), ("warn", "warn"), ("gpu-equivalent", "gpu-equivalent")]
)
def test_quota_mode_in_the_policy_file_including_a_bare_yaml_off(text, mode):
    from webhook.core.policy import default_policy_text, parse_policy_yaml

    assert parse_policy_yaml(default_policy_text() + f"quota: {{mode: {text}}}\n").quota_mode == mode


def test_an_unknown_quota_mode_is_refused_with_what_is_accepted():
    from webhook.core.errors import PolicyError
    from webhook.core.policy import default_policy_text, parse_policy_yaml

    with pytest.raises(PolicyError, match=r"^quota\.mode: Input should be 'off', 'warn' or 'gpu-equivalent'"):
        parse_policy_yaml(default_policy_text() + "quota: {mode: strict}\n")
