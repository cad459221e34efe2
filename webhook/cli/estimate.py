"""`gpu-rightsizer estimate`: the webhook's sizing arithmetic for a model and settings.

The flags mirror the pod annotations. They are turned into the annotations of a pod that
requests nvidia.com/gpu: 1, and that pod goes through ``webhook.core.decision.decide`` — once
under the policy, and once per catalog GPU model under the same policy with a single pool
of that model — so the figures are exactly the webhook's.
"""

from __future__ import annotations

import sys
from dataclasses import replace

from webhook.cli.common import add_policy_argument, policy_or_exit
from webhook.core import annotations as ann
from webhook.core.catalog import builtin_catalog
from webhook.core.constants import GPU_RESOURCE
from webhook.core.decision import Decision, decide, estimate_need
from webhook.core.inference import builtin_architectures
from webhook.core.policy import Policy, Pool
from webhook.core.sizing import BYTES_PER_MIB

# flag -> annotation; every flag is passed through as the annotation's raw text, so the
# webhook's parsers validate it with the webhook's messages.
FLAGS = {
    "model": ann.MODEL,
    "model_size": ann.MODEL_SIZE,
    "precision": ann.PRECISION,
    "context_length": ann.CONTEXT_LENGTH,
    "max_concurrency": ann.MAX_CONCURRENCY,
    "kv_cache_dtype": ann.KV_CACHE_DTYPE,
    "gpu_memory_utilization": ann.GPU_MEMORY_UTILIZATION,
    "architecture": ann.ARCHITECTURE,
    "gpu_memory": ann.GPU_MEMORY,
    "engine": ann.ENGINE,
    "max_batched_tokens": ann.MAX_BATCHED_TOKENS,
}


def add_arguments(parser) -> None:
    parser.add_argument("--model", help="a model of the built-in table, e.g. llama-3.1-8b (see --list-models)")
    parser.add_argument("--model-size", help="parameter count (7b, 1.5b); overrides the table's")
    parser.add_argument("--precision", help="weight precision: " + ", ".join(ann.BYTES_PER_PARAM))
    parser.add_argument("--context-length", help="tokens per sequence: 8192, 8k, 128k")
    parser.add_argument("--max-concurrency", help="sequences served at once (default 1)")
    parser.add_argument("--kv-cache-dtype", help="KV cache dtype: " + ", ".join(ann.KV_CACHE_DTYPES))
    parser.add_argument(
        "--gpu-memory-utilization", help="fraction of the slice the engine takes (default: the policy's)"
    )
    parser.add_argument("--architecture", help="layers=N,kv-heads=N,head-dim=N for a model not in the table")
    parser.add_argument("--gpu-memory", help="explicit need, a Kubernetes quantity (18Gi)")
    parser.add_argument(
        "--engine", help="serving engine: " + ", ".join(ann.ENGINES) + " (vllm: sliding-window layers hold a window)"
    )
    parser.add_argument("--max-batched-tokens", help="tokens per forward pass (vLLM --max-num-batched-tokens)")
    parser.add_argument("--list-models", action="store_true", help="print the architecture table and exit")
    add_policy_argument(parser)


def pod_for(annotations: dict) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "estimate", "annotations": annotations},
        "spec": {"containers": [{"name": "server", "resources": {"limits": {GPU_RESOURCE: "1"}}}]},
    }


def single_pool_policy(policy: Policy, pool: Pool) -> Policy:
    """``policy`` with ``pool`` as its only pool: same estimate settings, one GPU model."""
    return replace(policy, pools=(pool,), pool_by_profile={p.name: (pool, p) for p in pool.profiles})


def catalog_rows(pod: dict, policy: Policy) -> list[tuple[str, Decision]]:
    rows = []
    for model in builtin_catalog().models.values():
        pool = Pool(name=model.key.lower(), model=model, profiles=model.default_profiles, node_selector=())
        rows.append((model.key, decide(pod, single_pool_policy(policy, pool))))
    return rows


def _gib(mib: float) -> str:
    return f"{mib / 1024:.2f}"


def print_models() -> None:
    table = builtin_architectures()
    print(f"{'model':<30}{'params':>16}{'layers':>8}{'kv heads':>10}{'head dim':>10}{'context':>9}  config.json")
    for arch in table.models.values():
        print(
            f"{arch.key:<30}{arch.params:>16}{arch.layers:>8}{arch.kv_heads:>10}{arch.head_dim:>10}"
            f"{arch.max_context or '-':>9}  {arch.config}"
        )


def run(args) -> int:
    if args.list_models:
        print_models()
        return 0
    policy = policy_or_exit(args.policy)
    annotations = {a: getattr(args, flag) for flag, a in FLAGS.items() if getattr(args, flag) is not None}
    if not any(a in annotations for a in ann.SIZING_ANNOTATIONS):
        print("gpu-rightsizer: give --model, --model-size or --gpu-memory (see --help)", file=sys.stderr)
        return 2
    try:
        need = estimate_need(annotations, policy)
    except ann.InvalidAnnotation as err:
        print(f"gpu-rightsizer: {err}", file=sys.stderr)
        return 2
    pod = pod_for(annotations)
    decision = decide(pod, policy)
    print(f"need: {need.explanation}")
    print(f"policy {policy.source}: {decision.action}: {decision.message}")
    print()
    util = float(need.utilization)
    print(
        f"{'GPU model':<19}{'profile':<12}{'usable GiB':>11}{'x ' + format(util, 'g'):>9}{'need GiB':>10}{'spare GiB':>11}"
    )
    for key, d in catalog_rows(pod, policy):
        if d.action == "rewrite":
            usable = d.profile.memory_mib
            budget = util * usable
            spare = budget - need.bytes / BYTES_PER_MIB
            print(f"{key:<19}{d.profile.name:<12}{_gib(usable):>11}{_gib(budget):>9}{need.gib:>10.2f}{_gib(spare):>11}")
        else:
            print(f"{key:<19}{'whole GPU':<12}{'-':>11}{'-':>9}{need.gib:>10.2f}{'-':>11}  (exceeds every MIG profile)")
    return 0
