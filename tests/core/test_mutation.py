"""The mutation's pieces: resources, required node affinity, tolerations, priority."""

from __future__ import annotations

import copy

import pytest

from tests.support.fixtures import gpu_pod, validate_pod
from webhook.core.decision import decide
from webhook.core.mutation import (
    apply_priority_class,
    merge_required_node_affinity,
    merge_tolerations,
    mutate_pod,
    rename_gpu_resource,
    tolerates,
)
from webhook.core.policy import WorkloadClass, compile_policy

A = "gpu-rightsizer.io/"
MIG = {"key": "nvidia.com/mig.capable", "operator": "In", "values": ["true"]}
PRODUCT = {"key": "nvidia.com/gpu.product", "operator": "In", "values": ["NVIDIA-H100-80GB-HBM3"]}


def test_rename_gpu_resource_in_limits_and_requests_keeps_other_resources():
    container = gpu_pod()["spec"]["containers"][0]
    renamed = rename_gpu_resource(container, "nvidia.com/mig-1g.20gb")
    assert renamed["resources"] == {
        "limits": {"cpu": "2", "nvidia.com/mig-1g.20gb": "1"},
        "requests": {"cpu": "2", "nvidia.com/mig-1g.20gb": "1"},
    }
    assert "nvidia.com/gpu" in container["resources"]["limits"], "the input is not modified"


def test_rename_only_where_the_old_key_was():
    container = {"name": "c", "resources": {"limits": {"nvidia.com/gpu": "1"}, "requests": {"cpu": "1"}}}
    renamed = rename_gpu_resource(container, "nvidia.com/mig-3g.40gb")
    assert renamed["resources"] == {"limits": {"nvidia.com/mig-3g.40gb": "1"}, "requests": {"cpu": "1"}}


def test_affinity_is_created_as_one_term_when_there_is_none():
    assert merge_required_node_affinity(None, [MIG]) == {
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [{"matchExpressions": [MIG]}]}
        }
    }


def test_affinity_is_anded_into_every_existing_term_never_added_as_a_new_term():
    zone_a = {"key": "zone", "operator": "In", "values": ["a"]}
    zone_b = {"key": "zone", "operator": "In", "values": ["b"]}
    fields = {"key": "metadata.name", "operator": "In", "values": ["n1"]}
    preferred = [{"weight": 1, "preference": {"matchExpressions": [zone_a]}}]
    affinity = {
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [
                    {"matchExpressions": [zone_a]},
                    {"matchExpressions": [zone_b]},
                    {"matchFields": [fields]},
                ]
            },
            "preferredDuringSchedulingIgnoredDuringExecution": preferred,
        },
        "podAntiAffinity": {"x": 1},
    }
    before = copy.deepcopy(affinity)
    merged = merge_required_node_affinity(affinity, [MIG, PRODUCT])
    terms = merged["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
    assert terms == [
        {"matchExpressions": [zone_a, MIG, PRODUCT]},
        {"matchExpressions": [zone_b, MIG, PRODUCT]},
        {"matchFields": [fields], "matchExpressions": [MIG, PRODUCT]},
    ]
    assert merged["nodeAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"] == preferred
    assert merged["podAntiAffinity"] == {"x": 1}
    assert affinity == before
    assert merge_required_node_affinity(merged, [MIG, PRODUCT]) == merged, "idempotent"


def test_an_empty_term_matches_no_node_and_stays_so():
    affinity = {
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [{}, {"matchExpressions": [PRODUCT]}]
            }
        }
    }
    terms = merge_required_node_affinity(affinity, [MIG])["nodeAffinity"][
        "requiredDuringSchedulingIgnoredDuringExecution"
    ]["nodeSelectorTerms"]
    assert terms == [{}, {"matchExpressions": [PRODUCT, MIG]}]


def test_no_requirements_leave_affinity_alone():
    assert merge_required_node_affinity(None, []) is None


GPU_TOL = {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}


@pytest.mark.parametrize(
    "existing, covered",
    [
        ({"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}, True),
        ({"key": "nvidia.com/gpu", "operator": "Exists"}, True),  # any effect
        ({"operator": "Exists"}, True),  # tolerates everything
        ({"key": "nvidia.com/gpu", "operator": "Equal", "value": "present", "effect": "NoSchedule"}, False),
        ({"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoExecute"}, False),
        ({"key": "other", "operator": "Exists"}, False),
        ({"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule", "tolerationSeconds": 5}, False),
    ],
)
def test_equivalent_toleration_is_not_added_twice(existing, covered):
    assert tolerates(existing, GPU_TOL) is covered
    merged = merge_tolerations([existing], [GPU_TOL])
    assert merged == ([existing] if covered else [existing, GPU_TOL])


def test_equal_tolerations_match_on_value():
    wanted = {"key": "dedicated", "operator": "Equal", "value": "ml", "effect": "NoSchedule"}
    assert tolerates({"key": "dedicated", "value": "ml", "effect": "NoSchedule"}, wanted)  # Equal is the default
    assert not tolerates({"key": "dedicated", "operator": "Equal", "value": "web", "effect": "NoSchedule"}, wanted)


INFERENCE = WorkloadClass("inference", "inf", 100000, "PreemptLowerPriority", ())
NAME_ONLY = WorkloadClass("bare", "bare", None, None, ())


def test_priority_class_is_set_with_its_values_when_the_policy_knows_them():
    spec = {"priority": 0, "preemptionPolicy": "PreemptLowerPriority"}
    assert apply_priority_class(spec, INFERENCE, False) == {
        "priorityClassName": "inf",
        "priority": 100000,
        "preemptionPolicy": "PreemptLowerPriority",
    }


def test_priority_fields_are_removed_for_the_api_server_to_recompute_when_unknown():
    spec = {"priority": 0, "preemptionPolicy": "PreemptLowerPriority", "x": 1}
    assert apply_priority_class(spec, NAME_ONLY, False) == {"priorityClassName": "bare", "x": 1}


def test_an_existing_priority_class_is_kept_unless_overriding():
    spec = {"priorityClassName": "mine", "priority": 7}
    assert apply_priority_class(spec, INFERENCE, False) is spec
    assert apply_priority_class(spec, INFERENCE, True)["priorityClassName"] == "inf"
    assert apply_priority_class({"priorityClassName": "inf", "priority": 100000}, INFERENCE, True) == {
        "priorityClassName": "inf",
        "priority": 100000,
    }


def test_mutate_pod_end_to_end_keeps_what_it_does_not_own_and_is_schema_valid(policy):
    pod = gpu_pod(
        {A + "model-size": "7b"}, nodeSelector={"team": "ml"}, tolerations=[{"key": "a", "operator": "Exists"}]
    )
    before = copy.deepcopy(pod)
    mutated = mutate_pod(pod, decide(pod, policy), policy)
    assert pod == before
    spec = mutated["spec"]
    assert spec["nodeSelector"] == {"team": "ml"}
    assert spec["tolerations"] == [{"key": "a", "operator": "Exists"}, GPU_TOL]
    assert spec["priorityClassName"] == "gpu-rightsizer-inference"
    assert spec["containers"][0]["resources"]["limits"] == {"cpu": "2", "nvidia.com/mig-1g.20gb": "1"}
    terms = spec["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
    assert terms == [{"matchExpressions": [MIG, PRODUCT]}]
    assert mutated["metadata"]["annotations"][A + "assigned-profile"] == "1g.20gb"
    assert "15.65 GiB" in mutated["metadata"]["annotations"][A + "decision"]
    validate_pod(mutated)


def test_whole_gpu_only_annotates(policy):
    pod = gpu_pod({A + "model-size": "70b"})
    mutated = mutate_pod(pod, decide(pod, policy), policy)
    assert mutated["spec"] is pod["spec"]
    assert mutated["metadata"]["annotations"][A + "assigned-profile"] == "whole-gpu"


def test_workload_class_tolerations_are_added_too():
    policy = compile_policy(
        {
            "pools": [{"name": "h", "gpuModel": "H100-80GB"}],
            "workloadClasses": {"t": {"tolerations": [{"key": "batch", "operator": "Exists", "effect": "NoSchedule"}]}},
            "defaultWorkloadClass": "t",
        }
    )
    pod = gpu_pod({A + "model-size": "7b"})
    mutated = mutate_pod(pod, decide(pod, policy), policy)
    assert mutated["spec"]["tolerations"] == [{"key": "batch", "operator": "Exists", "effect": "NoSchedule"}]
    assert "priorityClassName" not in mutated["spec"]
