"""Every name gpu-rightsizer shares with Kubernetes and the NVIDIA stack, in one place:
extended resource names, node labels, and the pod annotations and namespace label of its
own. Modules import these; none writes the strings out again.
"""

from __future__ import annotations

# Extended resources of the NVIDIA device plugin: a whole GPU, and (mixed MIG strategy)
# one MIG slice per profile, e.g. nvidia.com/mig-1g.10gb.
GPU_RESOURCE = "nvidia.com/gpu"
MIG_RESOURCE_PREFIX = "nvidia.com/mig-"

# Node labels set by GPU feature discovery and read by mig-parted (the GPU operator).
PRODUCT_LABEL = "nvidia.com/gpu.product"
COUNT_LABEL = "nvidia.com/gpu.count"
MIG_CONFIG_LABEL = "nvidia.com/mig.config"
MIG_STRATEGY_LABEL = "nvidia.com/mig.strategy"

# gpu-rightsizer's own names.
PREFIX = "gpu-rightsizer.io/"
# The namespace label that opts a namespace in (the MutatingWebhookConfiguration's
# namespaceSelector; `plan --live` reads the same namespaces).
OPT_IN_LABEL = PREFIX + "enabled"

# Pod annotations a pod author sets (webhook/core/annotations.py parses them).
MODEL_SIZE = PREFIX + "model-size"
PRECISION = PREFIX + "precision"
GPU_MEMORY = PREFIX + "gpu-memory"
PROFILE = PREFIX + "profile"
WORKLOAD_CLASS = PREFIX + "workload-class"
SKIP = PREFIX + "skip"
# Inference sizing (webhook/core/inference.py): how the serving engine will use the slice.
MODEL = PREFIX + "model"
CONTEXT_LENGTH = PREFIX + "context-length"
MAX_CONCURRENCY = PREFIX + "max-concurrency"
KV_CACHE_DTYPE = PREFIX + "kv-cache-dtype"
GPU_MEMORY_UTILIZATION = PREFIX + "gpu-memory-utilization"
ARCHITECTURE = PREFIX + "architecture"
# What the engine's command line says (webhook/core/engine_args.py), settable as annotations too.
ENGINE = PREFIX + "engine"
MAX_BATCHED_TOKENS = PREFIX + "max-batched-tokens"

# Pod annotations the webhook writes.
ASSIGNED_PROFILE = PREFIX + "assigned-profile"
DECISION = PREFIX + "decision"

# Every pod annotation of ours; another key under PREFIX is a typo the decision points out.
ANNOTATION_KEYS = (
    MODEL_SIZE,
    PRECISION,
    GPU_MEMORY,
    PROFILE,
    WORKLOAD_CLASS,
    SKIP,
    MODEL,
    CONTEXT_LENGTH,
    MAX_CONCURRENCY,
    KV_CACHE_DTYPE,
    GPU_MEMORY_UTILIZATION,
    ARCHITECTURE,
    ENGINE,
    MAX_BATCHED_TOKENS,
    ASSIGNED_PROFILE,
    DECISION,
)
