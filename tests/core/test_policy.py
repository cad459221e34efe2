"""The policy: the default loads; every kind of invalid policy fails at load, naming the
path of the bad field and why."""

from __future__ import annotations

import dataclasses

import pytest
import yaml

from webhook.core.errors import PolicyError
from webhook.core.policy import compile_policy, default_policy, load_policy, parse_policy_yaml, resolve_policy

ISSUE_EXAMPLE = """
pools:
  - name: a100-40
    gpuModel: A100-40GB
    profiles: [1g.5gb, 2g.10gb, 3g.20gb, 7g.40gb]
    nodeSelector: {nvidia.com/gpu.product: NVIDIA-A100-SXM4-40GB}
estimate: {defaultPrecision: fp16, overheadFactor: 1.2}
onOversize: whole-gpu
onInvalidAnnotation: deny
nodeAffinity:
  - {key: nvidia.com/mig.capable, operator: In, values: ["true"]}
tolerations:
  - {key: nvidia.com/gpu, operator: Exists, effect: NoSchedule}
workloadClasses:
  inference: {priorityClassName: high-priority-inference}
  training: {priorityClassName: gpu-training, tolerations: []}
defaultWorkloadClass: inference
overridePriorityClass: false
"""


def test_the_issue_example_policy_loads():
    policy = parse_policy_yaml(ISSUE_EXAMPLE)
    (pool,) = policy.pools
    assert pool.model.key == "A100-40GB"
    assert [p.name for p in pool.profiles] == ["1g.5gb", "2g.10gb", "3g.20gb", "7g.40gb"]
    assert pool.node_selector == (("nvidia.com/gpu.product", "NVIDIA-A100-SXM4-40GB"),)
    assert policy.workload_classes["training"].priority_class_name == "gpu-training"


def test_the_default_policy_loads_and_is_immutable():
    policy = default_policy()
    assert policy.source == "built-in"
    with pytest.raises(dataclasses.FrozenInstanceError):
        policy.on_oversize = "deny"


def test_resolve_policy_prefers_the_argument_then_the_environment(tmp_path, monkeypatch):
    path = tmp_path / "p.yaml"
    path.write_text("pools: [{name: only, gpuModel: A30-24GB}]\n")
    monkeypatch.setenv("GPU_RIGHTSIZER_POLICY", str(path))
    assert resolve_policy(None).pools[0].name == "only"
    monkeypatch.delenv("GPU_RIGHTSIZER_POLICY")
    assert resolve_policy(None).source == "built-in"
    assert load_policy(str(path)).source == str(path)


def bad(mutate) -> str:
    data = yaml.safe_load(ISSUE_EXAMPLE)
    mutate(data)
    with pytest.raises(PolicyError) as err:
        compile_policy(data)
    return str(err.value)


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda d: d.update(pools=[]), "pools: List should have at least 1 item"),
        (lambda d: d.pop("pools"), "pools: Field required"),
        (
            lambda d: d["pools"][0].update(gpuModel="V100"),
            "pools[0].gpuModel: 'V100' is not in the built-in catalog; accepted: A30-24GB",
        ),
        (
            lambda d: d["pools"][0].update(profiles=["1g.5gb", "9g.1gb"]),
            "pools[0].profiles[1]: '9g.1gb' is not a MIG profile of A100-40GB",
        ),
        (lambda d: d["pools"][0].update(profiles=[]), "pools[0].profiles: must list at least one profile"),
        (lambda d: d["pools"][0].update(name="Bad_Name"), "pools[0].name: String should match pattern"),
        (lambda d: d["pools"].append(dict(d["pools"][0])), "pools[1].name: 'a100-40' is used by an earlier pool"),
        (lambda d: d["pools"][0].update(gpuModle="x"), "pools[0].gpuModle: Extra inputs are not permitted"),
        (
            lambda d: d["estimate"].update(overheadFactor=0.5),
            "estimate.overheadFactor: Input should be greater than or equal to 1",
        ),
        (
            lambda d: d["estimate"].update(overheadFactor="1.2"),
            "estimate.overheadFactor: Input should be a valid number",
        ),
        (
            lambda d: d["estimate"].update(defaultPrecision="fp64"),
            "estimate.defaultPrecision: Value error, 'fp64' is not a precision",
        ),
        (lambda d: d.update(onOversize="panic"), "onOversize: Input should be 'whole-gpu' or 'deny'"),
        (lambda d: d.update(onInvalidAnnotation="warn"), "onInvalidAnnotation: Input should be 'deny' or 'ignore'"),
        (lambda d: d["nodeAffinity"][0].update(operator="Like"), "nodeAffinity[0].operator: Input should be"),
        (
            lambda d: d["nodeAffinity"][0].update(values=[]),
            "nodeAffinity[0].values: operator In needs at least one value",
        ),
        (lambda d: d["tolerations"][0].update(effect="Sometimes"), "tolerations[0].effect: Input should be"),
        (lambda d: d["tolerations"][0].update(value="x"), "tolerations[0].value: operator Exists takes no value"),
        (
            lambda d: d.update(defaultWorkloadClass="batch"),
            "defaultWorkloadClass: 'batch' is not a key of workloadClasses; accepted: inference, training",
        ),
        (
            lambda d: d["workloadClasses"]["training"].update(priority=5, priorityClassName=None),
            "workloadClasses.training",
        ),
        (
            lambda d: d["workloadClasses"]["inference"].update(preemptionPolicy="Sometimes"),
            "workloadClasses.inference.preemptionPolicy: Input should be",
        ),
        (lambda d: d.update(overridePriorityClass="yes"), "overridePriorityClass: Input should be a valid boolean"),
        (lambda d: d.update(surprise=1), "surprise: Extra inputs are not permitted"),
    ],
)
def test_invalid_policy_fails_at_load_with_the_path_of_the_bad_field(mutate, message):
    assert bad(mutate).startswith(message) or message in bad(mutate)


def test_not_a_mapping_and_not_yaml():
    with pytest.raises(PolicyError, match=r"^\(top level\): the policy must be a mapping"):
        parse_policy_yaml("- a\n- b\n")
    with pytest.raises(PolicyError, match="is not valid YAML"):
        parse_policy_yaml("pools: [\n")


def test_unreadable_file_names_the_file(tmp_path):
    with pytest.raises(PolicyError, match="cannot read policy .*missing.yaml"):
        load_policy(str(tmp_path / "missing.yaml"))


def test_profiles_are_kept_in_catalog_order_whatever_the_file_says():
    policy = compile_policy({"pools": [{"name": "p", "gpuModel": "H100-80GB", "profiles": ["7g.80gb", "1g.10gb"]}]})
    assert [p.name for p in policy.pools[0].profiles] == ["1g.10gb", "7g.80gb"]


def test_profile_lookup_goes_to_the_first_pool_offering_it():
    policy = compile_policy(
        {
            "pools": [
                {"name": "a", "gpuModel": "H100-80GB", "profiles": ["7g.80gb"]},
                {"name": "b", "gpuModel": "H100-80GB"},
            ]
        }
    )
    assert policy.pool_by_profile["7g.80gb"][0].name == "a"
    assert policy.pool_by_profile["1g.10gb"][0].name == "b"


def test_every_problem_is_reported_at_once_one_per_line():
    data = yaml.safe_load(ISSUE_EXAMPLE)
    data["pools"][0]["gpuModel"] = "V100"
    data["onOversize"] = "panic"
    data["estimate"]["overheadFactor"] = 0.5
    with pytest.raises(PolicyError) as err:
        compile_policy(data)
    lines = str(err.value).splitlines()
    assert [line.split(":")[0] for line in lines] == ["estimate.overheadFactor", "onOversize"]
    data["onOversize"] = "deny"
    data["estimate"]["overheadFactor"] = 1.2
    data["defaultWorkloadClass"] = "inferense"
    data["tolerations"][0]["value"] = "x"
    with pytest.raises(PolicyError) as err:
        compile_policy(data)
    lines = str(err.value).splitlines()
    assert len(lines) == 3 and lines[0].startswith("pools[0].gpuModel: 'V100'")
    assert any(line.startswith("tolerations[0].value") for line in lines)
    assert any("defaultWorkloadClass" in line and "(did you mean inference?)" in line for line in lines)


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (
            lambda d: d.update(onOversise="deny"),
            "onOversise: Extra inputs are not permitted (did you mean onOversize?)",
        ),
        (lambda d: d["pools"][0].update(gpuModle="x"), "(did you mean gpuModel?)"),
        (lambda d: d["estimate"].update(activationMib=1), "(did you mean activationMiB?)"),
        (
            lambda d: d["workloadClasses"]["training"].update(priortyClassName="x"),
            "workloadClasses.training.priortyClassName: Extra inputs are not permitted (did you mean priorityClassName?)",
        ),
        (lambda d: d["nodeAffinity"][0].update(operater="In"), "(did you mean operator?)"),
    ],
)
def test_unknown_keys_get_the_closest_known_one(mutate, expected):
    assert expected in bad(mutate)


def test_a_policy_files_errors_name_the_file_on_every_line(tmp_path):
    import subprocess
    import sys

    path = tmp_path / "policy.yaml"
    path.write_text("pools: [{name: a, gpuModel: V100}]\nonOversize: panic\nsurprise: 1\n")
    done = subprocess.run(
        [sys.executable, "-m", "webhook.cli", "mutate", "--policy", str(path), "-"],
        input="{}",
        capture_output=True,
        text=True,
        timeout=60,
    )
    lines = done.stderr.splitlines()
    assert done.returncode == 2 and len(lines) == 2, done.stderr
    assert all(line.startswith(f"gpu-rightsizer: invalid policy: {path}: ") for line in lines)
