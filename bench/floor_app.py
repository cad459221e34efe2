"""The floor: an allow-all admission endpoint on gpu-rightsizer's own stack.

Same gunicorn config (webhook/serving/gunicorn_conf.py, via the same ``WebhookServer`` class as
`gpu-rightsizer serve`), same Flask, same TLS; the app only decodes the review (it needs
the uid) and answers "allowed, no patch". Whatever our webhook costs beyond this is the
cost of doing the job.

    python -m bench.floor_app --port 8445 --workers 2 --cert-file tls.crt --key-file tls.key
    python -m bench.floor_app --app project ...   # gpu-rightsizer's app, same launcher

``--worker-class``/``--threads``/``--access-log`` let the benchmarks compare stack
settings on both apps without editing the shipped config.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import orjson
from flask import Flask, Response, request

from webhook.cli.serve import WebhookServer
from webhook.serving import gunicorn_conf


def create_floor_app(extra_fields: dict | None = None) -> Flask:
    """``extra_fields``: response fields to add to every answer (a recorded patch and
    warnings: the floor then sends what we send, as the Go endpoint's -response does)."""
    app = Flask("allow_all_floor")
    extra = dict(extra_fields or {})

    @app.post("/mutate")
    def mutate() -> Response:
        # The body straight from the WSGI stream, as the project app reads it: werkzeug's
        # get_data() wraps it in its own limited stream first, ~13 µs more per request
        # (Flask test client, 7 alternated rounds), which would flatter the project.
        review = orjson.loads(request.environ["wsgi.input"].read())
        body = {
            "apiVersion": "admission.k8s.io/v1",
            "kind": "AdmissionReview",
            "response": {"uid": review["request"]["uid"], "allowed": True, **extra},
        }
        return Response(orjson.dumps(body), mimetype="application/json")

    @app.get("/readyz")
    def readyz() -> Response:
        return Response(b'{"status":"ready"}', mimetype="application/json")

    return app


def create_admit_only_app() -> Flask:
    """Diagnostic: the floor plus ``admit`` (decode, decide, patch, encode), without the
    project app's metrics and log line; separates the decision's cost from the rest."""
    from webhook.admission import review as rv
    from webhook.admission.admit import admit
    from webhook.admission.answer import PlainAnswers
    from webhook.core.policy import default_policy

    app = create_floor_app()
    policy = default_policy()

    @app.post("/admit")
    def admit_only() -> Response:
        review = rv.decode_review(request.environ["wsgi.input"].read())
        return Response(
            orjson.dumps(rv.review_of(admit(review, PlainAnswers(policy)).response)), mimetype="application/json"
        )

    app.view_functions["mutate"] = admit_only
    return app


class BenchServer(WebhookServer):
    def __init__(self, options: dict, app_name: str, extra_fields: dict | None = None):
        from webhook.core.policy import default_policy

        self.app_name = app_name
        self.extra_fields = extra_fields
        super().__init__(options, None, default_policy())

    def load(self):
        if self.app_name == "floor":
            return create_floor_app(self.extra_fields)
        if self.app_name == "admit-only":
            return create_admit_only_app()
        return super().load()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--app", choices=("floor", "project", "admit-only"), default="floor")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--workers", type=int, default=gunicorn_conf.workers)
    parser.add_argument("--threads", type=int, default=gunicorn_conf.threads)
    parser.add_argument("--worker-class", default=gunicorn_conf.worker_class)
    parser.add_argument("--cert-file", required=True)
    parser.add_argument("--key-file", required=True)
    parser.add_argument("--access-log", help="gunicorn access log file (to count requests)")
    parser.add_argument("--app-log-level", help="the project app's log level (default: gunicorn's, as serve does)")
    parser.add_argument(
        "--response",
        help="floor: a JSON object of fields to add to every response (e.g. our recorded patch and warnings)",
    )
    args = parser.parse_args()
    options = {
        "bind": f"{args.host}:{args.port}",
        "workers": args.workers,
        "threads": args.threads,
        "worker_class": args.worker_class,
        "certfile": args.cert_file,
        "keyfile": args.key_file,
    }
    if args.access_log:
        options["accesslog"] = args.access_log
    if args.app == "project":
        # As `gpu-rightsizer serve` does (webhook/cli/serve.py run()): multiprocess
        # metrics and JSON log lines, so the project here costs what it costs there.
        from webhook.cli.serve import _private_dir
        from webhook.serving.logs import configure

        os.environ["PROMETHEUS_MULTIPROC_DIR"] = _private_dir()
        configure(args.app_log_level or gunicorn_conf.loglevel)
    # As serve does: the master builds the TLS context that every worker inherits
    # (gunicorn_conf.ssl_context hands it out), for the floor and the project alike.
    from webhook.serving.tls import TLS, server_context

    TLS.context(args.cert_file, args.key_file, lambda: server_context(args.cert_file, args.key_file))
    extra = json.loads(Path(args.response).read_text()) if args.response else None
    BenchServer(options, args.app, extra).run()


if __name__ == "__main__":
    main()
