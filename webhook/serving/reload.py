"""Polling files for a change, per worker process: what hot reload is built on.

A mounted ConfigMap or Secret changes by a symlink swap (the kubelet points `..data` at a
new directory), so a file's identity is its resolved path plus inode, size and mtime; a
background thread per worker (``Watcher``) runs each check every few seconds. What a check
does with a change: webhook/serving/policy_reload.py (the policy) and
webhook/serving/tls.py (the serving certificate). A change is loaded in full before it
replaces anything.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable

from webhook import settings
from webhook.serving.logs import LOGGER

log = logging.getLogger(LOGGER)

Signature = tuple


def file_signature(*paths: str) -> Signature:
    out = []
    for path in paths:
        try:
            real = os.path.realpath(path)
            st = os.stat(real)
            out.append((real, st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns))
        except OSError as err:
            out.append((path, "missing", err.errno))
    return tuple(out)


class Watcher(threading.Thread):
    """Runs each check every ``interval`` seconds until stopped; a check that raises is
    logged, and the others still run."""

    def __init__(self, checks: list[Callable[[], None]], interval: float | None = None):
        super().__init__(name="gpu-rightsizer-reload", daemon=True)
        self.checks = checks
        self.interval = interval if interval is not None else settings.reload_seconds()
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.wait(self.interval):
            for check in self.checks:
                try:
                    check()
                except Exception:  # noqa: BLE001 - a reload bug must not stop reloading
                    log.exception("reload check failed")

    def stop(self) -> None:
        self._stop_event.set()
