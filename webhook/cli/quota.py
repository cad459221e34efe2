"""`gpu-rightsizer quota NAMESPACE | -f quota.yaml`: the ResourceQuota items for MIG resources
that bound a namespace the way its nvidia.com/gpu quota meant to.

For clusters that prefer the stock ResourceQuota plugin to the webhook's own enforcement
(policy `quota.mode: gpu-equivalent`): per MIG profile the policy's mixed-strategy pools
offer, the GPU quota times the instances of that profile one GPU holds. docs/quotas.md says
what that bound does and does not guarantee.
"""

from __future__ import annotations

import sys
from typing import Any

import yaml

from webhook.cli.common import add_policy_argument, cluster_client, policy_or_exit
from webhook.core.catalog import MigProfile
from webhook.core.constants import PREFIX
from webhook.core.policy import Policy
from webhook.core.quota import GPU_QUOTA_KEYS, format_gpus, mig_quota_items, quota_amount

TRANSLATED_FROM = PREFIX + "translated-from"


def add_arguments(parser) -> None:
    parser.add_argument("namespace", nargs="?", help="read this namespace's ResourceQuotas from the cluster")
    parser.add_argument("-f", "--file", metavar="PATH", help="read ResourceQuotas from a YAML/JSON file ('-': stdin)")
    parser.add_argument(
        "--kubeconfig", help="kubeconfig file (default: in-cluster, else $KUBECONFIG or ~/.kube/config)"
    )
    add_policy_argument(parser)


def _pool_profiles(policy: Policy) -> list[MigProfile]:
    # Single-strategy pools keep nvidia.com/gpu, which the GPU quota already counts.
    return [profile for pool in policy.pools if pool.strategy == "mixed" for profile in pool.profiles]


def translate(quota: dict[str, Any], policy: Policy) -> dict[str, Any] | None:
    """The MIG ResourceQuota for one ResourceQuota, or None when it caps no GPUs. Scopes are
    kept, so the new quota charges the same pods."""
    spec = quota.get("spec") or {}
    hard = spec.get("hard") or {}
    caps = [amount for key in GPU_QUOTA_KEYS if key in hard and (amount := quota_amount(hard[key])) is not None]
    if not caps:
        return None
    gpus = min(caps)
    metadata = quota.get("metadata") or {}
    name = str(metadata.get("name", "gpu-quota"))
    out_spec: dict[str, Any] = {"hard": {k: str(v) for k, v in mig_quota_items(gpus, _pool_profiles(policy)).items()}}
    for field in ("scopes", "scopeSelector"):
        if spec.get(field):
            out_spec[field] = spec[field]
    out_metadata: dict[str, Any] = {
        "name": f"{name}-mig"[:253],
        "annotations": {
            TRANSLATED_FROM: f"{name}: {format_gpus(gpus)} x nvidia.com/gpu; each profile alone is bounded "
            "by what that many GPUs hold of it (gpu-rightsizer quota)"
        },
    }
    if metadata.get("namespace"):
        out_metadata["namespace"] = metadata["namespace"]
    return {"apiVersion": "v1", "kind": "ResourceQuota", "metadata": out_metadata, "spec": out_spec}


def _quotas_in(documents: list[Any]) -> list[dict[str, Any]]:
    found = []
    for doc in documents:
        if not isinstance(doc, dict):
            continue
        if doc.get("kind") == "ResourceQuota":
            found.append(doc)
        elif isinstance(doc.get("items"), list):  # a List, as `kubectl get resourcequota -o yaml` prints
            found.extend(_quotas_in(doc["items"]))
    return found


def _read_file(path: str) -> list[dict[str, Any]]:
    text = sys.stdin.read() if path == "-" else open(path, encoding="utf-8").read()
    return _quotas_in(list(yaml.safe_load_all(text)))


def _read_namespace(namespace: str, kubeconfig: str | None) -> list[dict[str, Any]]:
    from webhook.planning.live import list_items

    return list_items(cluster_client(kubeconfig), "v1", "ResourceQuota", namespace=namespace)


def run(args) -> int:
    if bool(args.namespace) == bool(args.file):
        print("gpu-rightsizer quota: give a NAMESPACE or -f FILE (one of them)", file=sys.stderr)
        return 2
    policy = policy_or_exit(args.policy)
    try:
        quotas = _read_file(args.file) if args.file else _read_namespace(args.namespace, args.kubeconfig)
    except (OSError, yaml.YAMLError) as err:
        print(f"gpu-rightsizer quota: cannot read {args.file}: {err}", file=sys.stderr)
        return 2
    translated = [t for t in (translate(q, policy) for q in quotas) if t is not None]
    if not translated:
        where = args.file or f"namespace {args.namespace}"
        print(f"gpu-rightsizer quota: no ResourceQuota in {where} caps {', '.join(GPU_QUOTA_KEYS)}", file=sys.stderr)
        return 1
    print(
        "# Per-profile bounds: each MIG profile alone is capped at what the GPU quota's GPUs hold of it;\n"
        "# slices of several profiles together can exceed it (docs/quotas.md)."
    )
    print(yaml.safe_dump_all(translated, sort_keys=False), end="")
    return 0
