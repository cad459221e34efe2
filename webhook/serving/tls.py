"""Hot reload of the serving certificate (polled by webhook/serving/reload.py's Watcher).

gunicorn asks the `ssl_context` hook for a context on every new connection
(gunicorn/sock.py, ssl_wrap_socket). The hook hands out one cached SSLContext; on a change
a *new* context is built from the new files and the reference swapped, so connections
already open keep theirs and no context is ever modified while in use (a half-replaced
cert/key pair fails to build and is retried on the next poll).
"""

from __future__ import annotations

import datetime as dt
import logging
import ssl
import threading
from collections.abc import Callable

from cryptography import x509

from webhook.serving import metrics
from webhook.serving.logs import LOGGER
from webhook.serving.reload import Signature, file_signature

log = logging.getLogger(LOGGER)


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
