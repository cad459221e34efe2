"""manifests/: every kustomization renders with a real kustomize, every object validates
against the Kubernetes 1.36 schemas (kubernetes-validate, strict: unknown fields fail),
and the pieces agree with each other and with the package (policy, PriorityClasses,
Service DNS names). cert-manager's Issuer/Certificate are CRDs kubernetes-validate has
no schema for; they are checked structurally below.

The webhook's matchConditions are compiled and evaluated by tools/celcheck, which is
kube-apiserver's own CEL compiler (k8s.io/apiserver v0.36.3), so a CEL mistake that the
API server would refuse at create time, or an unguarded field that errors at runtime,
fails here.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import kubernetes_validate
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from webhook.certs.bundle import service_dns_names
from webhook.cli.dra import render as render_device_classes
from webhook.core.decision import decide
from webhook.core.dra import device_classes
from webhook.core.policy import default_policy, default_policy_text, parse_policy_yaml

ROOT = Path(__file__).resolve().parent.parent
MANIFESTS = ROOT / "manifests"
KUBE_VERSION = "1.36.0"
NAMESPACE = "gpu-rightsizer-system"
CERT_MANAGER_KINDS = {"Issuer", "Certificate"}
KUSTOMIZATIONS = [
    "base",
    "overlays/self-signed",
    "overlays/cert-manager",
    "optional/planner",
    "optional/dra",
    # the optional/capacity and optional/quota Components, on the self-signed install
    "overlays/self-signed-capacity",
    "overlays/self-signed-quota",
]


def _script(name: str) -> str:
    done = subprocess.run([str(ROOT / "scripts" / name)], capture_output=True, text=True, timeout=900)
    if done.returncode != 0:
        pytest.fail(f"scripts/{name} failed:\n{done.stderr[-3000:]}")
    return done.stdout.strip().splitlines()[-1]


@pytest.fixture(scope="session")
def kustomize() -> list[str]:
    if shutil.which("go"):
        return [_script("install-kustomize.sh"), "build"]
    if shutil.which("kubectl"):
        return ["kubectl", "kustomize"]
    pytest.fail("neither go (to build kustomize) nor kubectl (kubectl kustomize) is on PATH")


@pytest.fixture(scope="session")
def rendered(kustomize) -> dict[str, list[dict]]:
    out = {}
    for name in KUSTOMIZATIONS:
        done = subprocess.run([*kustomize, str(MANIFESTS / name)], capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, f"kustomize build {name}: {done.stderr}"
        out[name] = [doc for doc in yaml.safe_load_all(done.stdout) if doc]
    return out


@pytest.fixture(scope="session")
def celcheck() -> str:
    if not shutil.which("go"):
        pytest.fail("go is needed to build tools/celcheck (kube-apiserver's CEL compiler)")
    return _script("build-celcheck.sh")


def one(objects: list[dict], kind: str, name: str | None = None) -> dict:
    found = [o for o in objects if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)]
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


# --- rendering and schema -----------------------------------------------------------


@pytest.mark.parametrize("name", KUSTOMIZATIONS)
def test_every_object_validates_against_kubernetes_schema(rendered, name):
    objects = rendered[name]
    assert objects
    for obj in objects:
        if obj["apiVersion"].startswith("cert-manager.io/"):
            assert obj["kind"] in CERT_MANAGER_KINDS
            continue
        try:
            kubernetes_validate.validate(obj, KUBE_VERSION, strict=True)
        except kubernetes_validate.ValidationError as err:
            pytest.fail(f"{name}: {obj['kind']}/{obj['metadata']['name']}: {err.message} at {list(err.path)}")


@pytest.mark.parametrize("name", KUSTOMIZATIONS)
def test_namespaced_objects_are_in_the_webhook_namespace(rendered, name):
    cluster_scoped = {
        "Namespace",
        "PriorityClass",
        "ClusterRole",
        "ClusterRoleBinding",
        "MutatingWebhookConfiguration",
        "DeviceClass",
    }
    for obj in rendered[name]:
        if obj["kind"] in cluster_scoped:
            assert "namespace" not in obj["metadata"]
        else:
            assert obj["metadata"].get("namespace") == NAMESPACE, obj["kind"]


def test_kinds_per_kustomization(rendered):
    base = {o["kind"] for o in rendered["base"]}
    assert base >= {
        "Namespace",
        "ServiceAccount",
        "Deployment",
        "PodDisruptionBudget",
        "Service",
        "ConfigMap",
        "PriorityClass",
        "Role",
        "RoleBinding",
        "ClusterRole",
        "ClusterRoleBinding",
        "MutatingWebhookConfiguration",
    }
    assert {o["kind"] for o in rendered["overlays/self-signed"]} == base | {"Job"}
    cm = rendered["overlays/cert-manager"]
    assert {o["kind"] for o in cm} == (base - {"Role", "RoleBinding", "ClusterRole", "ClusterRoleBinding"}) | {
        "Issuer",
        "Certificate",
    }
    assert [o["metadata"]["name"] for o in cm if o["kind"] == "ServiceAccount"] == ["gpu-rightsizer"]


def test_the_planners_role_only_reads_what_plan_in_cluster_lists(rendered):
    (role,) = [o for o in rendered["optional/planner"] if o["kind"] == "ClusterRole"]
    assert role["rules"] == [
        {"apiGroups": [""], "resources": ["namespaces", "pods", "nodes"], "verbs": ["get", "list"]}
    ]
    (binding,) = [o for o in rendered["optional/planner"] if o["kind"] == "ClusterRoleBinding"]
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "gpu-rightsizer-planner", "namespace": NAMESPACE}]


def test_the_capacity_component_reads_nodes_and_pods_and_turns_the_mode_on(rendered):
    objs = rendered["overlays/self-signed-capacity"]
    role = one(objs, "ClusterRole", "gpu-rightsizer-capacity")
    assert role["rules"] == [{"apiGroups": [""], "resources": ["nodes", "pods"], "verbs": ["list", "watch"]}]
    binding = one(objs, "ClusterRoleBinding", "gpu-rightsizer-capacity")
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "gpu-rightsizer", "namespace": NAMESPACE}]
    dep = one(objs, "Deployment", "gpu-rightsizer")
    assert dep["spec"]["template"]["spec"]["automountServiceAccountToken"] is True
    assert dep["spec"]["template"]["spec"]["serviceAccountName"] == "gpu-rightsizer"
    text = one(objs, "ConfigMap", "gpu-rightsizer-policy")["data"]["policy.yaml"]
    policy = parse_policy_yaml(text)
    assert policy.capacity.mode == "prefer-free" and policy.capacity.max_staleness == 30
    # the rest of the policy is the base's
    assert text.startswith(default_policy_text())
    rest = {o["kind"] + "/" + o["metadata"]["name"] for o in objs} - {
        "ClusterRole/gpu-rightsizer-capacity",
        "ClusterRoleBinding/gpu-rightsizer-capacity",
    }
    assert rest == {o["kind"] + "/" + o["metadata"]["name"] for o in rendered["overlays/self-signed"]}


def test_the_quota_component_reads_quotas_and_pods_and_turns_enforcement_on(rendered):
    objs = rendered["overlays/self-signed-quota"]
    role = one(objs, "ClusterRole", "gpu-rightsizer-quota")
    assert role["rules"] == [{"apiGroups": [""], "resources": ["resourcequotas", "pods"], "verbs": ["list", "watch"]}]
    binding = one(objs, "ClusterRoleBinding", "gpu-rightsizer-quota")
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "gpu-rightsizer", "namespace": NAMESPACE}]
    dep = one(objs, "Deployment", "gpu-rightsizer")
    assert dep["spec"]["template"]["spec"]["automountServiceAccountToken"] is True
    text = one(objs, "ConfigMap", "gpu-rightsizer-policy")["data"]["policy.yaml"]
    assert parse_policy_yaml(text).quota_mode == "gpu-equivalent"
    assert text.startswith(default_policy_text())  # the rest of the policy is the base's
    rest = {o["kind"] + "/" + o["metadata"]["name"] for o in objs} - {
        "ClusterRole/gpu-rightsizer-quota",
        "ClusterRoleBinding/gpu-rightsizer-quota",
    }
    assert rest == {o["kind"] + "/" + o["metadata"]["name"] for o in rendered["overlays/self-signed"]}


def test_the_dra_device_classes_are_what_the_command_prints_for_the_base_policy(rendered):
    # manifests/optional/dra/deviceclasses.yaml is generated: regenerate it with
    #   gpu-rightsizer dra deviceclasses --policy manifests/base/policy.yaml > manifests/optional/dra/deviceclasses.yaml
    policy = parse_policy_yaml((MANIFESTS / "base" / "policy.yaml").read_text())
    expected = render_device_classes(device_classes(policy))
    assert (MANIFESTS / "optional" / "dra" / "deviceclasses.yaml").read_text() == expected
    objs = rendered["optional/dra"]
    assert {o["kind"] for o in objs} == {"DeviceClass"}
    profiles = [p.name for pool in policy.pools for p in pool.profiles]
    assert [o["spec"]["extendedResourceName"] for o in objs] == [f"nvidia.com/mig-{p}" for p in profiles]
    for obj in objs:
        assert "namespace" not in obj["metadata"]


# --- policy and PriorityClasses -----------------------------------------------------


def test_base_policy_file_is_the_package_default():
    assert (MANIFESTS / "base" / "policy.yaml").read_text() == default_policy_text()


def test_policy_configmap_holds_the_default_policy(rendered):
    cm = one(rendered["base"], "ConfigMap", "gpu-rightsizer-policy")
    assert cm["data"]["policy.yaml"] == default_policy_text()
    assert parse_policy_yaml(cm["data"]["policy.yaml"], source="built-in") == default_policy()


def test_priority_classes_equal_the_policy_workload_classes(rendered):
    classes = {o["metadata"]["name"]: o for o in rendered["base"] if o["kind"] == "PriorityClass"}
    named = {wc.priority_class_name: wc for wc in default_policy().workload_classes.values() if wc.priority_class_name}
    assert set(classes) == set(named)
    for name, wc in named.items():
        assert classes[name]["value"] == wc.priority, name
        assert classes[name].get("preemptionPolicy", "PreemptLowerPriority") == (
            wc.preemption_policy or "PreemptLowerPriority"
        ), name
        assert classes[name].get("globalDefault", False) is False


# --- Deployment, Service, PDB -------------------------------------------------------


def _pod_matches(selector: dict, labels: dict) -> bool:
    return all(labels.get(k) == v for k, v in selector["matchLabels"].items())


def test_deployment_is_restricted_and_read_only(rendered):
    dep = one(rendered["base"], "Deployment", "gpu-rightsizer")
    spec = dep["spec"]
    assert spec["replicas"] == 2
    pod = spec["template"]["spec"]
    assert _pod_matches(spec["selector"], spec["template"]["metadata"]["labels"])
    psc = pod["securityContext"]
    assert psc["runAsNonRoot"] is True and psc["runAsUser"] != 0
    assert psc["seccompProfile"]["type"] == "RuntimeDefault"
    assert pod["automountServiceAccountToken"] is False
    assert not pod.get("hostNetwork") and not pod.get("hostPID") and not pod.get("hostIPC")
    for c in pod["containers"]:
        sc = c["securityContext"]
        assert sc["allowPrivilegeEscalation"] is False
        assert sc["readOnlyRootFilesystem"] is True
        assert sc["capabilities"]["drop"] == ["ALL"] and not sc["capabilities"].get("add")
        assert not sc.get("privileged")
        assert c["resources"]["requests"]["cpu"] and c["resources"]["requests"]["memory"]
        assert c["resources"]["limits"]["cpu"] and c["resources"]["limits"]["memory"]
    for vol in pod["volumes"]:
        assert set(vol) - {"name"} <= {"configMap", "secret", "projected", "emptyDir"}, vol
    keys = {c["topologyKey"] for c in pod["topologySpreadConstraints"]}
    assert keys == {"kubernetes.io/hostname", "topology.kubernetes.io/zone"}
    for c in pod["topologySpreadConstraints"]:
        assert _pod_matches(c["labelSelector"], spec["template"]["metadata"]["labels"])


def test_deployment_runs_the_shipped_thread_count(rendered):
    from webhook.serving import gunicorn_conf

    (deployment,) = [o for o in rendered["base"] if o["kind"] == "Deployment"]
    env = {e["name"]: e.get("value") for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["GPU_RIGHTSIZER_THREADS"] == str(gunicorn_conf.threads) == "16"


def test_deployment_drains_before_it_stops_serving(rendered):
    """A replica keeps serving while endpoints forget it (preStop), and then finishes its
    admissions (graceful_timeout) within the grace period: no refused create on a rollout."""
    from webhook.serving import gunicorn_conf

    pod = one(rendered["base"], "Deployment", "gpu-rightsizer")["spec"]["template"]["spec"]
    pre_stop = pod["containers"][0]["lifecycle"]["preStop"]["sleep"]["seconds"]
    assert 3 <= pre_stop
    assert pre_stop + gunicorn_conf.graceful_timeout < pod["terminationGracePeriodSeconds"]


def test_deployment_serves_the_mounted_policy_and_certificate(rendered):
    dep = one(rendered["base"], "Deployment", "gpu-rightsizer")
    pod = dep["spec"]["template"]["spec"]
    container = pod["containers"][0]
    args = container["args"]
    assert args[0] == "serve"
    flag = {args[i]: args[i + 1] for i in range(1, len(args) - 1) if args[i].startswith("--")}
    mounts = {m["name"]: m for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    # Each file a flag names is one the projected volume puts there.
    files = {}
    for name, mount in mounts.items():
        vol = volumes[name]
        for source in vol.get("projected", {}).get("sources", []):
            for kind in ("configMap", "secret"):
                if kind in source:
                    for item in source[kind]["items"]:
                        files[f"{mount['mountPath']}/{item['path']}"] = (kind, source[kind]["name"], item["key"])
    assert files[flag["--policy"]] == ("configMap", "gpu-rightsizer-policy", "policy.yaml")
    assert files[flag["--cert-file"]] == ("secret", "gpu-rightsizer-tls", "tls.crt")
    assert files[flag["--key-file"]] == ("secret", "gpu-rightsizer-tls", "tls.key")
    assert all(m.get("readOnly") for m in container["volumeMounts"] if m["mountPath"] != "/tmp")
    # /tmp is writable (Prometheus multiprocess files), everything else is read-only.
    assert "emptyDir" in volumes[next(n for n, m in mounts.items() if m["mountPath"] == "/tmp")]
    port = container["ports"][0]
    assert port["containerPort"] == int(flag["--port"]) == 8443
    for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz"), ("startupProbe", "/healthz")):
        get = container[probe]["httpGet"]
        assert (get["path"], get["scheme"], get["port"]) == (path, "HTTPS", port["name"])


def test_service_and_pdb_select_the_pods(rendered):
    objs = rendered["base"]
    dep = one(objs, "Deployment", "gpu-rightsizer")
    labels = dep["spec"]["template"]["metadata"]["labels"]
    svc = one(objs, "Service", "gpu-rightsizer")
    assert all(labels.get(k) == v for k, v in svc["spec"]["selector"].items())
    (port,) = svc["spec"]["ports"]
    assert port["port"] == 443
    assert port["targetPort"] == dep["spec"]["template"]["spec"]["containers"][0]["ports"][0]["name"]
    pdb = one(objs, "PodDisruptionBudget", "gpu-rightsizer")
    assert _pod_matches(pdb["spec"]["selector"], labels)
    assert pdb["spec"]["minAvailable"] == 1 < dep["spec"]["replicas"]


# --- the webhook configuration ------------------------------------------------------


def _webhook(objects: list[dict]) -> dict:
    (hook,) = one(objects, "MutatingWebhookConfiguration", "gpu-rightsizer")["webhooks"]
    return hook


def test_webhook_configuration(rendered):
    hook = _webhook(rendered["base"])
    assert hook["name"] == "pods.gpu-rightsizer.io"
    assert hook["admissionReviewVersions"] == ["v1"]
    assert hook["sideEffects"] == "None"
    assert hook["reinvocationPolicy"] == "IfNeeded"
    assert hook["failurePolicy"] in ("Fail", "Ignore")
    assert 1 <= hook["timeoutSeconds"] <= 30
    assert hook["rules"] == [
        {
            "apiGroups": [""],
            "apiVersions": ["v1"],
            "operations": ["CREATE"],
            "resources": ["pods"],
            "scope": "Namespaced",
        }
    ]
    svc = one(rendered["base"], "Service", "gpu-rightsizer")
    ref = hook["clientConfig"]["service"]
    assert (ref["name"], ref["namespace"], ref["port"], ref["path"]) == (
        svc["metadata"]["name"],
        svc["metadata"]["namespace"],
        svc["spec"]["ports"][0]["port"],
        "/mutate",
    )
    exprs = hook["namespaceSelector"]["matchExpressions"]
    assert {"key": "gpu-rightsizer.io/enabled", "operator": "In", "values": ["true"]} in exprs
    (not_in,) = [e for e in exprs if e["key"] == "kubernetes.io/metadata.name"]
    assert not_in["operator"] == "NotIn" and set(not_in["values"]) >= {NAMESPACE, "kube-system"}
    assert "objectSelector" not in hook


def _match_conditions(rendered) -> dict[str, str]:
    return {c["name"]: c["expression"] for c in _webhook(rendered["base"])["matchConditions"]}


def _run_celcheck(celcheck: str, expressions: dict, objects: list[dict]) -> dict:
    done = subprocess.run(
        [celcheck],
        input=json.dumps({"expressions": expressions, "objects": objects}),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_match_conditions_compile_in_kube_apiserver(rendered, celcheck):
    out = _run_celcheck(celcheck, _match_conditions(rendered), [])
    assert out["compileErrors"] == {}


def test_celcheck_rejects_what_the_api_server_rejects(celcheck):
    # The checker is not a rubber stamp: a non-bool, a syntax error and an unknown
    # variable are all refused, and an unguarded field errors at evaluation.
    out = _run_celcheck(
        celcheck,
        {
            "int": "size(object.spec.containers)",
            "syntax": "object.spec.(",
            "var": "pod.spec != null",
            "unguarded": "'x' in object.metadata.annotations",
        },
        [{"metadata": {}}],
    )
    assert set(out["compileErrors"]) == {"int", "syntax", "var"}
    assert out["results"][0]["unguarded"].startswith("error:")


def _pod(containers=None, init=None, annotations=None) -> dict:
    pod: dict = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": {}}
    if annotations is not None:
        pod["metadata"]["annotations"] = annotations
    if containers is not None:
        pod["spec"]["containers"] = containers
    if init is not None:
        pod["spec"]["initContainers"] = init
    return pod


GPU = {"limits": {"nvidia.com/gpu": "1"}}
MIG = {"limits": {"nvidia.com/mig-1g.10gb": "1"}}
CASES = [
    # (pod, webhook is called)
    (_pod([{"name": "a"}]), False),
    (_pod([{"name": "a", "resources": {}}]), False),
    (_pod([{"name": "a", "resources": {"limits": {"cpu": "1"}}}]), False),
    (_pod([{"name": "a", "resources": {"limits": {"nvidia.com/mig-1g.10gb": "1"}}}]), False),
    (_pod([{"name": "a", "resources": GPU}]), True),
    (_pod([{"name": "a", "resources": {"requests": {"nvidia.com/gpu": "2"}}}]), True),
    (
        _pod([{"name": "a"}, {"name": "b", "resources": {"requests": {"cpu": "1"}, "limits": {"nvidia.com/gpu": 1}}}]),
        True,
    ),
    (_pod([{"name": "a"}], init=[{"name": "i", "resources": GPU}]), True),
    (_pod([{"name": "a"}], init=[{"name": "i"}]), False),
    (_pod([{"name": "a", "resources": GPU}], annotations={}), True),
    (_pod([{"name": "a", "resources": GPU}], annotations={"gpu-rightsizer.io/skip": "true"}), False),
    (_pod([{"name": "a", "resources": GPU}], annotations={"gpu-rightsizer.io/skip": "false"}), True),
    # The webhook itself skips these; CEL leaves them to it (never skips more than it).
    (_pod([{"name": "a", "resources": GPU}], annotations={"gpu-rightsizer.io/skip": " True "}), True),
    (_pod([], annotations={"other": "x"}), False),
    # A pod that already asks for a MIG slice and states its need: the webhook says whether
    # the slice holds it; without a stated need there is nothing to check.
    (_pod([{"name": "a", "resources": MIG}], annotations={"gpu-rightsizer.io/model-size": "7b"}), True),
    (
        _pod(
            [{"name": "a", "resources": {"requests": {"nvidia.com/mig-3g.40gb": "1"}}}],
            annotations={"gpu-rightsizer.io/gpu-memory": "20Gi"},
        ),
        True,
    ),
    (_pod([{"name": "a", "resources": MIG}], annotations={"gpu-rightsizer.io/precision": "fp8"}), False),
    (
        _pod([{"name": "a"}], init=[{"name": "i", "resources": MIG}], annotations={"gpu-rightsizer.io/model": "x"}),
        False,
    ),
    ({"apiVersion": "v1", "kind": "Pod", "metadata": {}}, False),
]


def _called(row: dict) -> bool:
    assert all(isinstance(v, bool) for v in row.values()), row  # no evaluation errors
    return all(row.values())


def test_match_conditions_select_gpu_pods_not_skipped(rendered, celcheck):
    out = _run_celcheck(celcheck, _match_conditions(rendered), [pod for pod, _ in CASES])
    for (pod, expected), row in zip(CASES, out["results"], strict=True):
        assert _called(row) is expected, (pod, row)


_resources = st.fixed_dictionaries(
    {},
    optional={
        "limits": st.dictionaries(
            st.sampled_from(["cpu", "memory", "nvidia.com/gpu", "nvidia.com/mig-1g.10gb"]),
            st.sampled_from(["1", "2", "0"]),
            max_size=3,
        ),
        "requests": st.dictionaries(
            st.sampled_from(["cpu", "nvidia.com/gpu"]), st.sampled_from(["1", "0"]), max_size=2
        ),
    },
)
_container = st.builds(
    lambda name, res: {"name": name, **({"resources": res} if res is not None else {})},
    st.sampled_from(["a", "b", "c"]),
    st.none() | _resources,
)
_pods = st.builds(
    _pod,
    st.lists(_container, min_size=1, max_size=3),
    st.none() | st.lists(_container, max_size=2),
    st.none()
    | st.dictionaries(
        st.sampled_from(["gpu-rightsizer.io/skip", "gpu-rightsizer.io/model-size", "x"]),
        st.sampled_from(["true", "false", "TRUE", "7b", ""]),
        max_size=3,
    ),
)


@settings(max_examples=1, deadline=None, suppress_health_check=list(HealthCheck), database=None)
@given(st.lists(_pods, min_size=300, max_size=300))
def test_match_conditions_never_skip_a_pod_the_webhook_would_act_on(rendered, celcheck, pods):
    # One celcheck run over 300 generated pods: no evaluation errors, and every pod CEL
    # keeps from the webhook is one the webhook would ignore anyway.
    out = _run_celcheck(celcheck, _match_conditions(rendered), pods)
    policy = default_policy()
    for pod, row in zip(pods, out["results"], strict=True):
        if not _called(row):
            assert decide(pod, policy).action == "ignore", pod


# --- certificates: cert-manager and self-signed -------------------------------------


def test_cert_manager_overlay_chain(rendered):
    objs = rendered["overlays/cert-manager"]
    issuers = {o["metadata"]["name"]: o for o in objs if o["kind"] == "Issuer"}
    certs = {o["metadata"]["name"]: o for o in objs if o["kind"] == "Certificate"}
    for o in (*issuers.values(), *certs.values()):
        assert o["apiVersion"] == "cert-manager.io/v1"
        assert o["metadata"]["namespace"] == NAMESPACE
    ca = next(c for c in certs.values() if c["spec"].get("isCA"))
    assert "selfSigned" in issuers[ca["spec"]["issuerRef"]["name"]]["spec"]
    ca_issuer = next(i for i in issuers.values() if "ca" in i["spec"])
    assert ca_issuer["spec"]["ca"]["secretName"] == ca["spec"]["secretName"]
    serving = next(c for c in certs.values() if not c["spec"].get("isCA"))
    assert serving["spec"]["issuerRef"] == {
        "name": ca_issuer["metadata"]["name"],
        "kind": "Issuer",
        "group": "cert-manager.io",
    }
    assert serving["spec"]["secretName"] == "gpu-rightsizer-tls"
    assert serving["spec"]["dnsNames"] == service_dns_names("gpu-rightsizer", NAMESPACE)
    assert "server auth" in serving["spec"]["usages"]
    mwc = one(objs, "MutatingWebhookConfiguration", "gpu-rightsizer")
    assert mwc["metadata"]["annotations"]["cert-manager.io/inject-ca-from"] == (
        f"{NAMESPACE}/{serving['metadata']['name']}"
    )
    assert "caBundle" not in mwc["webhooks"][0]["clientConfig"]


def test_self_signed_job_installs_what_the_rest_uses(rendered):
    objs = rendered["overlays/self-signed"]
    job = one(objs, "Job", "gpu-rightsizer-certs")
    pod = job["spec"]["template"]["spec"]
    args = pod["containers"][0]["args"]
    assert args[:3] == ["certs", "install", "--generate"]
    flag = {args[i]: args[i + 1] for i in range(3, len(args) - 1, 2)}
    svc = one(objs, "Service", "gpu-rightsizer")
    assert flag["--service"] == svc["metadata"]["name"] and flag["--namespace"] == NAMESPACE
    assert flag["--secret"] == "gpu-rightsizer-tls"
    assert flag["--webhook-config"] == "gpu-rightsizer"
    # The Job's account may touch exactly that Secret and that webhook configuration.
    sa = pod["serviceAccountName"]
    role = one(objs, "Role", "gpu-rightsizer-certs")
    binding = one(objs, "RoleBinding", "gpu-rightsizer-certs")
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": sa, "namespace": NAMESPACE}]
    for rule in role["rules"]:
        assert rule["resources"] == ["secrets"]
        if "resourceNames" in rule:
            assert rule["resourceNames"] == [flag["--secret"]]
        else:
            assert rule["verbs"] == ["create"]  # create cannot be limited by name
    crole = one(objs, "ClusterRole", "gpu-rightsizer-certs")
    assert crole["rules"] == [
        {
            "apiGroups": ["admissionregistration.k8s.io"],
            "resources": ["mutatingwebhookconfigurations"],
            "resourceNames": [flag["--webhook-config"]],
            "verbs": ["get", "patch"],
        }
    ]
    cbinding = one(objs, "ClusterRoleBinding", "gpu-rightsizer-certs")
    assert cbinding["subjects"] == binding["subjects"]
    sc = pod["containers"][0]["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True and sc["allowPrivilegeEscalation"] is False


# --- one image override reaches every container ---------------------------------------

SHIPPED_IMAGE = "ghcr.io/gpu-rightsizer/gpu-rightsizer"
INSTALLABLE = [
    "base",
    "overlays/self-signed",
    "overlays/cert-manager",
    "overlays/self-signed-capacity",
    "overlays/self-signed-quota",
]


def container_images(objects: list[dict]) -> dict[str, str]:
    """`Kind/name/container` -> image, for every container and init container of every
    object that runs pods."""
    images = {}
    for obj in objects:
        spec = obj.get("spec") or {}
        pod_spec = (
            spec
            if obj["kind"] == "Pod"
            else ((spec.get("jobTemplate") or {}).get("spec") or spec).get("template", {}).get("spec")
        )
        for c in (pod_spec or {}).get("initContainers", []) + (pod_spec or {}).get("containers", []):
            images[f"{obj['kind']}/{obj['metadata']['name']}/{c['name']}"] = c["image"]
    return images


@pytest.mark.parametrize("name", INSTALLABLE)
def test_every_container_of_an_install_names_the_same_image(rendered, name):
    images = container_images(rendered[name])
    assert images, f"{name} runs no containers"
    assert set(images.values()) == {f"{SHIPPED_IMAGE}:0.1.0"}, images


@pytest.mark.parametrize("name", INSTALLABLE)
def test_the_readmes_one_image_override_reaches_every_container(kustomize, tmp_path, name):
    """What README tells a user to run, in the directory they apply, changes every container
    (the self-signed overlay's certs Job once kept the base's image name and never ran)."""
    if kustomize[-1] != "build":
        pytest.fail("`kustomize edit` needs the kustomize binary (go builds it: scripts/install-kustomize.sh)")
    shutil.copytree(MANIFESTS, tmp_path / "manifests")
    where = tmp_path / "manifests" / name
    ours = "registry.example/team/gpu-rightsizer:9.9.9"
    edit = subprocess.run(
        [kustomize[0], "edit", "set", "image", f"{SHIPPED_IMAGE}={ours}"],
        cwd=where,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert edit.returncode == 0, edit.stderr
    done = subprocess.run([*kustomize, str(where)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    images = container_images([d for d in yaml.safe_load_all(done.stdout) if d])
    assert images and set(images.values()) == {ours}, images
