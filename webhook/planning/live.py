"""Demand and supply read from a live cluster, as raw JSON dicts.

Pods of opted-in namespaces (label gpu-rightsizer.io/enabled=true): a pod admitted
through the webhook carries its slice (resource nvidia.com/mig-<profile>, annotation
gpu-rightsizer.io/assigned-profile); any other pod is sized by the webhook's decision.
GPU nodes: GPU feature discovery labels (nvidia.com/gpu.product, gpu.count, mig.config,
mig.strategy) and status.allocatable. The client's typed models drop unknown fields,
so objects are read through kubernetes.dynamic as plain dicts.
"""

from __future__ import annotations

from webhook.core import annotations as ann
from webhook.core.capacity import MIG_RESOURCE
from webhook.core.catalog import GpuModel, builtin_catalog
from webhook.core.constants import (
    COUNT_LABEL,
    GPU_RESOURCE,
    MIG_CONFIG_LABEL,
    MIG_RESOURCE_PREFIX,
    OPT_IN_LABEL,
    PRODUCT_LABEL,
)
from webhook.core.decision import decide
from webhook.core.errors import BadObject
from webhook.core.policy import Policy, Pool
from webhook.planning.demand import Demand, Workload, pod_resources
from webhook.planning.geometry import WHOLE_LAYOUT, Layout, realise
from webhook.planning.migparted import PREFIX
from webhook.planning.solver import LiveGpu

ACTIVE_PHASES = ("Pending", "Running", None)


# --- reading the API ------------------------------------------------------------------


def api_client(kubeconfig: str | None):
    from kubernetes import client, config

    configuration = client.Configuration()
    if kubeconfig:
        config.load_kube_config(config_file=kubeconfig, client_configuration=configuration)
    else:
        config.load_incluster_config(client_configuration=configuration)
    return client.ApiClient(configuration)


def list_items(
    api, api_version: str, kind: str, namespace: str | None = None, label_selector: str | None = None
) -> list[dict]:
    """Every item of a list, following `continue` tokens, as plain dicts.

    kubernetes.dynamic works across client versions (the generated ApiClient.call_api
    changed its signature) and its ResourceInstance.to_dict() is the JSON the API
    server sent, not a typed model that drops fields."""
    from kubernetes.dynamic import DynamicClient

    resource = DynamicClient(api).resources.get(api_version=api_version, kind=kind)
    items, token = [], None
    while True:
        page = resource.get(namespace=namespace, label_selector=label_selector, limit=500, _continue=token).to_dict()
        items.extend(page.get("items") or [])
        token = (page.get("metadata") or {}).get("continue")
        if not token:
            return items


def read_cluster(api) -> tuple[list[dict], list[dict]]:
    """(pods of opted-in namespaces, nodes)."""
    namespaces = list_items(api, "v1", "Namespace", label_selector=f"{OPT_IN_LABEL}=true")
    pods = []
    for ns in namespaces:
        pods.extend(list_items(api, "v1", "Pod", namespace=ns["metadata"]["name"]))
    return pods, list_items(api, "v1", "Node")


# --- pods -> demand -------------------------------------------------------------------


def _assigned(pod: dict, policy: Policy) -> tuple[Pool, dict[str, int]] | None:
    """The slices a pod already holds (admitted through the webhook, or written so)."""
    counts: dict[str, int] = {}
    for fld in ("containers", "initContainers"):
        for container in (pod.get("spec") or {}).get(fld) or []:
            limits = ((container.get("resources") or {}).get("limits")) or {}
            requests = ((container.get("resources") or {}).get("requests")) or {}
            for key, value in {**requests, **limits}.items():
                match = MIG_RESOURCE.match(key)
                if match and str(value).isdigit():
                    counts[match.group(1)] = counts.get(match.group(1), 0) + int(value)
    if not counts:
        return None
    first = next(iter(counts))
    found = policy.pool_by_profile.get(first)
    if found:
        return found[0], counts
    # a profile the policy no longer lets the webhook pick: the pool whose GPUs have it
    pool = next((p for p in policy.pools if p.model.profile(first) is not None), None)
    return (pool, counts) if pool else (None, counts)


def workload_of_pod(pod: dict, policy: Policy) -> Workload:
    meta = pod.get("metadata") or {}
    base = dict(
        source="cluster",
        kind="Pod",
        namespace=meta.get("namespace", ""),
        name=meta.get("name", "?"),
        node=(pod.get("spec") or {}).get("nodeName"),
    )
    assigned = _assigned(pod, policy)
    if assigned is not None and assigned[0] is None:
        held = ", ".join(f"{MIG_RESOURCE_PREFIX}{p}" for p in assigned[1])
        return Workload(**base, replicas=0, action="invalid", message=f"holds {held}, which no pool's GPU model has")
    if assigned is not None:
        pool, counts = assigned
        profile = (meta.get("annotations") or {}).get(ann.ASSIGNED_PROFILE) or ",".join(counts)
        return Workload(
            **base,
            replicas=1,
            action="assigned",
            message=f"holds {', '.join(f'{n}x {MIG_RESOURCE_PREFIX}{p}' for p, n in counts.items())}",
            pool=pool.name,
            per_replica=tuple(sorted(counts.items())),
            assigned_profile=profile,
        )
    try:
        decision = decide(pod, policy)
        pool, resources, problem = pod_resources(pod, decision, policy)
    except BadObject as err:
        return Workload(**base, replicas=0, action="invalid", message=str(err))
    if problem or decision.action == "deny":
        return Workload(
            **base, replicas=0, action="invalid" if problem else "deny", message=problem or decision.message
        )
    return Workload(
        **base,
        replicas=1,
        action=decision.action,
        message=decision.message or "; ".join(decision.warnings),
        pool=pool,
        per_replica=tuple(sorted(resources.items())),
        assigned_profile=decision.assigned_profile,
    )


def demand_from_pods(pods: list[dict], policy: Policy) -> Demand:
    demand = Demand()
    for pod in pods:
        if (pod.get("status") or {}).get("phase") in ACTIVE_PHASES:
            demand.workloads.append(workload_of_pod(pod, policy))
    return demand


# --- nodes -> supply ------------------------------------------------------------------


def node_pool(node: dict, policy: Policy) -> Pool | None:
    labels = (node.get("metadata") or {}).get("labels") or {}
    for pool in policy.pools:
        if pool.node_selector and all(labels.get(k) == v for k, v in pool.node_selector):
            return pool
    # Catalog.lookup reads GFD's -MIG-<profile> (single strategy) and -SHARED suffixes.
    model = builtin_catalog().lookup(labels.get(PRODUCT_LABEL, ""))
    return next((p for p in policy.pools if model is not None and p.model.key == model.key), None)


def layout_of_config_name(
    name: str, model: GpuModel, known: dict[str, list[dict]] | None = None
) -> list[Layout] | Layout | None:
    """What a mig.config name means on one GPU: mig-parted's standard names
    (deployments/systemd/config-default.yaml: all-disabled, all-enabled, all-<profile>
    at its maximum count, all-balanced), names this planner writes, or an entry of a
    mig-parted file the cluster uses (``known``)."""
    if known and name in known:
        return _layout_of_entries(known[name], model)
    if name == "all-disabled":
        return WHOLE_LAYOUT
    if name == "all-enabled":
        return Layout(True, ())
    if name == "all-balanced" and model.compute_slices == 7:
        # 7-slice GPUs: 2x the smallest 1g, 1x 2g, 1x 3g (config-default.yaml all-balanced)
        small = [p for p in model.default_profiles if p.compute_slices == 1]
        two = [p for p in model.default_profiles if p.compute_slices == 2]
        three = [p for p in model.default_profiles if p.compute_slices == 3]
        if small and two and three:
            return realise(model, {min(small, key=lambda p: p.memory_mib).name: 2, two[0].name: 1, three[0].name: 1})
    if name.startswith("all-"):
        profile = model.profile(name[4:]) or model.profile(name[4:].replace(".me", "+me"))
        if profile is not None:
            return realise(model, {profile.name: profile.max_instances})
    if name.startswith(PREFIX + "-"):
        counts = {}
        for part in name[len(PREFIX) + 1 :].split("-"):
            n, x, profile = part.partition("x")
            if not (x and n.isdigit()):
                return None
            profile = profile.replace(".me", "+me")
            counts[profile] = int(n)
        return realise(model, counts)
    return None


def _layout_of_entries(entries: list[dict], model: GpuModel) -> list[Layout] | Layout | None:
    per_device: dict[int | str, Layout] = {}
    for entry in entries:
        if not isinstance(entry, dict):
            return None
        layout = WHOLE_LAYOUT if not entry.get("mig-enabled") else realise(model, dict(entry.get("mig-devices") or {}))
        if layout is None:
            return None
        devices = entry.get("devices", "all")
        for d in [devices] if devices == "all" else devices or []:
            per_device.setdefault(d, layout)
    if "all" in per_device:
        return per_device["all"]
    return [per_device[i] for i in sorted(per_device)] if per_device else None


def _layout_from_allocatable(node: dict, model: GpuModel, count: int) -> list[Layout] | None:
    """Spread the node's advertised MIG devices evenly (mixed strategy), when they divide."""
    alloc = (node.get("status") or {}).get("allocatable") or {}
    whole = int(alloc.get(GPU_RESOURCE, 0) or 0) if str(alloc.get(GPU_RESOURCE, 0)).isdigit() else 0
    mig = {m.group(1): int(v) for k, v in alloc.items() if (m := MIG_RESOURCE.match(k)) and str(v).isdigit() and int(v)}
    mig_gpus = count - whole
    if mig_gpus < 0 or (mig and mig_gpus == 0):
        return None
    if not mig:
        return [WHOLE_LAYOUT] * count if whole == count else None
    if any(n % mig_gpus for n in mig.values()):
        return None
    layout = realise(model, {p: n // mig_gpus for p, n in mig.items()})
    return None if layout is None else [WHOLE_LAYOUT] * whole + [layout] * mig_gpus


def gpus_of_node(node: dict, policy: Policy, known: dict | None = None) -> tuple[Pool | None, list[LiveGpu], str]:
    """(pool, its GPUs, a note on how the current layout was read)."""
    labels = (node.get("metadata") or {}).get("labels") or {}
    name = node["metadata"]["name"]
    pool = node_pool(node, policy)
    if pool is None:
        return None, [], f"node {name}: no pool matches (product {labels.get(PRODUCT_LABEL)!r})"
    count_text = labels.get(COUNT_LABEL, "")
    if not count_text.isdigit():
        alloc = (node.get("status") or {}).get("allocatable") or {}
        count_text = str(alloc.get(GPU_RESOURCE, ""))
    if not count_text.isdigit() or int(count_text) == 0:
        return pool, [], f"node {name}: no {COUNT_LABEL} label and no {GPU_RESOURCE} allocatable; skipped"
    count = int(count_text)
    label = labels.get(MIG_CONFIG_LABEL)
    current = layout_of_config_name(label, pool.model, known) if label else None
    how = f"{MIG_CONFIG_LABEL}={label}"
    if isinstance(current, Layout):
        current = [current] * count
    if current is None or len(current) != count:
        current = _layout_from_allocatable(node, pool.model, count)
        how = "status.allocatable" if current else "unknown (every GPU counts as reconfigured)"
    layouts = current or [None] * count
    return pool, [LiveGpu(name, i, layouts[i], label) for i in range(count)], how


def supply_from_nodes(
    nodes: list[dict], policy: Policy, known: dict | None = None
) -> tuple[dict[str, list[LiveGpu]], list[str]]:
    supply: dict[str, list[LiveGpu]] = {p.name: [] for p in policy.pools}
    notes = []
    for node in nodes:
        labels = (node.get("metadata") or {}).get("labels") or {}
        alloc = (node.get("status") or {}).get("allocatable") or {}
        if PRODUCT_LABEL not in labels and not any(k == GPU_RESOURCE or MIG_RESOURCE.match(k) for k in alloc):
            continue
        pool, gpus, how = gpus_of_node(node, policy, known)
        if pool is not None and gpus:
            supply[pool.name].extend(gpus)
            notes.append(
                f"node {node['metadata']['name']}: {len(gpus)} GPUs in pool {pool.name}; current layout from {how}"
            )
        else:
            notes.append(how)
    return supply, notes
