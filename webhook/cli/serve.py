"""`gpu-rightsizer serve`: the webhook under gunicorn, over TLS."""

from __future__ import annotations

import atexit
import logging
import os
import shutil
import sys
import tempfile
from pathlib import Path

from gunicorn.app.base import BaseApplication

from webhook import settings
from webhook.certs.bundle import ensure_cert_dir
from webhook.cli.common import add_policy_argument, policy_or_exit
from webhook.core.policy import Policy
from webhook.serving import gunicorn_conf
from webhook.serving.logs import LOGGER


def add_arguments(parser) -> None:
    add_policy_argument(parser)
    parser.add_argument("--cert-file", help="serving certificate (PEM); without it a self-signed one is made")
    parser.add_argument("--key-file", help="private key of --cert-file (PEM)")
    parser.add_argument("--cert-dir", default="certs", help="where a generated certificate goes (default: certs/)")
    parser.add_argument(
        "--host", default=settings.host(), help=f"address to listen on (default: ${settings.HOST}, else 0.0.0.0)"
    )
    parser.add_argument(
        "--port", type=int, default=settings.port(), help=f"TLS port (default: ${settings.PORT}, else 8443)"
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=gunicorn_conf.workers,
        help=f"gunicorn worker processes (default: ${settings.WORKERS}, else {gunicorn_conf.workers})",
    )
    parser.add_argument("--threads", type=int, default=gunicorn_conf.threads, help="threads per worker")
    parser.add_argument(
        "--kubeconfig",
        metavar="K",
        help="with capacity.mode on: watch nodes and pods through this kubeconfig (default: in-cluster config)",
    )


class WebhookServer(BaseApplication):
    def __init__(self, options: dict, policy_path: str | None, startup_policy: Policy, kubeconfig: str | None = None):
        self.options = options
        self.kubeconfig = kubeconfig
        self.policy_path = policy_path
        # Validated by the master before forking: the fallback for a worker (re)started
        # while the policy file is invalid, so a bad edit never stops a worker booting.
        self.startup_policy = startup_policy
        super().__init__()

    def load_config(self) -> None:
        for key in dir(gunicorn_conf):
            if key in self.cfg.settings and not key.startswith("_"):
                self.cfg.set(key, getattr(gunicorn_conf, key))
        for key, value in self.options.items():
            self.cfg.set(key, value)

    def load(self):
        # Runs in each worker after the fork: its own policy holder and reload thread.
        # The TLS context was built by the master and is inherited (webhook/serving/tls.py).
        from webhook.serving.app import create_app
        from webhook.serving.cluster_watch import CapacityFeed
        from webhook.serving.holder import PolicyHolder
        from webhook.serving.policy_reload import PolicyReloader
        from webhook.serving.reload import Watcher
        from webhook.serving.tls import TLS

        checks = [TLS.check]
        # The watcher starts with the first policy that turns capacity.mode on (docs/capacity.md).
        capacity = CapacityFeed(self.kubeconfig)
        if self.policy_path:
            reloader = PolicyReloader.start(self.policy_path, self.startup_policy, capacity)
            holder = reloader.holder
            checks.insert(0, reloader.check)
        else:
            holder = PolicyHolder(None, self.startup_policy, capacity)
        Watcher(checks).start()
        app = create_app(holder, TLS.not_after)
        logging.getLogger(LOGGER).info("worker ready", extra={"fields": {"policy": holder.policy.source}})
        return app


def _private_dir(prefix: str = "gpu-rightsizer-metrics-") -> str:
    """A fresh directory private to this server (prometheus-client's per-worker files;
    the last good policy), removed when the master exits (a worker exiting must not)."""
    path = tempfile.mkdtemp(prefix=prefix)
    master = os.getpid()
    atexit.register(lambda: os.getpid() == master and shutil.rmtree(path, ignore_errors=True))
    return path


def _self_signed(cert_dir: str, host: str) -> tuple[str, str, str, str | None]:
    names = ["localhost", "127.0.0.1", "::1"]
    if host not in ("0.0.0.0", "::", *names):
        names.insert(0, host)
    # Reuse a certificate that still covers these names, so a caBundle registered from
    # it stays valid across restarts.
    paths, made_because = ensure_cert_dir(cert_dir, names)
    return str(paths.cert), str(paths.key), str(paths.ca_cert), made_because


def run(args) -> int:
    # Fail before forking when the policy is invalid: the error names the bad field.
    startup_policy = policy_or_exit(args.policy)
    policy_path = args.policy or settings.policy_path()
    # Before anything imports prometheus_client: it picks multiprocess mode at import.
    os.environ[settings.METRICS_DIR] = _private_dir()
    os.environ[settings.STATE_DIR] = _private_dir("gpu-rightsizer-state-")
    from webhook.serving.logs import configure
    from webhook.serving.tls import TLS, server_context

    configure(gunicorn_conf.loglevel)
    cert, key = args.cert_file, args.key_file
    if bool(cert) != bool(key):
        print("gpu-rightsizer: --cert-file and --key-file go together", file=sys.stderr)
        return 2
    if not cert:
        cert, key, ca, made_because = _self_signed(args.cert_dir, args.host)
        what = (
            "reusing the CA and serving certificate"
            if made_because is None
            else f"made a self-signed CA and serving certificate ({made_because})"
        )
        print(
            f"gpu-rightsizer: no --cert-file given; {what} in {Path(args.cert_dir).resolve()} "
            f"(CA: {ca}, for localhost and 127.0.0.1)",
            file=sys.stderr,
        )
    try:
        # Built once here, before the fork: every worker inherits a working context, even
        # one restarted while the files on disk are half-replaced.
        TLS.context(cert, key, lambda: server_context(cert, key))
    except (OSError, ValueError) as err:  # ssl.SSLError is an OSError
        print(f"gpu-rightsizer: cannot serve TLS with {cert} and {key}: {err}", file=sys.stderr)
        return 2
    options = {
        "bind": f"[{args.host}]:{args.port}" if ":" in args.host else f"{args.host}:{args.port}",
        "workers": args.workers,
        "threads": args.threads,
        "certfile": cert,
        "keyfile": key,
    }
    WebhookServer(options, policy_path, startup_policy, args.kubeconfig).run()
    return 0
