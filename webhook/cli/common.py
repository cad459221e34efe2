"""Pieces the sub-commands share."""

from __future__ import annotations

import sys

from webhook import settings
from webhook.core.errors import PolicyError
from webhook.core.policy import Policy, policy_path, resolve_policy


def add_policy_argument(parser) -> None:
    parser.add_argument(
        "--policy",
        metavar="PATH",
        help=f"policy YAML (default: ${settings.POLICY}, else the built-in default policy)",
    )


def policy_or_exit(path: str | None) -> Policy:
    """The policy in force, or exit 2 with every problem of it, one per line, each naming
    the file (the logs of a reload name it in their own `path` field)."""
    try:
        return resolve_policy(path)
    except PolicyError as err:
        where = policy_path(path) or "built-in policy"
        for line in str(err).splitlines():
            print(f"gpu-rightsizer: invalid policy: {where}: {line}", file=sys.stderr)
        raise SystemExit(2) from None


def add_capacity_arguments(parser, kubeconfig: bool = True) -> None:
    parser.add_argument(
        "--capacity-snapshot",
        metavar="FILE",
        help="nodes and pods (JSON/YAML, e.g. `kubectl get nodes,pods -A -o json`) to choose by free slices as the webhook would with capacity.mode on",
    )
    if kubeconfig:
        parser.add_argument("--kubeconfig", metavar="K", help="read the capacity snapshot from this cluster")


def capacity_view_or_exit(snapshot: str | None, kubeconfig: str | None):
    """The CapacityView of --capacity-snapshot or --kubeconfig (now), or None."""
    import json
    import time

    import yaml

    from webhook.core.capacity import build_view, split_objects

    if not snapshot and not kubeconfig:
        return None
    try:
        if snapshot:
            with open(snapshot, encoding="utf-8") as fh:
                text = fh.read()
            docs = [json.loads(text)] if text.lstrip().startswith(("{", "[")) else list(yaml.safe_load_all(text))
            docs = [d for doc in docs for d in (doc if isinstance(doc, list) else [doc])]
            nodes, pods = split_objects(docs)
        else:
            from webhook.planning.live import api_client, list_items

            api = api_client(kubeconfig)
            try:
                nodes = list_items(api, "v1", "Node")
                pods = [
                    p
                    for p in list_items(api, "v1", "Pod")
                    if (p.get("status") or {}).get("phase") not in ("Succeeded", "Failed")
                ]
            finally:
                api.close()
    except (OSError, ValueError, yaml.YAMLError) as err:
        print(f"gpu-rightsizer: cannot read the capacity snapshot: {err}", file=sys.stderr)
        raise SystemExit(2) from None
    except Exception as err:  # noqa: BLE001 - the kubernetes client's many errors: name them
        if not type(err).__module__.startswith(("kubernetes", "urllib3")):
            raise
        print(f"gpu-rightsizer: cannot read the cluster: {type(err).__name__}: {str(err)[:300]}", file=sys.stderr)
        raise SystemExit(2) from None
    return build_view(nodes, pods, time.time())


def cluster_client(kubeconfig: str | None):
    """A Kubernetes API client: ``--kubeconfig``, else in-cluster when running in a pod, else
    the default kubeconfig ($KUBECONFIG or ~/.kube/config, as kubectl reads it: the
    client's own KUBE_CONFIG_DEFAULT_LOCATION)."""
    import os

    from kubernetes.config.incluster_config import SERVICE_TOKEN_FILENAME
    from kubernetes.config.kube_config import KUBE_CONFIG_DEFAULT_LOCATION

    from webhook.planning.live import api_client

    if kubeconfig is None and not os.path.exists(SERVICE_TOKEN_FILENAME):
        kubeconfig = os.path.expanduser(KUBE_CONFIG_DEFAULT_LOCATION)
    return api_client(kubeconfig)
