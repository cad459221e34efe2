"""Structured logs: one JSON object per line on stdout.

Every value goes through orjson, so a newline or quote inside a pod name or a decision
message is escaped and cannot forge a second log line. Strings taken from the request
are cut to a bounded length.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import sys

import orjson

LOGGER = "gpu_rightsizer"
MAX_FIELD = 512


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict = {
            "time": dt.datetime.fromtimestamp(record.created, dt.timezone.utc).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "pid": os.getpid(),
            "msg": record.getMessage(),
        }
        line.update(getattr(record, "fields", None) or {})
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(line, default=str).decode()


def configure(level: str = "info", stream=None) -> logging.Logger:
    """Send the gpu_rightsizer logger's records to ``stream`` (stdout) as JSON lines."""
    logger = logging.getLogger(LOGGER)
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
    handler = logging.StreamHandler(stream or sys.stdout)
    handler.setFormatter(JsonFormatter())
    logger.addHandler(handler)
    logger.setLevel(level.upper())
    logger.propagate = False
    return logger


def _text(value: object) -> str | None:
    if value is None:
        return None
    text = value if isinstance(value, str) else repr(value)
    return text if len(text) <= MAX_FIELD else text[:MAX_FIELD] + "…"


def admission_fields(review: dict, outcome: str, action: str, message: str, duration_s: float,
                     pool: str | None = None, profile: str | None = None) -> dict:
    """The fields of one admission's log line, from the decoded AdmissionReview."""
    request = review.get("request") or {}
    obj = request.get("object")
    metadata = obj.get("metadata") if isinstance(obj, dict) else None
    metadata = metadata if isinstance(metadata, dict) else {}
    name = request.get("name") or metadata.get("name")
    fields = {
        "uid": _text(request.get("uid")),
        "namespace": _text(request.get("namespace")),
        "name": _text(name),
        "generateName": None if name else _text(metadata.get("generateName")),
        "operation": _text(request.get("operation")),
        "dryRun": bool(request.get("dryRun")),
        "outcome": outcome,
        "action": action,
        "pool": pool,
        "profile": profile,
        "decision": _text(message),
        "durationMs": round(duration_s * 1000, 3),
    }
    return {k: v for k, v in fields.items() if v is not None}
