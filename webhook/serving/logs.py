"""Structured logs: one JSON object per line on stdout.

Every value goes through orjson, so a newline or quote inside a pod name or a decision
message is escaped and cannot forge a second log line. Strings taken from the request
are cut to a bounded length.
"""

from __future__ import annotations

import atexit
import contextlib
import datetime as dt
import logging
import os
import select
import sys
import threading
import time

import orjson

from webhook.core.outcomes import MemoResult, RecordedAction, RecordedResult
from webhook.core.text import describe_value

LOGGER = "gpu_rightsizer"
MAX_FIELD = 512


# Every admission writes a line: its timestamp's seconds are formatted once per second,
# and the pid once per process (getpid is a system call on every call).
_second: tuple[int, str] = (-1, "")
_pid = os.getpid()


def _after_fork_in_child() -> None:
    global _pid
    _pid = os.getpid()


os.register_at_fork(after_in_child=_after_fork_in_child)


def _timestamp(created: float) -> str:
    """As ``datetime.isoformat(timespec="milliseconds")`` in UTC."""
    global _second
    # The fraction's microseconds first, rounded half-even with the carry, as datetime
    # rounds them (CPython's _PyTime_ObjectToTimeval), then cut to milliseconds.
    whole = int(created)
    micro = round((created - whole) * 1e6)
    if micro >= 1_000_000:
        whole, micro = whole + 1, micro - 1_000_000
    second, text = _second
    if second != whole:
        text = dt.datetime.fromtimestamp(whole, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
        _second = (whole, text)
    return f"{text}.{micro // 1000:03d}+00:00"


def _line(created: float, level: str, name: str, msg: str, fields: dict | None) -> dict:
    line: dict = {
        "time": _timestamp(created),
        "level": level,
        "logger": name,
        "pid": _pid,
        "msg": msg,
    }
    line.update(fields or {})
    return line


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = _line(
            record.created, record.levelname.lower(), record.name, record.getMessage(), getattr(record, "fields", None)
        )
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(line, default=str).decode()


class _Lines:
    """Admission lines, written together by one thread: whole lines in writes of at most
    PIPE_BUF bytes (atomic on a pipe, a container's stdout, so workers sharing it never
    interleave inside a line), at most FLUSH_SECONDS after they were logged (sooner when
    WAKE_BYTES are waiting), before any other record of this logger (so the order
    holds) and at exit. A request thread only appends under a lock held for a list
    operation: when request threads took turns writing, py-spy found 13 % of a loaded
    worker's samples queued on that lock. One write(2) per admission was 2-6 % of a
    served request's CPU (bench, log level info vs warning); klog, the Kubernetes
    components' logger, holds lines for up to 5 s. A worker killed with SIGKILL loses at
    most FLUSH_SECONDS of lines."""

    def __init__(self) -> None:
        self._reset()

    def _reset(self) -> None:
        self.lock = threading.Lock()  # the pending list; held for list operations only
        self.write_lock = threading.Lock()  # one writer at a time: batches keep their order
        self.wake = threading.Event()
        self.pending: list[bytes] = []
        self.size = 0
        # The stream, not its descriptor: a stream closed with lines still held must not
        # have them written to whatever file reuses its descriptor number.
        self.stream = None
        self.started = False

    def add(self, stream, line: bytes) -> None:
        if stream is not self.stream:  # the stream changed (configure() again): its lines go first
            self.flush()
            with self.lock:
                self.stream = stream
        with self.lock:
            self.pending.append(line)
            self.size += len(line)
            full = self.size >= WAKE_BYTES
            if not self.started:
                self.started = True
                threading.Thread(target=self._flush_forever, name="log-flush", daemon=True).start()
        if full and not self.wake.is_set():
            self.wake.set()

    def flush(self) -> None:
        """Write what is pending; a stream that refuses it gets a note on stderr."""
        with self.write_lock:
            with self.lock:
                lines, stream = self.pending, self.stream
                self.pending, self.size = [], 0
            if not lines or stream is None:
                return
            try:
                fd = stream.fileno()
                batch: list[bytes] = []
                size = 0
                for line in lines:
                    if batch and size + len(line) > select.PIPE_BUF:
                        _write_all(fd, b"".join(batch))
                        batch, size = [], 0
                    batch.append(line)
                    size += len(line)
                _write_all(fd, b"".join(batch))
            except (OSError, ValueError):  # ValueError: the stream was closed
                _report_write_error()

    def _flush_forever(self) -> None:
        while True:
            self.wake.wait(FLUSH_SECONDS)
            self.wake.clear()
            self.flush()


def _write_all(fd: int, data: bytes) -> None:
    while data:
        data = data[os.write(fd, data) :]


FLUSH_SECONDS = 0.2
# The writer wakes before its interval only when this much waits (~500 lines): each wake
# is a thread switch and a hand-over of the GIL; waking every PIPE_BUF bytes (8 lines)
# cost ~10 µs of CPU per request (Flask test client loop, 6 alternated runs: the app
# 42 µs over the floor's, against 33 µs with this threshold).
WAKE_BYTES = 256 * 1024
_LINES = _Lines()
os.register_at_fork(after_in_child=_LINES._reset)
atexit.register(_LINES.flush)


def flush() -> None:
    """Write the admission lines still held (tests, and before other records)."""
    _LINES.flush()


def _report_write_error() -> None:
    # What logging does for a broken stream (Handler.handleError): a note on stderr, and
    # never an exception into a request. (handleError itself needs an exception in flight.)
    with contextlib.suppress(Exception):  # nowhere left to say it
        sys.stderr.write("gpu-rightsizer: admission log lines could not be written to the log stream\n")


class _OrderedStreamHandler(logging.StreamHandler):
    """Writes the held admission lines before a record of its own."""

    def emit(self, record: logging.LogRecord) -> None:
        flush()
        super().emit(record)


# The handler configure() installed: info_line() writes straight to its stream.
_handler: logging.StreamHandler | None = None
_logger = logging.getLogger(LOGGER)  # getLogger takes logging's module lock on every call


def configure(level: str = "info", stream=None) -> logging.Logger:
    """Send the gpu_rightsizer logger's records to ``stream`` (stdout) as JSON lines."""
    logger = logging.getLogger(LOGGER)
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
    flush()
    handler = _OrderedStreamHandler(stream or sys.stdout)
    handler.setFormatter(JsonFormatter())
    logger.addHandler(handler)
    logger.setLevel(level.upper())
    logger.propagate = False
    global _handler
    _handler = handler
    return logger


def _stream_fd(stream) -> int | None:
    """The file descriptor behind a text stream whose buffer is empty (the handler
    flushes after every record), or None when it has none (StringIO in tests)."""
    try:
        return stream.fileno()
    except (AttributeError, OSError, ValueError):
        return None


def info_line(msg: str, fields: dict) -> None:
    """The line ``logger.info(msg, extra={"fields": fields})`` writes, without the logging
    module's per-record machinery (LogRecord, Formatter, Handler.handle): the
    per-admission line is on every request's path, and that machinery was about half the
    CPU of recording an admission (cProfile, 3,000 requests). Same JSON, same stream,
    written with the lines around it (_Lines); nothing when the logger's level is above
    info. If the logger's handlers are not (only) configure()'s, it goes through logging
    as before."""
    logger = _logger
    if not logger.isEnabledFor(logging.INFO):
        return
    handler = _handler
    if (
        handler is None
        or logger.handlers != [handler]
        or handler.level > logging.INFO
        or logger.filters
        or handler.filters
    ):
        logger.info(msg, extra={"fields": fields})
        return
    line = orjson.dumps(_line(time.time(), "info", LOGGER, msg, fields), default=str)
    if _stream_fd(handler.stream) is not None and len(line) < select.PIPE_BUF:
        _LINES.add(handler.stream, line + b"\n")
        return
    flush()
    text = line.decode() + handler.terminator
    with handler.lock:
        try:
            handler.stream.write(text)
            handler.stream.flush()
        except Exception:  # noqa: BLE001 - as StreamHandler.emit: a broken log stream
            # must not fail the admission; logging's own error report goes to stderr.
            handler.handleError(logging.makeLogRecord({"msg": msg, "name": LOGGER, "levelno": logging.INFO}))


def _text(value: object) -> str | None:
    if value is None:
        return None
    # Not repr(): request.name may be a 1,000-deep array (repr raised RecursionError and
    # the answer became a 500, tests/hostile/corpus.py "request-name-1000-deep-array").
    text = value if isinstance(value, str) else describe_value(value)
    return text if len(text) <= MAX_FIELD else text[:MAX_FIELD] + "…"


def admission_fields(
    review: dict,
    outcome: RecordedResult,
    action: RecordedAction,
    message: str,
    duration_s: float,
    pool: str | None = None,
    profile: str | None = None,
    memo: MemoResult = "",
) -> dict:
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
        # hit: answered from memory, as an earlier pod like it was (webhook/admission/memo.py).
        "memo": memo or None,
        "durationMs": round(duration_s * 1000, 3),
    }
    return {k: v for k, v in fields.items() if v is not None}
