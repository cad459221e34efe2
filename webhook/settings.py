"""Every environment variable gpu-rightsizer reads, read here and nowhere else.

A leaf module (the standard library only) outside the layers, so each layer may ask it:
core's ``resolve_policy`` and every command read ``GPU_RIGHTSIZER_POLICY``; the serving
layer reads the rest. Each function reads the environment when called, so a value set
before a worker starts (``serve`` sets ``GPU_RIGHTSIZER_STATE_DIR`` and
``PROMETHEUS_MULTIPROC_DIR`` for its workers) is seen. ``VARIABLES`` documents them all;
docs/development.md lists the same table, and a test holds the two equal.

There is no ``GPU_RIGHTSIZER_BIND``: `serve` always binds ``--host``:``--port`` (whose
defaults are ``GPU_RIGHTSIZER_HOST`` and ``GPU_RIGHTSIZER_PORT``), so a bind read from
the environment never took effect, and it was removed.
"""

from __future__ import annotations

import multiprocessing
import os
from dataclasses import dataclass

POLICY = "GPU_RIGHTSIZER_POLICY"
HOST = "GPU_RIGHTSIZER_HOST"
PORT = "GPU_RIGHTSIZER_PORT"
WORKERS = "GPU_RIGHTSIZER_WORKERS"
THREADS = "GPU_RIGHTSIZER_THREADS"
LOG_LEVEL = "GPU_RIGHTSIZER_LOG_LEVEL"
REQUEST_DEADLINE = "GPU_RIGHTSIZER_REQUEST_DEADLINE"
RELOAD_SECONDS = "GPU_RIGHTSIZER_RELOAD_SECONDS"
STATE_DIR = "GPU_RIGHTSIZER_STATE_DIR"
# prometheus-client's own variable: set, it counts in per-process files in that directory.
METRICS_DIR = "PROMETHEUS_MULTIPROC_DIR"


@dataclass(frozen=True)
class Variable:
    name: str
    default: str
    meaning: str


VARIABLES = (
    Variable(POLICY, "(the built-in policy)", "Policy file, when `--policy` is not given (every command)."),
    Variable(HOST, "0.0.0.0", "`serve`: the address to listen on, when `--host` is not given."),
    Variable(PORT, "8443", "`serve`: the TLS port, when `--port` is not given."),
    Variable(WORKERS, "min(2, CPUs)", "`serve`: worker processes, when `--workers` is not given."),
    Variable(THREADS, "16", "`serve`: threads per worker, when `--threads` is not given."),
    Variable(LOG_LEVEL, "info", "`serve`: log level (debug, info, warning, error)."),
    Variable(REQUEST_DEADLINE, "3", "`serve`: seconds a connection may spend on one request before it is shut."),
    Variable(RELOAD_SECONDS, "2", "`serve`: how often each worker checks the policy file and certificate."),
    Variable(
        STATE_DIR,
        "(set by `serve`)",
        "Where workers keep the last policy that validated; `serve` sets it to a private directory for its workers.",
    ),
    Variable(
        METRICS_DIR,
        "(set by `serve`)",
        "prometheus-client's multiprocess directory; `serve` sets it to a private directory for its workers.",
    ),
)


def _get(name: str) -> str | None:
    return os.environ.get(name) or None


def policy_path() -> str | None:
    return _get(POLICY)


def host() -> str:
    return _get(HOST) or "0.0.0.0"  # all interfaces on purpose: [tool.bandit] in pyproject.toml


def port() -> int:
    return int(_get(PORT) or 8443)


def workers() -> int:
    return int(_get(WORKERS) or min(2, multiprocessing.cpu_count()))


def threads() -> int:
    return int(_get(THREADS) or 16)


def log_level() -> str:
    return _get(LOG_LEVEL) or "info"


def request_deadline() -> float:
    return float(_get(REQUEST_DEADLINE) or 3)


def reload_seconds() -> float:
    return float(_get(RELOAD_SECONDS) or 2.0)


def state_dir() -> str | None:
    return _get(STATE_DIR)


def metrics_dir() -> str | None:
    return _get(METRICS_DIR)
