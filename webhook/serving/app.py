"""The Flask app: a thin HTTP adapter around ``webhook.admission.admit.admit``.

Transport concerns only: content type, body limit, JSON in and out, status codes. Every
answer is JSON; a bad request gets a 4xx naming what is wrong, never a 500. Metrics and
the per-admission log line are recorded by webhook.serving.observe; /metrics is webhook.serving.metrics.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Callable

import orjson
from flask import Flask, Response, request
from werkzeug.exceptions import HTTPException

from webhook.admission import review as rv
from webhook.admission.admit import admit
from webhook.core.text import quote_value
from webhook.serving import metrics
from webhook.serving.holder import PolicyHolder
from webhook.serving.observe import record_admission

log = logging.getLogger("gpu_rightsizer")


def _json(body: object, status: int = 200) -> Response:
    return Response(orjson.dumps(body), status=status, mimetype="application/json")


def _error(status: int, message: str) -> Response:
    return _json({"error": message, "code": status}, status)


def _bad_request(status: int, message: str) -> Response:
    metrics.BAD_REQUESTS.labels(str(status)).inc()
    return _error(status, message)


def create_app(
    holder: PolicyHolder | None = None, cert_not_after: Callable[[], dt.datetime | None] = lambda: None
) -> Flask:
    holder = holder or PolicyHolder(None)
    app = Flask("gpu_rightsizer")
    app.config["MAX_CONTENT_LENGTH"] = rv.MAX_BODY_BYTES
    app.extensions["gpu_rightsizer.policy"] = holder

    @app.post("/mutate")
    def mutate() -> Response:
        started = time.perf_counter()
        # The API server always sends exactly this header: skip werkzeug's option parsing
        # (and the request proxy's lookups) for it; anything else is judged by mimetype.
        environ = request.environ
        if environ.get("CONTENT_TYPE") != "application/json" and request.mimetype != "application/json":
            return _bad_request(415, f"Content-Type must be application/json, not {request.mimetype[:64]!r}")
        length = request.content_length  # a property that re-reads two headers per access
        if length is not None and length > rv.MAX_BODY_BYTES:
            return _bad_request(413, f"body of {length} bytes is over the {rv.MAX_BODY_BYTES}-byte limit")
        # Read one byte past the limit ourselves: for a chunked body (no Content-Length)
        # werkzeug's max_content_length stream stops at the limit without an error
        # (LimitedStream.readall), so a 4 MB body was cut to 3 MB and parsed.
        try:
            body = environ["wsgi.input"].read(rv.MAX_BODY_BYTES + 1)
        except Exception as err:  # noqa: BLE001 - the client went away or broke the framing
            # (gunicorn raises its own NoMoreData, InvalidChunkSize...): nobody is left to
            # read a 500, and it is the request's fault anyway.
            return _bad_request(400, f"the request body could not be read: {type(err).__name__}")
        if len(body) > rv.MAX_BODY_BYTES:
            return _bad_request(413, f"body is over the {rv.MAX_BODY_BYTES}-byte limit")
        try:
            review = rv.decode_review(body)
        except rv.RequestError as err:
            return _bad_request(err.status, str(err))
        except Exception:  # noqa: BLE001 - a decoder bug is still the request's problem, not a 500
            log.exception("internal error decoding a request; answered 400")
            return _bad_request(400, "the body could not be decoded as an AdmissionReview")
        uid = review["request"]["uid"]
        try:
            outcome = admit(review, holder.answers, len(body), quota=holder.quota_view())
        except Exception:  # noqa: BLE001 - a bug must not block pod creation
            # Fail open: the pod is admitted as it came (it is still a valid pod, just not
            # right-sized); the traceback goes to the log and the error to the metrics.
            # The uid is the caller's text: quoted, so a newline in it cannot forge a log line.
            log.exception("internal error deciding request %s; admitting unchanged", quote_value(uid, 128))
            response = rv.allowed(uid, warnings=["internal error; pod admitted unchanged (see webhook logs)"])
            record_admission(review, None, time.perf_counter() - started)
            return _json(rv.review_of(response))
        body = _json(rv.review_of(outcome.response))
        record_admission(review, outcome, time.perf_counter() - started)
        return body

    @app.get("/metrics")
    def metrics_endpoint() -> Response:
        capacity = holder.capacity
        body, content_type = metrics.render(cert_not_after, capacity.age if capacity is not None else lambda: None)
        return Response(body, status=200, content_type=content_type)

    @app.get("/healthz")
    def healthz() -> Response:
        return _json({"status": "ok"})

    @app.get("/readyz")
    def readyz() -> Response:
        return _json({"status": "ready", "policy": holder.policy.source})

    @app.errorhandler(HTTPException)
    def http_error(err: HTTPException) -> Response:
        return _error(err.code or 400, err.description or err.name)

    return app
