"""The inference estimate against worked examples computed independently of the code.

Every figure below was worked out by hand / with a separate Decimal calculation that does
not import webhook (the formula of README.md, "Sizing inference servers"):

    weights = params x bytes/param        (bf16: 2 B; int4: 4.5 bits = 9/16 B incl. scales)
    KV      = 2 x layers x kv-heads x head-dim x bytes(kv dtype) x context x concurrency
              (kv-cache-dtype auto: bf16 -> 2 B; int4 weights keep an fp16 cache -> 2 B)
    fixed   = activationMiB 1536 + runtimeOverheadMiB 768 = 2304 MiB = 2.25 GiB
    need    = ceil(weights + KV + fixed) bytes; fits a profile when need <= 0.9 x its MiB x 2^20
    H100-80GB usable MiB (nvidia-smi, ../shared/mig-profiles): 1g.10gb 9984, 1g.20gb 20096,
    2g.20gb 20096, 3g.40gb 40448, 4g.40gb 40448, 7g.80gb 81152.

Without context-length the core estimate applies unchanged: params x bytes (int4 0.5) x 1.2,
fitting when need <= 1.0 x usable.
"""

from __future__ import annotations

from fractions import Fraction

import pytest

from webhook.core import annotations as ann
from webhook.core.decision import decide, estimate_need
from webhook.core.inference import ServingSettings, builtin_architectures, inference_need, kv_cache_bytes
from webhook.core.policy import default_policy, parse_policy_yaml

MIB = 2**20
GIB = 2**30
POLICY = default_policy()


def pod(annotations: dict) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "server", "annotations": annotations},
        "spec": {
            "containers": [
                {"name": "vllm", "image": "vllm/vllm-openai", "resources": {"limits": {"nvidia.com/gpu": "1"}}}
            ]
        },
    }


# (model, precision, context-length, max-concurrency, need bytes, arithmetic, H100-80GB profile)
# 18 models x {bf16, int4} x {no context (core), 8k x 1, 32k x 4}.
WORKED = [
    ("llama-3.1-8b", "bf16", None, None, 19272626996, "8.03B params x 2 B (bf16) x 1.2 = 17.95 GiB", "1g.20gb"),
    (
        "llama-3.1-8b",
        "bf16",
        "8k",
        1,
        19550183424,
        "weights 14.96 GiB + KV 1.00 GiB (8192 x 1) + 2.25 GiB -> 18.2 GiB",
        "3g.40gb",
    ),
    (
        "llama-3.1-8b",
        "bf16",
        "32k",
        4,
        35656310784,
        "weights 14.96 GiB + KV 16.00 GiB (32768 x 4) + 2.25 GiB -> 33.2 GiB",
        "3g.40gb",
    ),
    ("llama-3.1-8b", "int4", None, None, 4818156749, "8.03B params x 0.5 B (int4) x 1.2 = 4.49 GiB", "1g.10gb"),
    (
        "llama-3.1-8b",
        "int4",
        "8k",
        1,
        8006682880,
        "weights 4.21 GiB + KV 1.00 GiB (8192 x 1) + 2.25 GiB -> 7.5 GiB",
        "1g.10gb",
    ),
    (
        "llama-3.1-8b",
        "int4",
        "32k",
        4,
        24112810240,
        "weights 4.21 GiB + KV 16.00 GiB (32768 x 4) + 2.25 GiB -> 22.5 GiB",
        "3g.40gb",
    ),
    ("llama-3.1-70b", "bf16", None, None, 169328895591, "70.55B params x 2 B (bf16) x 1.2 = 157.70 GiB", "whole-gpu"),
    (
        "llama-3.1-70b",
        "bf16",
        "8k",
        1,
        146207686656,
        "weights 131.42 GiB + KV 2.50 GiB (8192 x 1) + 2.25 GiB -> 136.2 GiB",
        "whole-gpu",
    ),
    (
        "llama-3.1-70b",
        "bf16",
        "32k",
        4,
        186473005056,
        "weights 131.42 GiB + KV 40.00 GiB (32768 x 4) + 2.25 GiB -> 173.7 GiB",
        "whole-gpu",
    ),
    ("llama-3.1-70b", "int4", None, None, 42332223898, "70.55B params x 0.5 B (int4) x 1.2 = 39.42 GiB", "7g.80gb"),
    (
        "llama-3.1-70b",
        "int4",
        "8k",
        1,
        44786733568,
        "weights 36.96 GiB + KV 2.50 GiB (8192 x 1) + 2.25 GiB -> 41.7 GiB",
        "7g.80gb",
    ),
    (
        "llama-3.1-70b",
        "int4",
        "32k",
        4,
        85052051968,
        "weights 36.96 GiB + KV 40.00 GiB (32768 x 4) + 2.25 GiB -> 79.2 GiB",
        "whole-gpu",
    ),
    ("llama-3.2-1b", "bf16", None, None, 2965954560, "1.236B params x 2 B (bf16) x 1.2 = 2.76 GiB", "1g.10gb"),
    (
        "llama-3.2-1b",
        "bf16",
        "8k",
        1,
        5155983360,
        "weights 2.30 GiB + KV 0.25 GiB (8192 x 1) + 2.25 GiB -> 4.8 GiB",
        "1g.10gb",
    ),
    (
        "llama-3.2-1b",
        "bf16",
        "32k",
        4,
        9182515200,
        "weights 2.30 GiB + KV 4.00 GiB (32768 x 4) + 2.25 GiB -> 8.6 GiB",
        "1g.10gb",
    ),
    ("llama-3.2-1b", "int4", None, None, 741488640, "1.236B params x 0.5 B (int4) x 1.2 = 0.69 GiB", "1g.10gb"),
    (
        "llama-3.2-1b",
        "int4",
        "8k",
        1,
        3379500160,
        "weights 0.65 GiB + KV 0.25 GiB (8192 x 1) + 2.25 GiB -> 3.1 GiB",
        "1g.10gb",
    ),
    (
        "llama-3.2-1b",
        "int4",
        "32k",
        4,
        7406032000,
        "weights 0.65 GiB + KV 4.00 GiB (32768 x 4) + 2.25 GiB -> 6.9 GiB",
        "1g.10gb",
    ),
    ("llama-3.2-3b", "bf16", None, None, 7710599578, "3.213B params x 2 B (bf16) x 1.2 = 7.18 GiB", "1g.10gb"),
    (
        "llama-3.2-3b",
        "bf16",
        "8k",
        1,
        9780942848,
        "weights 5.98 GiB + KV 0.88 GiB (8192 x 1) + 2.25 GiB -> 9.1 GiB",
        "1g.20gb",
    ),
    (
        "llama-3.2-3b",
        "bf16",
        "32k",
        4,
        23873804288,
        "weights 5.98 GiB + KV 14.00 GiB (32768 x 4) + 2.25 GiB -> 22.2 GiB",
        "3g.40gb",
    ),
    ("llama-3.2-3b", "int4", None, None, 1927649895, "3.213B params x 0.5 B (int4) x 1.2 = 1.80 GiB", "1g.10gb"),
    (
        "llama-3.2-3b",
        "int4",
        "8k",
        1,
        5162614976,
        "weights 1.68 GiB + KV 0.88 GiB (8192 x 1) + 2.25 GiB -> 4.8 GiB",
        "1g.10gb",
    ),
    (
        "llama-3.2-3b",
        "int4",
        "32k",
        4,
        19255476416,
        "weights 1.68 GiB + KV 14.00 GiB (32768 x 4) + 2.25 GiB -> 17.9 GiB",
        "3g.40gb",
    ),
    ("mistral-7b", "bf16", None, None, 17395256525, "7.248B params x 2 B (bf16) x 1.2 = 16.20 GiB", "1g.20gb"),
    (
        "mistral-7b",
        "bf16",
        "8k",
        1,
        17985708032,
        "weights 13.50 GiB + KV 1.00 GiB (8192 x 1) + 2.25 GiB -> 16.8 GiB",
        "1g.20gb",
    ),
    (
        "mistral-7b",
        "bf16",
        "32k",
        4,
        34091835392,
        "weights 13.50 GiB + KV 16.00 GiB (32768 x 4) + 2.25 GiB -> 31.8 GiB",
        "3g.40gb",
    ),
    ("mistral-7b", "int4", None, None, 4348814132, "7.248B params x 0.5 B (int4) x 1.2 = 4.05 GiB", "1g.10gb"),
    (
        "mistral-7b",
        "int4",
        "8k",
        1,
        7566674176,
        "weights 3.80 GiB + KV 1.00 GiB (8192 x 1) + 2.25 GiB -> 7.0 GiB",
        "1g.10gb",
    ),
    (
        "mistral-7b",
        "int4",
        "32k",
        4,
        23672801536,
        "weights 3.80 GiB + KV 16.00 GiB (32768 x 4) + 2.25 GiB -> 22.0 GiB",
        "3g.40gb",
    ),
    ("mixtral-8x7b", "bf16", None, None, 112086702490, "46.7B params x 2 B (bf16) x 1.2 = 104.39 GiB", "whole-gpu"),
    (
        "mixtral-8x7b",
        "bf16",
        "8k",
        1,
        96895246336,
        "weights 86.99 GiB + KV 1.00 GiB (8192 x 1) + 2.25 GiB -> 90.2 GiB",
        "whole-gpu",
    ),
    (
        "mixtral-8x7b",
        "bf16",
        "32k",
        4,
        113001373696,
        "weights 86.99 GiB + KV 16.00 GiB (32768 x 4) + 2.25 GiB -> 105.2 GiB",
        "whole-gpu",
    ),
    ("mixtral-8x7b", "int4", None, None, 28021675623, "46.7B params x 0.5 B (int4) x 1.2 = 26.10 GiB", "3g.40gb"),
    (
        "mixtral-8x7b",
        "int4",
        "8k",
        1,
        29759981824,
        "weights 24.47 GiB + KV 1.00 GiB (8192 x 1) + 2.25 GiB -> 27.7 GiB",
        "3g.40gb",
    ),
    (
        "mixtral-8x7b",
        "int4",
        "32k",
        4,
        45866109184,
        "weights 24.47 GiB + KV 16.00 GiB (32768 x 4) + 2.25 GiB -> 42.7 GiB",
        "7g.80gb",
    ),
    ("qwen2.5-0.5b", "bf16", None, None, 1185678644, "494M params x 2 B (bf16) x 1.2 = 1.10 GiB", "1g.10gb"),
    (
        "qwen2.5-0.5b",
        "bf16",
        "8k",
        1,
        3504647936,
        "weights 0.92 GiB + KV 0.09 GiB (8192 x 1) + 2.25 GiB -> 3.3 GiB",
        "1g.10gb",
    ),
    (
        "qwen2.5-0.5b",
        "bf16",
        "32k",
        4,
        5014597376,
        "weights 0.92 GiB + KV 1.50 GiB (32768 x 4) + 2.25 GiB -> 4.7 GiB",
        "1g.10gb",
    ),
    ("qwen2.5-0.5b", "int4", None, None, 296419661, "494M params x 0.5 B (int4) x 1.2 = 0.28 GiB", "1g.10gb"),
    (
        "qwen2.5-0.5b",
        "int4",
        "8k",
        1,
        2794475832,
        "weights 0.26 GiB + KV 0.09 GiB (8192 x 1) + 2.25 GiB -> 2.6 GiB",
        "1g.10gb",
    ),
    (
        "qwen2.5-0.5b",
        "int4",
        "32k",
        4,
        4304425272,
        "weights 0.26 GiB + KV 1.50 GiB (32768 x 4) + 2.25 GiB -> 4.0 GiB",
        "1g.10gb",
    ),
    ("qwen2.5-1.5b", "bf16", None, None, 3704914330, "1.544B params x 2 B (bf16) x 1.2 = 3.45 GiB", "1g.10gb"),
    (
        "qwen2.5-1.5b",
        "bf16",
        "8k",
        1,
        5738228736,
        "weights 2.88 GiB + KV 0.22 GiB (8192 x 1) + 2.25 GiB -> 5.3 GiB",
        "1g.10gb",
    ),
    (
        "qwen2.5-1.5b",
        "bf16",
        "32k",
        4,
        9261444096,
        "weights 2.88 GiB + KV 3.50 GiB (32768 x 4) + 2.25 GiB -> 8.6 GiB",
        "1g.10gb",
    ),
    ("qwen2.5-1.5b", "int4", None, None, 926228583, "1.544B params x 0.5 B (int4) x 1.2 = 0.86 GiB", "1g.10gb"),
    (
        "qwen2.5-1.5b",
        "int4",
        "8k",
        1,
        3519139424,
        "weights 0.81 GiB + KV 0.22 GiB (8192 x 1) + 2.25 GiB -> 3.3 GiB",
        "1g.10gb",
    ),
    (
        "qwen2.5-1.5b",
        "int4",
        "32k",
        4,
        7042354784,
        "weights 0.81 GiB + KV 3.50 GiB (32768 x 4) + 2.25 GiB -> 6.6 GiB",
        "1g.10gb",
    ),
    ("qwen2.5-3b", "bf16", None, None, 7406252852, "3.086B params x 2 B (bf16) x 1.2 = 6.90 GiB", "1g.10gb"),
    (
        "qwen2.5-3b",
        "bf16",
        "8k",
        1,
        8889786368,
        "weights 5.75 GiB + KV 0.28 GiB (8192 x 1) + 2.25 GiB -> 8.3 GiB",
        "1g.10gb",
    ),
    (
        "qwen2.5-3b",
        "bf16",
        "32k",
        4,
        13419634688,
        "weights 5.75 GiB + KV 4.50 GiB (32768 x 4) + 2.25 GiB -> 12.5 GiB",
        "1g.20gb",
    ),
    ("qwen2.5-3b", "int4", None, None, 1851563213, "3.086B params x 0.5 B (int4) x 1.2 = 1.72 GiB", "1g.10gb"),
    (
        "qwen2.5-3b",
        "int4",
        "8k",
        1,
        4453749504,
        "weights 1.62 GiB + KV 0.28 GiB (8192 x 1) + 2.25 GiB -> 4.1 GiB",
        "1g.10gb",
    ),
    (
        "qwen2.5-3b",
        "int4",
        "32k",
        4,
        8983597824,
        "weights 1.62 GiB + KV 4.50 GiB (32768 x 4) + 2.25 GiB -> 8.4 GiB",
        "1g.10gb",
    ),
    ("qwen2.5-7b", "bf16", None, None, 18277479629, "7.616B params x 2 B (bf16) x 1.2 = 17.02 GiB", "1g.20gb"),
    (
        "qwen2.5-7b",
        "bf16",
        "8k",
        1,
        18116914176,
        "weights 14.19 GiB + KV 0.44 GiB (8192 x 1) + 2.25 GiB -> 16.9 GiB",
        "1g.20gb",
    ),
    (
        "qwen2.5-7b",
        "bf16",
        "32k",
        4,
        25163344896,
        "weights 14.19 GiB + KV 7.00 GiB (32768 x 4) + 2.25 GiB -> 23.4 GiB",
        "3g.40gb",
    ),
    ("qwen2.5-7b", "int4", None, None, 4569369908, "7.616B params x 0.5 B (int4) x 1.2 = 4.26 GiB", "1g.10gb"),
    (
        "qwen2.5-7b",
        "int4",
        "8k",
        1,
        7169465440,
        "weights 3.99 GiB + KV 0.44 GiB (8192 x 1) + 2.25 GiB -> 6.7 GiB",
        "1g.10gb",
    ),
    (
        "qwen2.5-7b",
        "int4",
        "32k",
        4,
        14215896160,
        "weights 3.99 GiB + KV 7.00 GiB (32768 x 4) + 2.25 GiB -> 13.2 GiB",
        "1g.20gb",
    ),
    ("qwen2.5-14b", "bf16", None, None, 35448080794, "14.77B params x 2 B (bf16) x 1.2 = 33.01 GiB", "3g.40gb"),
    (
        "qwen2.5-14b",
        "bf16",
        "8k",
        1,
        33566599168,
        "weights 27.51 GiB + KV 1.50 GiB (8192 x 1) + 2.25 GiB -> 31.3 GiB",
        "3g.40gb",
    ),
    (
        "qwen2.5-14b",
        "bf16",
        "32k",
        4,
        57725790208,
        "weights 27.51 GiB + KV 24.00 GiB (32768 x 4) + 2.25 GiB -> 53.8 GiB",
        "7g.80gb",
    ),
    ("qwen2.5-14b", "int4", None, None, 8862020199, "14.77B params x 0.5 B (int4) x 1.2 = 8.25 GiB", "1g.10gb"),
    (
        "qwen2.5-14b",
        "int4",
        "8k",
        1,
        12334675776,
        "weights 7.74 GiB + KV 1.50 GiB (8192 x 1) + 2.25 GiB -> 11.5 GiB",
        "1g.20gb",
    ),
    (
        "qwen2.5-14b",
        "int4",
        "32k",
        4,
        36493866816,
        "weights 7.74 GiB + KV 24.00 GiB (32768 x 4) + 2.25 GiB -> 34.0 GiB",
        "3g.40gb",
    ),
    ("qwen2.5-32b", "bf16", None, None, 78633303245, "32.76B params x 2 B (bf16) x 1.2 = 73.23 GiB", "7g.80gb"),
    (
        "qwen2.5-32b",
        "bf16",
        "8k",
        1,
        70091155456,
        "weights 61.03 GiB + KV 2.00 GiB (8192 x 1) + 2.25 GiB -> 65.3 GiB",
        "7g.80gb",
    ),
    (
        "qwen2.5-32b",
        "bf16",
        "32k",
        4,
        102303410176,
        "weights 61.03 GiB + KV 32.00 GiB (32768 x 4) + 2.25 GiB -> 95.3 GiB",
        "whole-gpu",
    ),
    ("qwen2.5-32b", "int4", None, None, 19658325812, "32.76B params x 0.5 B (int4) x 1.2 = 18.31 GiB", "1g.20gb"),
    (
        "qwen2.5-32b",
        "int4",
        "8k",
        1,
        22993083200,
        "weights 17.16 GiB + KV 2.00 GiB (8192 x 1) + 2.25 GiB -> 21.4 GiB",
        "3g.40gb",
    ),
    (
        "qwen2.5-32b",
        "int4",
        "32k",
        4,
        55205337920,
        "weights 17.16 GiB + KV 32.00 GiB (32768 x 4) + 2.25 GiB -> 51.4 GiB",
        "7g.80gb",
    ),
    ("qwen2.5-72b", "bf16", None, None, 174494888756, "72.71B params x 2 B (bf16) x 1.2 = 162.51 GiB", "whole-gpu"),
    (
        "qwen2.5-72b",
        "bf16",
        "8k",
        1,
        150512680960,
        "weights 135.43 GiB + KV 2.50 GiB (8192 x 1) + 2.25 GiB -> 140.2 GiB",
        "whole-gpu",
    ),
    (
        "qwen2.5-72b",
        "bf16",
        "32k",
        4,
        190777999360,
        "weights 135.43 GiB + KV 40.00 GiB (32768 x 4) + 2.25 GiB -> 177.7 GiB",
        "whole-gpu",
    ),
    ("qwen2.5-72b", "int4", None, None, 43623722189, "72.71B params x 0.5 B (int4) x 1.2 = 40.63 GiB", "7g.80gb"),
    (
        "qwen2.5-72b",
        "int4",
        "8k",
        1,
        45997513216,
        "weights 38.09 GiB + KV 2.50 GiB (8192 x 1) + 2.25 GiB -> 42.8 GiB",
        "7g.80gb",
    ),
    (
        "qwen2.5-72b",
        "int4",
        "32k",
        4,
        86262831616,
        "weights 38.09 GiB + KV 40.00 GiB (32768 x 4) + 2.25 GiB -> 80.3 GiB",
        "whole-gpu",
    ),
    ("gemma-2-2b", "bf16", None, None, 6274420532, "2.614B params x 2 B (bf16) x 1.2 = 5.84 GiB", "1g.10gb"),
    (
        "gemma-2-2b",
        "bf16",
        "8k",
        1,
        8517018112,
        "weights 4.87 GiB + KV 0.81 GiB (8192 x 1) + 2.25 GiB -> 7.9 GiB",
        "1g.10gb",
    ),
    (
        "gemma-2-2b",
        "bf16",
        "32k",
        4,
        21603246592,
        "weights 4.87 GiB + KV 13.00 GiB (32768 x 4) + 2.25 GiB -> 20.1 GiB",
        "3g.40gb",
    ),
    ("gemma-2-2b", "int4", None, None, 1568605133, "2.614B params x 0.5 B (int4) x 1.2 = 1.46 GiB", "1g.10gb"),
    (
        "gemma-2-2b",
        "int4",
        "8k",
        1,
        4758901648,
        "weights 1.37 GiB + KV 0.81 GiB (8192 x 1) + 2.25 GiB -> 4.4 GiB",
        "1g.10gb",
    ),
    (
        "gemma-2-2b",
        "int4",
        "32k",
        4,
        17845130128,
        "weights 1.37 GiB + KV 13.00 GiB (32768 x 4) + 2.25 GiB -> 16.6 GiB",
        "1g.20gb",
    ),
    ("gemma-2-9b", "bf16", None, None, 22180094362, "9.242B params x 2 B (bf16) x 1.2 = 20.66 GiB", "3g.40gb"),
    (
        "gemma-2-9b",
        "bf16",
        "8k",
        1,
        23717903360,
        "weights 17.21 GiB + KV 2.62 GiB (8192 x 1) + 2.25 GiB -> 22.1 GiB",
        "3g.40gb",
    ),
    (
        "gemma-2-9b",
        "bf16",
        "32k",
        4,
        65996487680,
        "weights 17.21 GiB + KV 42.00 GiB (32768 x 4) + 2.25 GiB -> 61.5 GiB",
        "7g.80gb",
    ),
    ("gemma-2-9b", "int4", None, None, 5545023591, "9.242B params x 0.5 B (int4) x 1.2 = 5.16 GiB", "1g.10gb"),
    (
        "gemma-2-9b",
        "int4",
        "8k",
        1,
        10432951008,
        "weights 4.84 GiB + KV 2.62 GiB (8192 x 1) + 2.25 GiB -> 9.7 GiB",
        "1g.20gb",
    ),
    (
        "gemma-2-9b",
        "int4",
        "32k",
        4,
        52711535328,
        "weights 4.84 GiB + KV 42.00 GiB (32768 x 4) + 2.25 GiB -> 49.1 GiB",
        "7g.80gb",
    ),
    ("gemma-2-27b", "bf16", None, None, 65345107968, "27.23B params x 2 B (bf16) x 1.2 = 60.86 GiB", "7g.80gb"),
    (
        "gemma-2-27b",
        "bf16",
        "8k",
        1,
        59957183488,
        "weights 50.71 GiB + KV 2.88 GiB (8192 x 1) + 2.25 GiB -> 55.8 GiB",
        "7g.80gb",
    ),
    (
        "gemma-2-27b",
        "bf16",
        "32k",
        4,
        106262299648,
        "weights 50.71 GiB + KV 46.00 GiB (32768 x 4) + 2.25 GiB -> 99.0 GiB",
        "whole-gpu",
    ),
    ("gemma-2-27b", "int4", None, None, 16336276992, "27.23B params x 0.5 B (int4) x 1.2 = 15.21 GiB", "1g.20gb"),
    (
        "gemma-2-27b",
        "int4",
        "8k",
        1,
        20818186528,
        "weights 14.26 GiB + KV 2.88 GiB (8192 x 1) + 2.25 GiB -> 19.4 GiB",
        "3g.40gb",
    ),
    (
        "gemma-2-27b",
        "int4",
        "32k",
        4,
        67123302688,
        "weights 14.26 GiB + KV 46.00 GiB (32768 x 4) + 2.25 GiB -> 62.5 GiB",
        "7g.80gb",
    ),
    ("phi-3-mini", "bf16", None, None, 9170590925, "3.821B params x 2 B (bf16) x 1.2 = 8.54 GiB", "1g.10gb"),
    (
        "phi-3-mini",
        "bf16",
        "8k",
        1,
        13279303680,
        "weights 7.12 GiB + KV 3.00 GiB (8192 x 1) + 2.25 GiB -> 12.4 GiB",
        "1g.20gb",
    ),
    (
        "phi-3-mini",
        "bf16",
        "32k",
        4,
        61597685760,
        "weights 7.12 GiB + KV 48.00 GiB (32768 x 4) + 2.25 GiB -> 57.4 GiB",
        "7g.80gb",
    ),
    ("phi-3-mini", "int4", None, None, 2292647732, "3.821B params x 0.5 B (int4) x 1.2 = 2.14 GiB", "1g.10gb"),
    (
        "phi-3-mini",
        "int4",
        "8k",
        1,
        7786501824,
        "weights 2.00 GiB + KV 3.00 GiB (8192 x 1) + 2.25 GiB -> 7.3 GiB",
        "1g.10gb",
    ),
    (
        "phi-3-mini",
        "int4",
        "32k",
        4,
        56104883904,
        "weights 2.00 GiB + KV 48.00 GiB (32768 x 4) + 2.25 GiB -> 52.3 GiB",
        "7g.80gb",
    ),
    ("phi-3-medium", "bf16", None, None, 33504571392, "13.96B params x 2 B (bf16) x 1.2 = 31.20 GiB", "3g.40gb"),
    (
        "phi-3-medium",
        "bf16",
        "8k",
        1,
        32014116864,
        "weights 26.00 GiB + KV 1.56 GiB (8192 x 1) + 2.25 GiB -> 29.8 GiB",
        "3g.40gb",
    ),
    (
        "phi-3-medium",
        "bf16",
        "32k",
        4,
        57179940864,
        "weights 26.00 GiB + KV 25.00 GiB (32768 x 4) + 2.25 GiB -> 53.3 GiB",
        "7g.80gb",
    ),
    ("phi-3-medium", "int4", None, None, 8376142848, "13.96B params x 0.5 B (int4) x 1.2 = 7.80 GiB", "1g.10gb"),
    (
        "phi-3-medium",
        "int4",
        "8k",
        1,
        11946274624,
        "weights 7.31 GiB + KV 1.56 GiB (8192 x 1) + 2.25 GiB -> 11.1 GiB",
        "1g.20gb",
    ),
    (
        "phi-3-medium",
        "int4",
        "32k",
        4,
        37112098624,
        "weights 7.31 GiB + KV 25.00 GiB (32768 x 4) + 2.25 GiB -> 34.6 GiB",
        "3g.40gb",
    ),
]


@pytest.mark.parametrize("model,precision,context,concurrency,need_bytes,arithmetic,profile", WORKED)
def test_worked_examples(model, precision, context, concurrency, need_bytes, arithmetic, profile):
    annotations = {ann.MODEL: model, ann.PRECISION: precision}
    if context is not None:
        annotations[ann.CONTEXT_LENGTH] = context
        annotations[ann.MAX_CONCURRENCY] = str(concurrency)
    need = estimate_need(annotations, POLICY)
    assert need.bytes == need_bytes
    assert need.explanation == arithmetic
    assert need.utilization == (Fraction(9, 10) if context else 1)
    decision = decide(pod(annotations), POLICY)
    if profile == "whole-gpu":
        assert decision.action == "whole-gpu"
    else:
        assert decision.action == "rewrite"
        assert decision.profile.name == profile
        assert arithmetic in decision.message


def test_worked_table_covers_every_model_at_two_precisions_and_three_contexts():
    combos = {(m, p, c) for m, p, c, *_ in WORKED}
    # The models of the original table (later rows: tests/core/test_models_2026.py).
    first = {m for m, *_ in WORKED}
    assert first <= set(builtin_architectures().models) and len(first) == 18
    assert len(combos) == len(WORKED) == len(first) * 2 * 3


def test_issue_example_8b_bf16_4x8k_is_not_put_on_1g20gb():
    # weights 8030261248 x 2 B = 16060522496 B = 14.96 GiB
    # KV 2 x 32 layers x 8 kv-heads x 128 x 2 B x 8192 x 4 = 4294967296 B = 4.00 GiB
    # + 2.25 GiB (2415919104 B) -> 22771408896 B = 21.21 GiB
    # 1g.20gb / 2g.20gb: 0.9 x 19968 MiB = 17.55 GiB < 21.21 -> no; 3g.40gb: 0.9 x 39.25 = 35.33 -> yes
    annotations = {ann.MODEL: "llama-3.1-8b", ann.PRECISION: "bf16", ann.CONTEXT_LENGTH: "8k", ann.MAX_CONCURRENCY: "4"}
    need = estimate_need(annotations, POLICY)
    assert need.bytes == 16060522496 + 4294967296 + 2304 * MIB == 22771408896
    decision = decide(pod(annotations), POLICY)
    assert decision.profile.name == "3g.40gb"
    assert decision.message.endswith(
        "weights 14.96 GiB + KV 4.00 GiB (8192 x 4) + 2.25 GiB -> 21.2 GiB <= 0.9 x 39.25 GiB of 3g.40gb"
    )
    # The weights-only core estimate is what put it on the slice where vLLM cannot start.
    core = decide(pod({ann.MODEL: "llama-3.1-8b", ann.PRECISION: "bf16"}), POLICY)
    assert core.profile.name == "1g.20gb"


def test_measured_kv_cache_matches_formula():
    # ../shared/measurements/h100-llm-memory.json kv_formula_gib, recomputed by hand:
    # qwen2.5-14b 8192 x 8: 2 x 48 x 8 x 128 x 2 x 65536 = 12 GiB
    # phi-3-mini 4096 x 4: 2 x 32 x 32 x 96 x 2 x 16384 = 6 GiB (MHA: 32 kv heads)
    # qwen2.5-7b 16384 x 2: 2 x 28 x 4 x 128 x 2 x 32768 = 1.75 GiB
    cases = [
        ("qwen2.5-14b", "8k", "8", 12 * GIB),
        ("phi-3-mini", "4k", "4", 6 * GIB),
        ("qwen2.5-7b", "16k", "2", 7 * GIB // 4),
    ]
    for model, context, concurrency, kv in cases:
        arch = builtin_architectures().lookup(model)
        need = estimate_need({ann.MODEL: model, ann.CONTEXT_LENGTH: context, ann.MAX_CONCURRENCY: concurrency}, POLICY)
        assert need.bytes == arch.params * 2 + kv + 2304 * MIB


def test_defaults_cover_every_measured_run():
    """The H100 measurements (../shared/measurements/h100-llm-memory.json) the defaults are
    derived from: KV is the formula's, activations <= activationMiB, CUDA context + cuBLAS
    <= runtimeOverheadMiB, weights = params x 2 B within 2% (the harness also allocates a
    few non-parameter buffers: llama-3.2-1b +1.4%, qwen2.5-14b +0.18 GiB), and the whole measured peak
    within 0.1% of the estimate."""
    import json

    from tests.support.fixtures import measurements_path

    runs = json.loads(measurements_path().read_text())
    context_mib = runs[0]["context_plus_cublas_mib"]
    assert context_mib <= POLICY.runtime_overhead_mib
    checked = 0
    for run in runs[1:]:
        arch = builtin_architectures().lookup(run["model"])
        annotations = {
            ann.MODEL: run["model"],
            ann.PRECISION: "bf16",
            ann.CONTEXT_LENGTH: str(run["context"]),
            ann.MAX_CONCURRENCY: str(run["concurrency"]),
        }
        need = estimate_need(annotations, POLICY)
        kv = need.bytes - arch.params * 2 - 2304 * MIB
        assert abs(kv / GIB - run["kv_formula_gib"]) < 0.002, run["model"]
        assert run["activations_gib"] * 1024 <= POLICY.activation_mib, run["model"]
        assert abs(run["weights_gib"] * GIB / (arch.params * 2) - 1) < 0.02, run["model"]
        measured = run["peak_allocated_gib"] * GIB + context_mib * MIB
        assert measured <= need.bytes * 1.001, run["model"]
        checked += 1
    assert checked == len(runs) - 1 >= 7


@pytest.mark.parametrize(
    "precision,kv_dtype,expected",
    [
        ("bf16", "auto", 2),
        ("fp16", "auto", 2),
        ("fp32", "auto", 4),
        ("fp8", "auto", 2),  # fp8 weights keep a bf16 cache under `auto` (the compute dtype; issue 19)
        ("int8", "auto", 2),
        ("int4", "auto", 2),
        ("bf16", "fp8", 1),
        ("int4", "fp8", 1),
        ("fp8", "fp16", 2),
        ("bf16", "fp8_e5m2", 1),
    ],
)
def test_kv_cache_dtype_bytes(precision, kv_dtype, expected):
    assert kv_cache_bytes(precision, kv_dtype) == expected


def test_fp8_kv_cache_halves_the_cache():
    # llama-3.1-8b, 32k x 4: KV bf16 = 2 x 32 x 8 x 128 x 2 x 131072 = 16 GiB; fp8 = 8 GiB
    base = {ann.MODEL: "llama-3.1-8b", ann.CONTEXT_LENGTH: "32k", ann.MAX_CONCURRENCY: "4"}
    bf16 = estimate_need(base, POLICY)
    fp8 = estimate_need({**base, ann.KV_CACHE_DTYPE: "fp8"}, POLICY)
    assert bf16.bytes - fp8.bytes == 8 * GIB
    assert "KV 8.00 GiB (32768 x 4)" in fp8.explanation


def test_architecture_annotation_sizes_a_model_not_in_the_table():
    # 7b params x 2 B = 14000000000 B (13.04 GiB); KV 2 x 40 x 10 x 128 x 2 x 8192 x 2 = 3.125 GiB
    annotations = {
        ann.MODEL_SIZE: "7b",
        ann.ARCHITECTURE: "layers=40,kv-heads=10,head-dim=128",
        ann.CONTEXT_LENGTH: "8192",
        ann.MAX_CONCURRENCY: "2",
    }
    need = estimate_need(annotations, POLICY)
    assert need.bytes == 14_000_000_000 + 3355443200 + 2304 * MIB
    assert need.explanation == "weights 13.04 GiB + KV 3.12 GiB (8192 x 2) + 2.25 GiB -> 18.4 GiB"


def test_architecture_overrides_the_table_and_model_size_overrides_its_params():
    annotations = {
        ann.MODEL: "llama-3.1-8b",
        ann.MODEL_SIZE: "8b",
        ann.ARCHITECTURE: "layers=1,kv-heads=1,head-dim=64",
        ann.CONTEXT_LENGTH: "1k",
    }
    need = estimate_need(annotations, POLICY)
    # 8e9 x 2 + 2 x 1 x 1 x 64 x 2 x 1024 x 1 + 2304 MiB
    assert need.bytes == 16_000_000_000 + 262144 + 2304 * MIB


def test_utilization_annotation_and_policy_constants():
    policy = parse_policy_yaml(
        "pools: [{name: h100, gpuModel: H100-80GB}]\n"
        "estimate: {activationMiB: 1024, runtimeOverheadMiB: 1024, gpuMemoryUtilization: 0.95}\n"
    )
    annotations = {ann.MODEL: "llama-3.2-1b", ann.CONTEXT_LENGTH: "8k"}
    need = estimate_need(annotations, policy)
    # 1235814400 x 2 + 2 x 16 x 8 x 64 x 2 x 8192 + 2048 MiB
    assert need.bytes == 2471628800 + 268435456 + 2048 * MIB
    assert need.utilization == Fraction(95, 100)
    # = 4887547904 B = 4.55 GiB <= 0.95 x 9.62 GiB: 1g.10gb
    assert decide(pod(annotations), policy).profile.name == "1g.10gb"
    need = estimate_need({**annotations, ann.GPU_MEMORY_UTILIZATION: "0.4"}, policy)
    assert need.utilization == Fraction(2, 5)
    # 4.55 GiB > 0.4 x 9.62 GiB = 3.85 GiB: no longer fits 1g.10gb; 0.4 x 19.50 = 7.80 GiB fits
    decision = decide(pod({**annotations, ann.GPU_MEMORY_UTILIZATION: "0.4"}), policy)
    assert decision.profile.name == "1g.20gb"
    assert decision.message.endswith("<= 0.4 x 19.50 GiB of 1g.20gb")


def test_fit_boundary_is_exact():
    # 0.9 x 40192 MiB (3g.40gb on every driver seen) = 0.9 x 42144366592 B = 37929929932.8 B:
    # a need of 37929929932 B fits 3g.40gb, one byte more does not. With 1 layer/kv-head/dim
    # and context 1, KV = 2 x 2 B = 4 B; fixed 2304 MiB = 2415919104 B; so weights =
    # 37929929932 - 2415919104 - 4 = 35514010824 B, i.e. 17757005412 params at 2 B.
    from webhook.core.sizing import select_profile

    settings = dict(precision="bf16", layers=1, kv_heads=1, head_dim=1, context=1, kv_dtype="auto")
    profiles = POLICY.pools[0].profiles
    at = inference_need(ServingSettings(params=17757005412, **settings), Fraction(9, 10), 1536, 768)
    assert at.bytes == 37929929932 and select_profile(at, profiles).name == "3g.40gb"
    over = inference_need(ServingSettings(params=17757005412.5, **settings), Fraction(9, 10), 1536, 768)
    assert over.bytes == 37929929933 and select_profile(over, profiles).name == "7g.80gb"
