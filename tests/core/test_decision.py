"""Every branch of decide(): who is left alone, warned, refused or rewritten, and why."""

from __future__ import annotations

import pytest

from tests.support.fixtures import gpu_pod
from webhook.core.decision import decide
from webhook.core.errors import BadObject
from webhook.core.policy import compile_policy

A = "gpu-rightsizer.io/"


def with_policy(**overrides):
    base = {
        "pools": [{"name": "h100", "gpuModel": "H100-80GB"}],
        "workloadClasses": {"inference": {"priorityClassName": "inf"}, "training": {"priorityClassName": "train"}},
        "defaultWorkloadClass": "inference",
    }
    return compile_policy({**base, **overrides})


def test_pod_without_gpu_is_ignored_silently(policy):
    pod = gpu_pod({A + "model-size": "7b"})
    pod["spec"]["containers"][0]["resources"] = {"limits": {"cpu": "1"}}
    decision = decide(pod, policy)
    assert decision.action == "ignore" and decision.all_warnings == ()


def test_skip_true_is_ignored_silently_even_with_bad_annotations(policy):
    decision = decide(gpu_pod({A + "skip": "true", A + "model-size": "huge"}), policy)
    assert decision.action == "ignore" and decision.all_warnings == ()


def test_skip_other_values_do_not_skip(policy):
    assert decide(gpu_pod({A + "skip": "false", A + "model-size": "7b"}), policy).action == "rewrite"


def test_gpu_pod_without_sizing_annotation_is_unchanged_with_a_hint(policy):
    decision = decide(gpu_pod({}), policy)
    assert decision.action == "unchanged"
    (warning,) = decision.all_warnings
    assert A + "model-size" in warning and A + "gpu-memory" in warning and A + "profile" in warning


@pytest.mark.parametrize("gpus", ["2", "8", "0", "500m", "banana"])
def test_only_exactly_one_gpu_is_rewritten(policy, gpus):
    decision = decide(gpu_pod({A + "model-size": "7b"}, gpus=gpus), policy)
    assert decision.action == "unchanged"
    assert any(f'"{gpus}"' in w and "keeps whole GPUs" in w for w in decision.all_warnings)


def test_mixed_containers_rewrite_the_single_gpu_one_and_warn_about_the_other(policy):
    pod = gpu_pod({A + "model-size": "7b"})
    pod["spec"]["containers"].append(
        {"name": "trainer", "image": "x", "resources": {"limits": {"nvidia.com/gpu": "2"}}}
    )
    decision = decide(pod, policy)
    assert decision.action == "rewrite"
    assert [c.name for c in decision.containers] == ["server"]
    assert len(decision.all_warnings) == 2 and '"trainer"' in decision.all_warnings[1]


def test_init_containers_and_sidecars_count(policy):
    pod = gpu_pod({A + "model-size": "7b"})
    sidecar = {
        "name": "warmup",
        "image": "x",
        "restartPolicy": "Always",
        "resources": {"limits": {"nvidia.com/gpu": "1"}},
    }
    pod["spec"]["initContainers"] = [sidecar]
    decision = decide(pod, policy)
    assert [(c.field, c.name) for c in decision.containers] == [("initContainers", "warmup"), ("containers", "server")]


def test_gpu_in_requests_only_is_still_found(policy):
    pod = gpu_pod({A + "model-size": "7b"})
    del pod["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"]
    assert decide(pod, policy).action == "rewrite"


@pytest.mark.parametrize(
    "annotation, value, accepted",
    [
        ("model-size", "huge", "7b, 13B, 1.5b, 350m"),
        ("model-size", "-7b", "optional suffix k, m, b or t"),
        ("model-size", "0", "greater than 0"),
        ("model-size", "7x", "suffix k, m, b or t"),
        ("precision", "fp64", "fp32, fp16, bf16, fp8, int8, int4"),
        ("gpu-memory", "lots", "Kubernetes quantity"),
        ("gpu-memory", "-1Gi", "at least 1 byte"),
        ("gpu-memory", "1e-999999999", "at least 1 byte"),
        ("gpu-memory", "0.5", "at least 1 byte"),
        ("gpu-memory", "NaN", "Kubernetes quantity"),
        ("gpu-memory", "1e309", "below 1Pi"),
        ("profile", "9g.900gb", "1g.10gb, 1g.20gb, 2g.20gb, 3g.40gb, 4g.40gb, 7g.80gb"),
        ("profile", "1g.10gb+me", "a profile a pool offers"),
        ("workload-class", "batch", "inference, training"),
    ],
)
def test_invalid_annotation_is_refused_naming_annotation_value_and_what_is_accepted(annotation, value, accepted):
    annotations = {A + "model-size": "7b", A + annotation: value}
    decision = decide(gpu_pod(annotations), with_policy())
    assert decision.action == "deny"
    assert f'{A}{annotation}="{value}"' in decision.message
    assert accepted in decision.message


def test_invalid_annotation_with_ignore_is_admitted_unchanged_with_a_warning():
    decision = decide(gpu_pod({A + "model-size": "huge"}), with_policy(onInvalidAnnotation="ignore"))
    assert decision.action == "unchanged"
    assert "model-size" in decision.all_warnings[0] and "onInvalidAnnotation: ignore" in decision.all_warnings[0]


def test_an_overridden_annotation_is_still_validated(policy):
    decision = decide(gpu_pod({A + "profile": "1g.20gb", A + "precision": "fp7"}), policy)
    assert decision.action == "deny" and "precision" in decision.message


def test_hostile_annotation_values_are_escaped_and_shortened(policy):
    value = "7b\nlevel=error msg=forged\x1b[31m" + "x" * 10_000
    decision = decide(gpu_pod({A + "model-size": value}), policy)
    assert "\n" not in decision.message and "\x1b" not in decision.message
    assert len(decision.message) < 400


def test_explicit_profile_overrides_sizing_and_uses_the_first_pool_offering_it():
    policy = compile_policy({"pools": [{"name": "a", "gpuModel": "A100-80GB"}, {"name": "h", "gpuModel": "H100-80GB"}]})
    decision = decide(gpu_pod({A + "profile": "3g.40gb", A + "model-size": "1b"}), policy)
    assert (decision.pool.name, decision.profile.name) == ("a", "3g.40gb")
    assert "requested by annotation" in decision.message


def test_explicit_profile_accepts_the_resource_name_spelling(policy):
    assert decide(gpu_pod({A + "profile": "nvidia.com/mig-1g.10gb"}), policy).profile.name == "1g.10gb"


def test_gpu_memory_overrides_model_size(policy):
    decision = decide(gpu_pod({A + "model-size": "70b", A + "gpu-memory": "18Gi"}), policy)
    assert decision.profile.name == "1g.20gb"
    assert "gpu-memory 18Gi = 18.00 GiB" in decision.message


def test_oversize_keeps_whole_gpu_with_a_warning_by_default(policy):
    decision = decide(gpu_pod({A + "model-size": "70b"}), policy)
    assert decision.action == "whole-gpu" and decision.assigned_profile == "whole-gpu"
    assert "exceeds the largest MIG profile" in decision.all_warnings[0]
    assert "7g.80gb" in decision.all_warnings[0]


def test_oversize_is_refused_with_deny():
    decision = decide(gpu_pod({A + "model-size": "70b"}), with_policy(onOversize="deny"))
    assert decision.action == "deny"
    assert "156.46 GiB" in decision.message and "onOversize: deny" in decision.message


def test_unknown_workload_class_without_a_default_is_fine_when_not_given():
    policy = compile_policy({"pools": [{"name": "h", "gpuModel": "H100-80GB"}]})
    decision = decide(gpu_pod({A + "model-size": "7b"}), policy)
    assert decision.action == "rewrite" and decision.workload_class is None


def test_workload_class_annotation_picks_the_class():
    decision = decide(gpu_pod({A + "model-size": "7b", A + "workload-class": "training"}), with_policy())
    assert decision.workload_class.priority_class_name == "train"


@pytest.mark.parametrize(
    "mangle, path",
    [
        (lambda p: p.update(metadata="x"), "metadata"),
        (lambda p: p["metadata"].update(annotations=["a"]), "metadata.annotations"),
        (lambda p: p["metadata"]["annotations"].update({A + "model-size": 7}), "metadata.annotations"),
        (lambda p: p.update(spec=[]), "spec"),
        (lambda p: p["spec"].update(containers={}), "spec.containers"),
        (lambda p: p["spec"]["containers"].append("x"), "spec.containers[1]"),
        (lambda p: p["spec"]["containers"][0].update(resources=1), "spec.containers[0].resources"),
        (lambda p: p["spec"]["containers"][0]["resources"].update(limits="1"), "spec.containers[0].resources.limits"),
    ],
)
def test_a_malformed_pod_is_a_bad_object_naming_the_field(policy, mangle, path):
    pod = gpu_pod({A + "model-size": "7b"})
    mangle(pod)
    with pytest.raises(BadObject) as err:
        decide(pod, policy)
    assert str(err.value).startswith(path)


def test_decide_does_not_modify_the_pod(policy):
    import copy

    pod = gpu_pod({A + "model-size": "7b"})
    before = copy.deepcopy(pod)
    decide(pod, policy)
    assert pod == before


@pytest.mark.parametrize("value", ["yes", "1", "", "truee", "on"])
def test_skip_accepts_only_true_or_false_and_refuses_the_rest_like_any_annotation(policy, value):
    decision = decide(gpu_pod({A + "skip": value, A + "model-size": "7b"}), policy)
    assert decision.action == "deny"
    assert decision.message.startswith(f"annotation {A}skip=") and '"true" or "false"' in decision.message
    lenient = with_policy(onInvalidAnnotation="ignore")
    assert decide(gpu_pod({A + "skip": value, A + "model-size": "7b"}), lenient).action == "unchanged"


@pytest.mark.parametrize("value", ["TRUE", " true ", "True"])
def test_skip_true_in_any_case_skips(policy, value):
    assert decide(gpu_pod({A + "skip": value, A + "model-size": "7b"}), policy).action == "ignore"


def test_a_skip_value_on_a_pod_without_a_gpu_is_nobodys_business(policy):
    pod = gpu_pod({A + "skip": "maybe"})
    pod["spec"]["containers"][0]["resources"] = {}
    assert decide(pod, policy).action == "ignore"


@pytest.mark.parametrize(
    ("key", "hint"),
    [
        ("context-lenght", "did you mean context-length?"),
        ("modelsize", "did you mean model-size?"),
        ("gpu_memory", "did you mean gpu-memory?"),
        ("zzzz", "known: model-size, precision"),
    ],
)
def test_an_unknown_key_of_ours_is_pointed_out_with_the_closest_known_one(policy, key, hint):
    decision = decide(gpu_pod({A + "model-size": "7b", A + key: "x"}), policy)
    assert decision.action == "rewrite"
    (note,) = [w for w in decision.all_warnings if "is not one of gpu-rightsizer's" in w]
    assert f'"{A}{key}"' in note and hint in note


def test_other_prefixes_and_our_written_keys_are_not_flagged(policy):
    annotations = {A + "model-size": "7b", A + "assigned-profile": "1g.10gb", "example.com/context-lenght": "x"}
    assert not any("is not one of" in w for w in decide(gpu_pod(annotations), policy).all_warnings)


def _mig_pod(annotations: dict, resource: str = "nvidia.com/mig-1g.10gb") -> dict:
    pod = gpu_pod(annotations)
    pod["spec"]["containers"][0]["resources"] = {"limits": {resource: "1"}, "requests": {resource: "1"}}
    return pod


def test_a_pod_already_on_a_slice_is_told_whether_the_slice_holds_its_stated_need(policy):
    holds = decide(_mig_pod({A + "model-size": "3b"}), policy)
    assert holds.action == "unchanged"
    assert holds.all_warnings == (
        "nvidia.com/mig-1g.10gb holds the stated need: 3B params x 2 B (fp16) x 1.2 = 6.71 GiB fits 1g.10gb "
        "(9.62 GiB usable)",
    )
    short = decide(_mig_pod({A + "model-size": "13b"}), policy)
    assert short.action == "unchanged"
    assert "nvidia.com/mig-1g.10gb (9.62 GiB usable) does not hold the stated need" in short.message
    assert short.message.endswith("3g.40gb is the smallest that does")


def test_a_pod_on_a_slice_without_a_stated_need_or_on_an_unknown_profile(policy):
    assert decide(_mig_pod({A + "precision": "fp8"}), policy).action == "ignore"
    unknown = decide(_mig_pod({A + "gpu-memory": "4Gi"}, "nvidia.com/mig-1g.5gb"), policy)
    assert unknown.action == "unchanged" and "no pool of the policy offers 1g.5gb" in unknown.message
    bad = decide(_mig_pod({A + "model-size": "lots"}), policy)
    assert bad.action == "unchanged" and bad.message.endswith("the pod keeps its MIG request")
