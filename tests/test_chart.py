"""charts/gpu-rightsizer: `helm lint --strict`, `helm template` for each certificates mode
and a few value combinations, every rendered object validated against the Kubernetes 1.36
schemas (kubernetes-validate, strict; cert-manager's Issuer/Certificate and
prometheus-operator's ServiceMonitor are CRDs it has no schema for, so they are checked
structurally, as tests/test_manifests.py does), values.schema.json refusing a bad policy,
and the chart held equal to the kustomize manifests (one source of truth, two renderings).

helm is built from the Go module proxy by scripts/install-helm.sh (tests/chart_support.py).
"""

from __future__ import annotations

import copy
import shutil
import subprocess
import sys
from pathlib import Path

import jsonschema
import kubernetes_validate
import pytest
import yaml

from tests.support.chart import CHART, NAMESPACE, RELEASE, RenderError, helm_binary, install_command, render
from webhook.certs.bundle import service_dns_names

ROOT = Path(__file__).resolve().parent.parent
MANIFESTS = ROOT / "manifests"
KUBE_VERSION = "1.36.0"
sys.path.insert(0, str(ROOT / "scripts"))
import chart_schema  # noqa: E402  (scripts/chart_schema.py)

POLICY = chart_schema.policy_module()  # webhook.core.policy
CRD_KINDS = {"cert-manager.io/v1": {"Issuer", "Certificate"}, "monitoring.coreos.com/v1": {"ServiceMonitor"}}
CLUSTER_SCOPED = {"PriorityClass", "ClusterRole", "ClusterRoleBinding", "MutatingWebhookConfiguration", "DeviceClass"}
# Labels Helm charts conventionally put on everything; manifests/ has none of them except
# app.kubernetes.io/name and part-of, which it sets on some objects only.
HELM_LABELS = {
    "helm.sh/chart",
    "app.kubernetes.io/managed-by",
    "app.kubernetes.io/instance",
    "app.kubernetes.io/version",
}
EVERYWHERE_IN_CHART = HELM_LABELS | {"app.kubernetes.io/name", "app.kubernetes.io/part-of"}
CA_BUNDLE = "LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0tCg=="

# name -> (values, release, namespace)
CASES = {
    "job": ({}, RELEASE, NAMESPACE),
    "cert-manager": ({"certificates": {"mode": "cert-manager"}}, RELEASE, NAMESPACE),
    "external": ({"certificates": {"mode": "external", "caBundle": CA_BUNDLE}}, RELEASE, NAMESPACE),
    "everything-on": (
        {
            "serviceMonitor": {"enabled": True, "labels": {"release": "prom"}},
            "networkPolicy": {"enabled": True, "from": [{"ipBlock": {"cidr": "10.0.0.0/8"}}]},
            "planner": {"rbac": True},
            "dra": {"deviceClasses": {"enabled": True}},
            "objectSelector": {"matchExpressions": [{"key": "team", "operator": "Exists"}]},
            "failurePolicy": "Ignore",
            "timeoutSeconds": 10,
            "replicaCount": 3,
            "priorityClassName": "system-cluster-critical",
            "podAnnotations": {"a": "b"},
            "podLabels": {"team": "ml"},
            "nodeSelector": {"kubernetes.io/os": "linux"},
            "tolerations": [{"key": "x", "operator": "Exists"}],
            "imagePullSecrets": [{"name": "regcred"}],
            "extraEnv": [{"name": "X", "value": "1"}],
            "image": {"digest": "sha256:" + "a" * 64},
            "podDisruptionBudget": {"minAvailable": None, "maxUnavailable": 1},
        },
        RELEASE,
        NAMESPACE,
    ),
    "everything-off": (
        {
            "priorityClasses": {"create": False},
            "podDisruptionBudget": {"enabled": False},
            "matchConditions": [],
            "topologySpreadConstraints": [],
            "namespaceSelector": {"matchLabels": {"gpu": "yes"}},
            "resources": None,
            "policy": {"workloadClasses": None, "defaultWorkloadClass": None},
        },
        RELEASE,
        NAMESPACE,
    ),
    "other-release": ({"certificates": {"mode": "cert-manager"}, "planner": {"rbac": True}}, "prod", "ml-platform"),
}


@pytest.fixture(scope="session")
def helm() -> str:
    try:
        return helm_binary()
    except RuntimeError as err:
        pytest.fail(str(err))


@pytest.fixture(scope="session")
def rendered(helm) -> dict[str, list[dict]]:
    return {name: render(values, release=release, namespace=ns) for name, (values, release, ns) in CASES.items()}


@pytest.fixture(scope="session")
def kustomized() -> dict[str, list[dict]]:
    if not shutil.which("go"):
        pytest.fail("go is needed to build kustomize (scripts/install-kustomize.sh)")
    done = subprocess.run([str(ROOT / "scripts" / "install-kustomize.sh")], capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    kustomize = done.stdout.strip().splitlines()[-1]
    out = {}
    for name in ("overlays/self-signed", "overlays/cert-manager", "optional/planner", "optional/dra"):
        built = subprocess.run([kustomize, "build", str(MANIFESTS / name)], capture_output=True, text=True, timeout=120)
        assert built.returncode == 0, built.stderr
        out[name] = [d for d in yaml.safe_load_all(built.stdout) if d]
    return out


def by_key(objects: list[dict]) -> dict[tuple[str, str], dict]:
    out = {(o["kind"], o["metadata"]["name"]): o for o in objects}
    assert len(out) == len(objects), "two objects of one kind and name"
    return out


def one(objects: list[dict], kind: str, name: str | None = None) -> dict:
    found = [o for o in objects if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)]
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


# --- helm lint, the schema file ----------------------------------------------------


@pytest.mark.parametrize("mode", ["job", "cert-manager", "external"])
def test_helm_lint_strict(helm, mode):
    args = ["--set", f"certificates.mode={mode}"]
    if mode == "external":
        args += ["--set", f"certificates.caBundle={CA_BUNDLE}"]
    done = subprocess.run(
        [helm, "lint", "--strict", str(CHART), "--namespace", NAMESPACE, *args],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "0 chart(s) failed" in done.stdout


def test_values_schema_policy_part_is_generated_from_the_policy_schema():
    done = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "chart_schema.py"), "--check"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr


def test_default_values_policy_is_the_package_default():
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert values["policy"] == yaml.safe_load(POLICY.default_policy_text())


def test_default_values_validate_against_the_schema():
    import json

    schema = json.loads((CHART / "values.schema.json").read_text())
    jsonschema.Draft7Validator.check_schema(schema)
    jsonschema.validate(yaml.safe_load((CHART / "values.yaml").read_text()), schema)


# --- every rendering is valid Kubernetes ---------------------------------------------


def _check_crd_object(obj: dict, namespace: str) -> None:
    assert obj["kind"] in CRD_KINDS[obj["apiVersion"]], obj["kind"]
    assert obj["metadata"]["namespace"] == namespace
    if obj["kind"] == "ServiceMonitor":
        (endpoint,) = obj["spec"]["endpoints"]
        assert endpoint["port"] == "https" and endpoint["scheme"] == "https"
        assert obj["spec"]["namespaceSelector"] == {"matchNames": [namespace]}


@pytest.mark.parametrize("case", CASES)
def test_every_object_validates_against_kubernetes_schema(rendered, case):
    _, _, namespace = CASES[case]
    for obj in rendered[case]:
        if obj["apiVersion"] in CRD_KINDS:
            _check_crd_object(obj, namespace)
            continue
        try:
            kubernetes_validate.validate(obj, KUBE_VERSION, strict=True)
        except kubernetes_validate.ValidationError as err:
            pytest.fail(f"{case}: {obj['kind']}/{obj['metadata']['name']}: {err.message} at {list(err.path)}")


@pytest.mark.parametrize("case", CASES)
def test_objects_are_in_the_release_namespace_and_labelled(rendered, case):
    _, release, namespace = CASES[case]
    assert not [o for o in rendered[case] if o["kind"] == "Namespace"]  # the chart never creates one
    for obj in rendered[case]:
        meta = obj["metadata"]
        if obj["kind"] in CLUSTER_SCOPED:
            assert "namespace" not in meta, obj["kind"]
        else:
            assert meta["namespace"] == namespace, obj["kind"]
        labels = meta["labels"]
        assert labels["app.kubernetes.io/name"] == "gpu-rightsizer"
        assert labels["app.kubernetes.io/instance"] == release
        assert labels["app.kubernetes.io/managed-by"] == "Helm"
        assert labels["app.kubernetes.io/part-of"] == "gpu-rightsizer"


def test_the_modes_differ_only_in_certificate_objects(rendered):
    def kinds(case):
        return sorted(o["kind"] for o in rendered[case])

    certs_rbac = ["ClusterRole", "ClusterRoleBinding", "Job", "Role", "RoleBinding", "ServiceAccount"]
    external = kinds("external")
    assert sorted(external + certs_rbac) == kinds("job")
    assert sorted(external + ["Certificate", "Certificate", "Issuer", "Issuer"]) == kinds("cert-manager")
    hooks = [o for case in CASES for o in rendered[case] if "helm.sh/hook" in o["metadata"].get("annotations", {})]
    assert hooks == []  # everything is a release object, deleted by `helm uninstall`


# --- one source of truth: the chart renders what kustomize builds --------------------


def _strip_instance(node):
    """Drop app.kubernetes.io/instance from every label map and selector (the chart selects
    by release too, so two releases in one namespace never share pods)."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("labels", "matchLabels", "selector") and isinstance(value, dict):
                value.pop("app.kubernetes.io/instance", None)
            _strip_instance(value)
    elif isinstance(node, list):
        for item in node:
            _strip_instance(item)


def _comparable(obj: dict, *, from_chart: bool) -> dict:
    obj = copy.deepcopy(obj)
    meta = obj["metadata"]
    labels = {k: v for k, v in meta.pop("labels", {}).items() if k not in EVERYWHERE_IN_CHART}
    if labels:
        meta["labels"] = labels
    _strip_instance(obj)
    if obj["kind"] == "ConfigMap":
        obj["data"] = {k: yaml.safe_load(v) for k, v in obj["data"].items()}
    if from_chart and obj["kind"] == "Job":
        meta["name"] = meta["name"].rsplit("-", 1)[0]  # gpu-rightsizer-certs-<revision>
    return obj


def _assert_same_objects(chart: list[dict], kustomize: list[dict]) -> None:
    kustomize = [o for o in kustomize if o["kind"] != "Namespace"]
    want = by_key([_comparable(o, from_chart=False) for o in kustomize])
    got = by_key([_comparable(o, from_chart=True) for o in chart])
    assert sorted(got) == sorted(want)
    # The labels set aside above: where manifests/ sets them, the chart sets the same value.
    labels = {key: o["metadata"].get("labels", {}) for key, o in by_key(chart).items()}
    for obj in kustomize:
        key = (obj["kind"], obj["metadata"]["name"])
        chart_labels = labels.get(key) or labels[(key[0], f"{key[1]}-1")]
        for k, v in obj["metadata"].get("labels", {}).items():
            assert chart_labels.get(k) == v, (key, k)
    for key, obj in want.items():
        assert got[key] == obj, f"{key}: chart\n{yaml.safe_dump(got[key])}\nkustomize\n{yaml.safe_dump(obj)}"


def test_default_values_render_the_self_signed_overlay(rendered, kustomized):
    """`helm template gpu-rightsizer -n gpu-rightsizer-system` with the default values (job
    mode) renders the objects of `kustomize build manifests/overlays/self-signed`: same
    kinds, names and specs. Allowed differences: Helm's standard labels (helm.sh/chart,
    app.kubernetes.io/{managed-by,instance,version}; app.kubernetes.io/name and part-of on
    every object, where manifests/ sets them on some), the release label in selectors; the Namespace, which
    the chart does not create (Helm installs into the release namespace: `helm install -n
    gpu-rightsizer-system --create-namespace`); the policy ConfigMap compared as parsed
    YAML (the chart writes the values' policy without the file's comments); and the certs
    Job's name, which the chart suffixes with the release revision so each upgrade runs it."""
    _assert_same_objects(rendered["job"], kustomized["overlays/self-signed"])


def test_cert_manager_mode_renders_the_cert_manager_overlay(rendered, kustomized):
    """As above, for certificates.mode=cert-manager and manifests/overlays/cert-manager."""
    _assert_same_objects(rendered["cert-manager"], kustomized["overlays/cert-manager"])


def test_planner_rbac_renders_the_optional_planner(rendered, kustomized):
    base = {(o["kind"], o["metadata"]["name"]) for o in rendered["job"]}
    extra = [o for o in render({"planner": {"rbac": True}}) if (o["kind"], o["metadata"]["name"]) not in base]
    _assert_same_objects(extra, kustomized["optional/planner"])


def test_dra_device_classes_render_the_optional_dra_component(rendered, kustomized):
    """dra.deviceClasses.enabled adds exactly the DeviceClasses of manifests/optional/dra (the
    default policy's, generated by `gpu-rightsizer dra deviceclasses`); off by default."""
    assert not [o for o in rendered["job"] if o["kind"] == "DeviceClass"]
    base = {(o["kind"], o["metadata"]["name"]) for o in rendered["job"]}
    extra = [
        o
        for o in render({"dra": {"deviceClasses": {"enabled": True}}})
        if (o["kind"], o["metadata"]["name"]) not in base
    ]
    assert {o["kind"] for o in extra} == {"DeviceClass"}
    _assert_same_objects(extra, kustomized["optional/dra"])


# --- names follow the release --------------------------------------------------------


def test_service_names_and_certificate_follow_the_release(rendered):
    objs = rendered["other-release"]
    full, namespace = "prod-gpu-rightsizer", "ml-platform"
    svc = one(objs, "Service")
    assert svc["metadata"]["name"] == full
    mwc = one(objs, "MutatingWebhookConfiguration", full)
    (hook,) = mwc["webhooks"]
    assert hook["clientConfig"]["service"] == {"name": full, "namespace": namespace, "path": "/mutate", "port": 443}
    (not_in,) = [e for e in hook["namespaceSelector"]["matchExpressions"] if e["key"] == "kubernetes.io/metadata.name"]
    assert not_in == {"key": "kubernetes.io/metadata.name", "operator": "NotIn", "values": [namespace, "kube-system"]}
    serving = one(objs, "Certificate", f"{full}-serving")
    assert serving["spec"]["dnsNames"] == service_dns_names(full, namespace)
    assert serving["spec"]["secretName"] == f"{full}-tls"
    assert mwc["metadata"]["annotations"]["cert-manager.io/inject-ca-from"] == f"{namespace}/{full}-serving"
    volume = one(objs, "Deployment")["spec"]["template"]["spec"]["volumes"][0]["projected"]["sources"]
    assert volume[0]["configMap"]["name"] == f"{full}-policy" and volume[1]["secret"]["name"] == f"{full}-tls"
    binding = one(objs, "ClusterRoleBinding", f"{full}-planner")
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": f"{full}-planner", "namespace": namespace}]


def test_names_stay_dns_labels_for_the_longest_release_name(helm):
    """Helm allows 53-character release names; every name that must be a DNS label (the
    Service, the Job, whose name becomes a pod label, with room for a 6-digit revision)
    stays one."""
    release = "r" * 53
    for values in ({"planner": {"rbac": True}}, {"certificates": {"mode": "cert-manager"}}):
        for obj in render(values, release=release):
            name = obj["metadata"]["name"]
            # the Job: rendered at revision 1, room for 5 more digits
            limit = {"Job": 63 - 5, "Service": 63, "Deployment": 63}.get(obj["kind"], 253)
            assert len(name) <= limit, name
            if obj["apiVersion"] not in CRD_KINDS:
                kubernetes_validate.validate(obj, KUBE_VERSION, strict=True)


def test_certs_job_names_the_release_service_secret_and_webhook(helm):
    objs = render({}, release="prod", namespace="ml-platform")
    full = "prod-gpu-rightsizer"
    job = one(objs, "Job", f"{full}-certs-1")
    args = job["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args == [
        "certs",
        "install",
        "--generate",
        "--service",
        full,
        "--namespace",
        "ml-platform",
        "--secret",
        f"{full}-tls",
        "--webhook-config",
        full,
    ]
    assert one(objs, "Role")["rules"][0]["resourceNames"] == [f"{full}-tls"]
    assert one(objs, "ClusterRole")["rules"][0]["resourceNames"] == [full]
    assert job["spec"]["template"]["spec"]["serviceAccountName"] == f"{full}-certs"


# --- values ------------------------------------------------------------------------


def test_ca_bundle_per_mode(rendered):
    def client_config(case):
        return one(rendered[case], "MutatingWebhookConfiguration")["webhooks"][0]["clientConfig"]

    assert "caBundle" not in client_config("job")  # the Job sets it; Helm's 3-way merge keeps it
    assert "caBundle" not in client_config("cert-manager")  # cert-manager's CA injector sets it
    assert client_config("external")["caBundle"] == CA_BUNDLE
    assert "annotations" not in one(rendered["external"], "MutatingWebhookConfiguration")["metadata"]


def test_webhook_overrides(rendered):
    hook = one(rendered["everything-on"], "MutatingWebhookConfiguration")["webhooks"][0]
    assert (hook["failurePolicy"], hook["timeoutSeconds"]) == ("Ignore", 10)
    assert hook["objectSelector"] == CASES["everything-on"][0]["objectSelector"]
    off = one(rendered["everything-off"], "MutatingWebhookConfiguration")["webhooks"][0]
    assert "matchConditions" not in off and "objectSelector" not in off
    assert off["namespaceSelector"] == {"matchLabels": {"gpu": "yes"}}


def test_everything_on(rendered):
    objs = rendered["everything-on"]
    dep = one(objs, "Deployment")
    pod = dep["spec"]["template"]
    assert dep["spec"]["replicas"] == 3
    assert pod["metadata"]["labels"]["team"] == "ml" and pod["metadata"]["annotations"]["a"] == "b"
    spec = pod["spec"]
    assert spec["priorityClassName"] == "system-cluster-critical"
    images = {c["image"] for c in spec["containers"]} | {
        c["image"] for c in one(objs, "Job")["spec"]["template"]["spec"]["containers"]
    }
    assert images == {"ghcr.io/gpu-rightsizer/gpu-rightsizer@sha256:" + "a" * 64}
    assert one(objs, "PodDisruptionBudget")["spec"]["maxUnavailable"] == 1
    netpol = one(objs, "NetworkPolicy")
    assert netpol["spec"]["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == "webhook"
    assert netpol["spec"]["egress"] == [] and set(netpol["spec"]["policyTypes"]) == {"Ingress", "Egress"}
    monitor = one(objs, "ServiceMonitor")
    assert monitor["metadata"]["labels"]["release"] == "prom"
    svc = one(objs, "Service")
    assert all(svc["metadata"]["labels"].get(k) == v for k, v in monitor["spec"]["selector"]["matchLabels"].items())
    tls = monitor["spec"]["endpoints"][0]["tlsConfig"]
    assert tls["ca"]["secret"] == {"name": "gpu-rightsizer-tls", "key": "ca.crt"}
    assert tls["serverName"] in service_dns_names("gpu-rightsizer", NAMESPACE)


def test_everything_off(rendered):
    objs = rendered["everything-off"]
    kinds = {o["kind"] for o in objs}
    assert not kinds & {"PriorityClass", "PodDisruptionBudget", "NetworkPolicy", "ServiceMonitor"}
    spec = one(objs, "Deployment")["spec"]["template"]["spec"]
    assert "topologySpreadConstraints" not in spec and "resources" not in spec["containers"][0]
    policy = yaml.safe_load(one(objs, "ConfigMap")["data"]["policy.yaml"])
    assert "workloadClasses" not in policy and "defaultWorkloadClass" not in policy


def test_image_tag_defaults_to_app_version(helm):
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    images = {
        c["image"]
        for o in render()
        if o["kind"] in ("Deployment", "Job")
        for c in o["spec"]["template"]["spec"]["containers"]
    }
    assert images == {f"ghcr.io/gpu-rightsizer/gpu-rightsizer:{chart['appVersion']}"}
    tagged = render({"image": {"repository": "registry.example/team/gpu-rightsizer", "tag": "9.9.9"}})
    images = {
        c["image"]
        for o in tagged
        if o["kind"] in ("Deployment", "Job")
        for c in o["spec"]["template"]["spec"]["containers"]
    }
    assert images == {"registry.example/team/gpu-rightsizer:9.9.9"}


# --- the policy ----------------------------------------------------------------------

CUSTOM_POLICY = {
    "pools": [{"name": "a100", "gpuModel": "A100-40GB", "profiles": ["1g.5gb", "3g.20gb"]}],
    "workloadClasses": {
        "inference": None,
        "training": None,
        "batch": {"priorityClassName": "ml-batch", "priority": 5000, "preemptionPolicy": "Never"},
        "existing": {"priorityClassName": "system-node-critical"},
    },
    "defaultWorkloadClass": "batch",
}


def test_policy_configmap_compiles_to_the_package_default(rendered):
    text = one(rendered["job"], "ConfigMap", "gpu-rightsizer-policy")["data"]["policy.yaml"]
    assert POLICY.parse_policy_yaml(text, source="built-in") == POLICY.default_policy()


def test_a_custom_policy_reaches_the_configmap_and_its_priority_classes(helm):
    objs = render({"policy": CUSTOM_POLICY})
    text = one(objs, "ConfigMap")["data"]["policy.yaml"]
    policy = POLICY.parse_policy_yaml(text, source="chart")
    assert [p.name for p in policy.pools] == ["a100"] and set(policy.workload_classes) == {"batch", "existing"}
    # Only the class with a priority gets a PriorityClass; system-node-critical exists already.
    (pc,) = [o for o in objs if o["kind"] == "PriorityClass"]
    assert (pc["metadata"]["name"], pc["value"], pc["preemptionPolicy"], pc["globalDefault"]) == (
        "ml-batch",
        5000,
        "Never",
        False,
    )


def test_priority_classes_equal_the_policy_workload_classes(rendered):
    classes = {o["metadata"]["name"]: o for o in rendered["job"] if o["kind"] == "PriorityClass"}
    named = {wc.priority_class_name: wc for wc in POLICY.default_policy().workload_classes.values()}
    assert set(classes) == set(named)
    for name, wc in named.items():
        assert (classes[name]["value"], classes[name]["preemptionPolicy"]) == (wc.priority, wc.preemption_policy)


# --- DRA DeviceClasses -----------------------------------------------------------

# Policies whose DeviceClasses the chart and the command must agree on: several models, a
# pool listing profiles (a +me one among them), a single-strategy pool (left out), a GFD
# product name as gpuModel in another case, one profile offered by two pools.
DRA_POLICIES = {
    "default": ({}, []),
    "custom": ({"policy": CUSTOM_POLICY}, []),
    "several pools": (
        {
            "policy": {
                "pools": [
                    {"name": "a100", "gpuModel": "a100-sxm4-80gb", "profiles": ["1g.10gb+me", "3g.40gb", "1g.10gb"]},
                    {"name": "h100", "gpuModel": "NVIDIA-H100-80GB-HBM3"},
                    {"name": "h200-single", "gpuModel": "H200-141GB", "strategy": "single"},
                    {"name": "rtx", "gpuModel": "RTX-PRO-6000-96GB"},
                ]
            }
        },
        [],
    ),
    "some pools, another driver": (
        {
            "policy": {
                "pools": [
                    {"name": "a30", "gpuModel": "A30-24GB", "profiles": ["2g.12gb+me", "1g.6gb"]},
                    {"name": "h100", "gpuModel": "H100-80GB"},
                    {"name": "h200", "gpuModel": "NVIDIA-H200"},
                ]
            },
            "dra": {"deviceClasses": {"driver": "gpu.example.com", "pools": ["a30", "h200"]}},
        },
        ["--pool", "a30", "--pool", "h200", "--driver", "gpu.example.com"],
    ),
}


@pytest.mark.parametrize("case", DRA_POLICIES)
def test_dra_device_classes_equal_the_command_for_the_same_policy(helm, case, tmp_path, capsys):
    """The chart's DeviceClasses are what `gpu-rightsizer dra deviceclasses` prints for the
    policy the chart writes into its ConfigMap (with --pool/--driver where the values name
    them): same names, annotations and specs, in the same order; the chart adds its labels."""
    from webhook.cli.main import main

    values, flags = copy.deepcopy(DRA_POLICIES[case])
    values.setdefault("dra", {}).setdefault("deviceClasses", {})["enabled"] = True
    objs = render(values)
    policy = tmp_path / "policy.yaml"
    policy.write_text(one(objs, "ConfigMap")["data"]["policy.yaml"])
    assert main(["dra", "deviceclasses", "--policy", str(policy), *flags]) == 0
    printed = [d for d in yaml.safe_load_all(capsys.readouterr().out) if d]
    charted = [o for o in objs if o["kind"] == "DeviceClass"]
    assert len(printed) >= 2
    assert [_comparable(o, from_chart=True) for o in charted] == [_comparable(o, from_chart=False) for o in printed]
    for obj in charted:
        assert obj["metadata"]["labels"]["app.kubernetes.io/part-of"] == "gpu-rightsizer"
        kubernetes_validate.validate(obj, KUBE_VERSION, strict=True)


@pytest.mark.parametrize(
    "values, message",
    [
        ({"pools": ["h200"]}, "dra.deviceClasses.pools: no pool named h200 in the policy; pools: h100-80"),
        ({"driver": "GPU_nvidia"}, "/dra/deviceClasses/driver"),
        ({"enable": True}, "enable"),
    ],
)
def test_dra_values_refused_with_a_clear_message(helm, values, message):
    with pytest.raises(RenderError) as err:
        render({"dra": {"deviceClasses": {"enabled": True, **values}}})
    assert message in str(err.value), str(err.value)


def test_dra_refuses_pools_that_offer_no_profile(helm):
    single = {"pools": [{"name": "h100", "gpuModel": "H100-80GB", "strategy": "single"}]}
    with pytest.raises(RenderError) as err:
        render({"policy": single, "dra": {"deviceClasses": {"enabled": True}}})
    assert "the chosen pools offer no MIG profile on the mixed strategy" in str(err.value)


def test_chart_catalog_file_is_generated_from_the_catalog():
    done = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "chart_catalog.py"), "--check"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr


BAD_POLICIES = {
    "unknown key": ({"pool": []}, "pool"),
    "unknown enum": ({"onOversize": "shrink"}, "onOversize"),
    "out of range": ({"estimate": {"overheadFactor": 0.5}}, "overheadFactor"),
    "wrong type": ({"estimate": {"activationMiB": "lots"}}, "activationMiB"),
    "no pools": ({"pools": []}, "pools"),
    "bad pool name": ({"pools": [{"name": "H100_80", "gpuModel": "H100-80GB"}]}, "name"),
    "toleration typo": ({"tolerations": [{"key": "k", "opertor": "Exists"}]}, "opertor"),
    "workload class typo": ({"workloadClasses": {"inference": {"priorityClass": "x"}}}, "priorityClass"),
}


@pytest.mark.parametrize("case", BAD_POLICIES)
def test_schema_refuses_a_bad_policy_as_the_server_would(helm, case):
    patch, word = BAD_POLICIES[case]
    with pytest.raises(RenderError) as err:
        render({"policy": patch})
    message = str(err.value)
    assert "values don't meet the specifications of the schema" in message and "/policy" in message, message
    assert word in message, message
    # ... and the server refuses the same policy.
    merged = {**yaml.safe_load(POLICY.default_policy_text()), **patch}
    with pytest.raises(POLICY.PolicyError):
        POLICY.compile_policy(merged)


def test_schema_accepts_a_custom_policy_the_server_accepts(helm):
    render({"policy": CUSTOM_POLICY})
    merged = {**yaml.safe_load(POLICY.default_policy_text()), **CUSTOM_POLICY}
    merged["workloadClasses"] = {k: v for k, v in merged["workloadClasses"].items() if v is not None}
    POLICY.compile_policy(merged)


@pytest.mark.parametrize(
    "values, message",
    [
        ({"certificates": {"mode": "external"}}, "certificates.mode=external needs certificates.caBundle"),
        (
            {"certificates": {"caBundle": CA_BUNDLE}},
            "certificates.caBundle is only used with certificates.mode=external",
        ),
        ({"certificates": {"mode": "vault"}}, "/certificates/mode"),
        ({"policy": {"defaultWorkloadClass": "serving"}}, 'policy.defaultWorkloadClass: "serving" is not a key'),
        ({"podDisruptionBudget": {"maxUnavailable": 1}}, "set minAvailable or maxUnavailable, not both"),
        ({"failurePolicy": "Sometimes"}, "/failurePolicy"),
        ({"timeoutSeconds": 31}, "/timeoutSeconds"),
        ({"replicaCount": "two"}, "/replicaCount"),
        ({"serviceMonitor": {"enable": True}}, "enable"),
    ],
)
def test_values_refused_with_a_clear_message(helm, values, message):
    with pytest.raises(RenderError) as err:
        render(values)
    assert message in str(err.value), str(err.value)


# --- installing ------------------------------------------------------------------------


def test_install_command_is_accepted_by_helm(helm, tmp_path):
    """The real-node tier's command line, every flag and the values file, given to `helm
    template` (which takes install's flags) since `helm install --dry-run` needs a cluster."""
    cmd = install_command({"replicaCount": 3}, image="registry.example:5000/gpu-rightsizer:dev", values_dir=tmp_path)
    assert cmd[1] == "install" and "--wait" in cmd
    done = subprocess.run([cmd[0], "template", *cmd[2:]], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    objs = [d for d in yaml.safe_load_all(done.stdout) if d]
    images = {
        c["image"]
        for o in objs
        if o["kind"] in ("Deployment", "Job")
        for c in o["spec"]["template"]["spec"]["containers"]
    }
    assert images == {"registry.example:5000/gpu-rightsizer:dev"}
    assert one(objs, "Deployment")["spec"]["replicas"] == 3
    assert one(objs, "Service")["metadata"]["namespace"] == NAMESPACE


def test_notes_render(helm, tmp_path):
    """NOTES.txt, which `helm install` prints, renders and names the release's objects."""
    # `helm template` never prints NOTES.txt; render it through a copy where it is a manifest.
    chart = tmp_path / "chart"
    shutil.copytree(CHART, chart)
    shutil.copy(CHART / "templates" / "NOTES.txt", chart / "notes.txt")
    (chart / "templates" / "notes.yaml").write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: notes}\ndata:\n"
        '  notes: {{ tpl (.Files.Get "notes.txt") . | toJson }}\n'
    )
    done = subprocess.run(
        [helm, "template", "prod", str(chart), "-n", "ml", "--show-only", "templates/notes.yaml"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    notes = yaml.safe_load(done.stdout)["data"]["notes"]
    assert "kubectl label namespace ml pod-security.kubernetes.io/enforce=restricted" in notes
    assert "deployment/prod-gpu-rightsizer" in notes and "delete secret prod-gpu-rightsizer-tls" in notes


@pytest.mark.parametrize(
    ("policy_change", "resources"),
    [
        ({}, None),
        ({"quota": {"mode": "gpu-equivalent"}}, ["pods", "resourcequotas"]),
        ({"quota": {"mode": "warn"}}, ["pods", "resourcequotas"]),
        ({"capacity": {"mode": "prefer-free"}}, ["nodes", "pods"]),
        (
            {"capacity": {"mode": "prefer-free"}, "quota": {"mode": "gpu-equivalent"}},
            ["nodes", "pods", "resourcequotas"],
        ),
        ({"capacity": {"mode": "off"}, "quota": {"mode": "off"}}, None),
    ],
)
def test_the_watch_rbac_and_token_follow_the_policy(policy_change, resources):
    """capacity.mode and quota.mode make the webhook watch the cluster; the chart derives the
    read-only RBAC and the token from the policy itself, so the two cannot disagree."""
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    objects = render({"policy": {**values["policy"], **policy_change}})
    roles = [o for o in objects if o["kind"] == "ClusterRole" and o["metadata"]["name"].endswith("-cluster-view")]
    deployment = next(o for o in objects if o["kind"] == "Deployment")
    token = deployment["spec"]["template"]["spec"]["automountServiceAccountToken"]
    if resources is None:
        assert roles == [] and token is False
        return
    (role,) = roles
    assert role["rules"] == [{"apiGroups": [""], "resources": resources, "verbs": ["list", "watch"]}]
    binding = next(
        o for o in objects if o["kind"] == "ClusterRoleBinding" and o["metadata"]["name"] == role["metadata"]["name"]
    )
    assert binding["subjects"][0]["name"] == deployment["spec"]["template"]["spec"]["serviceAccountName"]
    assert token is True
