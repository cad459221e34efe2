"""Hot reload of the policy file and the TLS certificate, per worker process.

A mounted ConfigMap or Secret changes by a symlink swap (the kubelet points `..data` at a
new directory), so a file's identity is its resolved path plus inode, size and mtime;
a background thread per worker polls that every few seconds. A change is loaded in full
before it replaces anything:
- the policy is swapped whole into the PolicyHolder; an invalid one is logged and
  counted, and the last good policy stays in force (readiness is unaffected);
- TLS: gunicorn asks the `ssl_context` hook for a context on every new connection
  (gunicorn/sock.py, ssl_wrap_socket). The hook hands out one cached SSLContext; on a
  change a *new* context is built from the new files and the reference swapped, so
  connections already open keep theirs and no context is ever modified while in use
  (a half-replaced cert/key pair fails to build and is retried on the next poll).
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import ssl
import threading
from collections.abc import Callable

from cryptography import x509

from webhook import settings
from webhook.core.errors import PolicyError
from webhook.core.policy import Policy, parse_policy_yaml, read_policy_file
from webhook.serving import metrics
from webhook.serving.holder import PolicyHolder
from webhook.serving.logs import LOGGER

log = logging.getLogger(LOGGER)
# A directory private to one `serve` (set by it before forking) where workers keep the
# text of the last policy that validated. A worker (re)started while the file on disk is
# invalid (a SIGHUP, a worker replaced after a crash) starts from that, not from the
# older policy the master validated at start.
LAST_GOOD_POLICY = "last-good-policy.yaml"

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


def remember_good_policy(text: str) -> None:
    state = settings.state_dir()
    if not state:
        return
    target = os.path.join(state, LAST_GOOD_POLICY)
    tmp = f"{target}.{os.getpid()}.tmp"
    try:
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(tmp, target)  # atomic: another worker never reads half of it
    except OSError as err:
        log.warning("cannot keep the last good policy", extra={"fields": {"error": str(err)}})


def last_good_policy(path: str) -> Policy | None:
    state = settings.state_dir()
    if not state:
        return None
    try:
        with open(os.path.join(state, LAST_GOOD_POLICY), encoding="utf-8") as fh:
            return parse_policy_yaml(fh.read(), source=f"{path} (last good)")
    except (OSError, PolicyError):
        return None


class PolicyReloader:
    def __init__(self, holder, path: str):
        self.holder = holder
        self.path = path
        self._loaded = file_signature(path)
        self._failed: Signature | None = None

    @classmethod
    def start(cls, path: str, fallback: Policy) -> PolicyReloader:
        """A holder with the policy file as it is now, or else the last policy known good:
        the one a worker of this server last loaded, or ``fallback`` (validated by the
        master at start). The failure is counted and logged like a failed reload."""
        sig = file_signature(path)
        try:
            text, policy = read_policy_file(path)
        except PolicyError as err:
            known_good = last_good_policy(path)
            reloader = cls(PolicyHolder(path, known_good or fallback), path)
            reloader._loaded, reloader._failed = None, sig
            metrics.POLICY_RELOADS.labels("failure").inc()
            using = "the last policy a worker loaded" if known_good else "the policy validated at server start"
            log.error(
                f"policy file invalid at worker start; using {using}",
                extra={"fields": {"path": path, "error": str(err)}},
            )
            return reloader
        remember_good_policy(text)
        return cls(PolicyHolder(path, policy), path)

    def check(self) -> None:
        sig = file_signature(self.path)
        if sig == self._loaded or sig == self._failed:
            return
        try:
            text, policy = read_policy_file(self.path)
        except PolicyError as err:
            self._failed = sig
            metrics.POLICY_RELOADS.labels("failure").inc()
            log.error(
                "policy reload failed; keeping the previous policy",
                extra={"fields": {"path": self.path, "error": str(err)}},
            )
            return
        self.holder.replace(policy)
        remember_good_policy(text)
        self._loaded, self._failed = sig, None
        metrics.POLICY_RELOADS.labels("success").inc()
        log.info("policy reloaded", extra={"fields": {"path": self.path, "pools": [p.name for p in policy.pools]}})


class TlsContexts:
    """The SSLContext handed to new connections; rebuilt, never mutated, on change."""

    def __init__(self):
        self._lock = threading.Lock()
        self._context: ssl.SSLContext | None = None
        self._build: Callable[[], ssl.SSLContext] | None = None
        self.cert_file = ""
        self.key_file = ""
        self._loaded: Signature | None = None
        self._failed: Signature | None = None
        self._not_after: dt.datetime | None = None

    def context(self, cert_file: str, key_file: str, build: Callable[[], ssl.SSLContext]) -> ssl.SSLContext:
        context = self._context
        if context is None:
            with self._lock:
                if self._context is None:
                    self.cert_file, self.key_file, self._build = cert_file, key_file, build
                    sig = file_signature(cert_file, key_file)
                    self._not_after = _not_after(cert_file)
                    self._context, self._loaded = build(), sig
                context = self._context
        return context

    def not_after(self) -> dt.datetime | None:
        return self._not_after

    def check(self) -> None:
        if self._build is None:
            return
        sig = file_signature(self.cert_file, self.key_file)
        if sig == self._loaded or sig == self._failed:
            return
        try:
            not_after = _not_after(self.cert_file)
            context = self._build()
        except (ssl.SSLError, OSError, ValueError) as err:
            self._failed = sig
            metrics.CERT_RELOADS.labels("failure").inc()
            log.error(
                "certificate reload failed; serving the previous one",
                extra={"fields": {"certFile": self.cert_file, "error": str(err)}},
            )
            return
        with self._lock:
            self._context, self._loaded, self._failed, self._not_after = context, sig, None, not_after
        metrics.CERT_RELOADS.labels("success").inc()
        log.info(
            "certificate reloaded", extra={"fields": {"certFile": self.cert_file, "notAfter": not_after.isoformat()}}
        )


def server_context(cert_file: str, key_file: str) -> ssl.SSLContext:
    """The server side of TLS: no client certificates asked for, TLS 1.2 at least (the
    API server speaks 1.2 and 1.3)."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert_file, key_file)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


def _not_after(cert_file: str) -> dt.datetime:
    with open(cert_file, "rb") as fh:
        return x509.load_pem_x509_certificate(fh.read()).not_valid_after_utc


# One per worker process (each forked worker gets its own after fork).
TLS = TlsContexts()


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
