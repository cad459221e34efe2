"""JSON log lines: one per admission, every field escaped, nothing forges a line."""

from __future__ import annotations

import io
import json
import logging
import os
import sys
import time

import pytest

from tests.support.server import DENIED, MUTATED, review
from webhook.serving.app import create_app
from webhook.serving.logs import LOGGER, MAX_FIELD, JsonFormatter, admission_fields, configure, info_line


@pytest.fixture(autouse=True)
def _restore_logger():
    logger = logging.getLogger(LOGGER)
    saved = (list(logger.handlers), logger.propagate, logger.level)
    yield
    logger.handlers[:] = saved[0]
    logger.propagate, logger.level = saved[1], saved[2]


def _capture() -> io.StringIO:
    stream = io.StringIO()
    configure("info", stream)
    return stream


def test_one_line_per_admission_with_the_request_fields():
    stream = _capture()
    client = create_app().test_client()
    client.post("/mutate", json=review(MUTATED, "uid-1", dry_run=True))
    client.post("/mutate", json=review(DENIED, "uid-2"))
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert [line["uid"] for line in lines] == ["uid-1", "uid-2"]
    first, second = lines
    assert first["msg"] == "admission" and first["level"] == "info"
    assert (first["namespace"], first["name"], first["operation"], first["dryRun"]) == ("ml", "llm-7b", "CREATE", True)
    assert (first["outcome"], first["action"], first["pool"], first["profile"]) == (
        "mutated",
        "rewrite",
        "h100-80",
        "1g.20gb",
    )
    assert "1g.20gb" in first["decision"] and first["durationMs"] >= 0
    assert (second["outcome"], second["action"], second["dryRun"]) == ("denied", "deny", False)
    assert "banana" in second["decision"]


def test_generate_name_when_the_pod_has_no_name():
    obj = {"metadata": {"generateName": "web-7d4-"}, "spec": {}}
    rv = review({"metadata": {}, "spec": {}}, "u")
    rv["request"]["object"], rv["request"]["name"] = obj, None
    fields = admission_fields(rv, "unchanged", "ignore", "", 0.001)
    assert fields["generateName"] == "web-7d4-" and "name" not in fields


def test_newlines_and_quotes_cannot_forge_a_line():
    stream = _capture()
    evil = 'x"\n{"msg":"admission","uid":"forged"}\r\n'
    obj = {
        **MUTATED,
        "metadata": {**MUTATED["metadata"], "name": evil, "annotations": {"gpu-rightsizer.io/model-size": evil}},
    }
    create_app().test_client().post("/mutate", json=review(obj, "uid-evil"))
    out = stream.getvalue()
    assert out.count("\n") == 1
    (line,) = [json.loads(raw) for raw in out.splitlines()]
    assert line["uid"] == "uid-evil" and line["name"] == evil
    assert line["outcome"] == "denied"


def test_long_values_are_cut():
    fields = admission_fields(
        review({"metadata": {"name": "n" * 5000}, "spec": {}}, "u" * 5000), "unchanged", "ignore", "m" * 5000, 0.0
    )
    assert all(len(fields[k]) <= MAX_FIELD + 1 for k in ("uid", "name", "decision"))


def test_exceptions_are_one_json_line():
    record = logging.getLogger(LOGGER).makeRecord(LOGGER, logging.ERROR, __file__, 1, "failed", (), None)
    try:
        raise ValueError("bad\nthing")
    except ValueError:
        record.exc_info = sys.exc_info()
    text = JsonFormatter().format(record)
    assert "\n" not in text and "ValueError: bad" in json.loads(text)["exception"]


def test_the_admission_line_is_what_the_formatter_writes():
    stream = _capture()
    fields = admission_fields(review(MUTATED, 'u"\n1'), "mutated", "rewrite", "m\n", 0.0012)
    info_line("admission", fields)
    logging.getLogger(LOGGER).info("admission", extra={"fields": fields})
    fast, slow = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert list(fast) == list(slow)
    assert {k: v for k, v in fast.items() if k != "time"} == {k: v for k, v in slow.items() if k != "time"}
    assert fast["uid"] == 'u"\n1' and fast["level"] == "info" and fast["time"].endswith("+00:00")


def test_no_admission_line_above_info():
    stream = io.StringIO()
    configure("warning", stream)
    create_app().test_client().post("/mutate", json=review(MUTATED, "uid-quiet"))
    assert stream.getvalue() == ""


def test_the_admission_line_follows_a_replaced_handler():
    _capture()
    other = io.StringIO()
    logging.getLogger(LOGGER).handlers[:] = [logging.StreamHandler(other)]
    info_line("admission", {"uid": "u"})
    assert other.getvalue() == "admission\n"


def test_lines_written_straight_to_a_real_file_are_whole_and_the_formatters(tmp_path):
    """On a stream with a file descriptor (a container's stdout) the admission line is
    one write(2) without the handler's lock: 16 threads writing at once must still give
    whole lines, each what the formatter would write."""
    import threading

    path = tmp_path / "log.jsonl"
    with open(path, "w") as stream:
        configure("info", stream)
        fields = admission_fields(review(MUTATED, "u-file"), "mutated", "rewrite", "x" * 300, 0.001)

        def write_many():
            for _ in range(200):
                info_line("admission", fields)
                logging.getLogger(LOGGER).info("other", extra={"fields": {"k": "v"}})

        threads = [threading.Thread(target=write_many) for _ in range(16)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    lines = path.read_text().splitlines()
    assert len(lines) == 16 * 200 * 2
    parsed = [json.loads(line) for line in lines]
    admissions = [p for p in parsed if p["msg"] == "admission"]
    assert len(admissions) == 3200 and all(p["uid"] == "u-file" and p["decision"] == "x" * 300 for p in admissions)


def test_timestamps_are_iso_8601_utc_milliseconds():
    import datetime as dt
    import random

    from webhook.serving.logs import _timestamp

    spread = [random.Random(seed).uniform(0, 4_102_444_800) for seed in range(2000)]
    near_edges = [1_764_081_217 + k / 1000 + d for k in range(1000) for d in (-1e-6, -4e-7, 0.0, 4e-7)]
    for created in (
        0.0,
        0.9999,
        1_764_081_217.0,
        1_764_081_217.0005,
        1_764_081_217.999,
        4_102_444_799.5,
        *spread,
        *near_edges,
    ):
        expected = dt.datetime.fromtimestamp(created, dt.timezone.utc)
        expected = expected.replace(microsecond=expected.microsecond // 1000 * 1000)
        assert _timestamp(created) == expected.isoformat(timespec="milliseconds"), created
    assert _timestamp(1_764_081_217.25) == "2025-11-25T14:33:37.250+00:00"


def _file_logger(tmp_path, name="held.jsonl"):
    path = tmp_path / name
    stream = open(path, "w")
    configure("info", stream)
    return path, stream


def test_admission_lines_are_written_within_the_flush_interval_unprompted(tmp_path):
    from webhook.serving import logs

    path, stream = _file_logger(tmp_path)
    with stream:
        for i in range(3):
            info_line("admission", {"uid": f"u-{i}"})
        deadline = time.monotonic() + 10 * logs.FLUSH_SECONDS + 2
        while len(path.read_text().splitlines()) < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert [json.loads(line)["uid"] for line in path.read_text().splitlines()] == ["u-0", "u-1", "u-2"]


def test_held_admission_lines_come_before_a_later_record(tmp_path):
    path, stream = _file_logger(tmp_path)
    with stream:
        info_line("admission", {"uid": "first"})
        logging.getLogger(LOGGER).error("later")
        info_line("admission", {"uid": "last"})
        from webhook.serving.logs import flush

        flush()
    assert [json.loads(line)["msg"] for line in path.read_text().splitlines()] == ["admission", "later", "admission"]


def test_a_forked_child_does_not_write_its_parents_held_lines(tmp_path):
    from webhook.serving.logs import flush

    path, stream = _file_logger(tmp_path)
    with stream:
        info_line("admission", {"uid": "parent"})
        pid = os.fork()
        if pid == 0:  # the child: its own line only, then out without atexit
            try:
                info_line("admission", {"uid": "child"})
                flush()
            finally:
                os._exit(0)
        os.waitpid(pid, 0)
        flush()
    assert sorted(json.loads(line)["uid"] for line in path.read_text().splitlines()) == ["child", "parent"]


def test_lines_through_a_pipe_are_whole_under_16_threads():
    import threading

    from webhook.serving.logs import flush

    read_fd, write_fd = os.pipe()
    chunks: list[bytes] = []
    reader = threading.Thread(target=lambda: [chunks.append(c) for c in iter(lambda: os.read(read_fd, 65536), b"")])
    reader.start()
    with os.fdopen(write_fd, "w") as stream:
        configure("info", stream)
        fields = admission_fields(review(MUTATED, "u-pipe"), "mutated", "rewrite", "y" * 300, 0.001)
        threads = [
            threading.Thread(target=lambda: [info_line("admission", fields) for _ in range(300)]) for _ in range(16)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        flush()
        configure("info")  # detach from the pipe before it closes
    reader.join()
    lines = b"".join(chunks).splitlines()
    assert len(lines) == 16 * 300
    assert all(json.loads(line)["uid"] == "u-pipe" for line in lines)


def test_lines_held_for_a_closed_stream_never_reach_the_file_that_reuses_its_descriptor(tmp_path):
    from webhook.serving.logs import flush

    stream = open(tmp_path / "closed.jsonl", "w")
    configure("info", stream)
    info_line("admission", {"uid": "held"})
    fd = stream.fileno()
    stream.close()
    reused = os.open(tmp_path / "other.bin", os.O_WRONLY | os.O_CREAT)
    try:
        assert reused == fd  # the lowest free descriptor: the one just closed
        flush()
    finally:
        os.close(reused)
        configure("info")
    assert (tmp_path / "other.bin").read_bytes() == b""
