"""The hostile corpus (tests/hostile/) against a real gunicorn over TLS: every request
gets a clear 4xx or a well-formed AdmissionReview, never a 500, a dead worker or a hang."""

from __future__ import annotations

import json
import select
import ssl
import time

import pytest

from tests.support.hostile.corpus import MAX_BODY_BYTES, all_cases, captured_review, check_answer
from webhook.admission.review import MAX_BODY_BYTES as SERVER_LIMIT

CASES = all_cases()
# Each answer must come quickly: the API server's default timeout is 10 s, and a slow
# answer to one hostile request is a thread (or, for CPU, the worker) not answering others.
ANSWER_SECONDS = 3.0


@pytest.fixture(scope="module")
def workers_before(server):
    return server.worker_pids()


def test_corpus_limit_matches_the_server():
    assert MAX_BODY_BYTES == SERVER_LIMIT


def test_corpus_covers_what_the_issue_lists():
    names = {c.name for c in CASES}
    assert len(CASES) > 250
    for needed in (
        "truncated-half",
        "latin1-not-utf8",
        "json-array",
        "json-string",
        "nesting-10000-whole-body",
        "1000-single-gpu-containers",
        "1mb-control-chars-model-size",
        "gpu-memory-1e309",
        "gpu-limit-minus-one",
        "gpu-limit-nan",
        "body-at-the-limit",
        "content-type-text",
    ):
        assert needed in names


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_hostile_request(server, workers_before, case):
    headers = dict(case.headers)
    if case.content_type is not None:
        headers["Content-Type"] = case.content_type
    started = time.monotonic()
    status, resp_headers, body = server.request(case.method, case.path, case.body, headers, timeout=30)
    elapsed = time.monotonic() - started
    check_answer(case, status, resp_headers, body)
    assert elapsed < ANSWER_SECONDS, f"{case.name}: answered after {elapsed:.1f} s"


class RawResponse:
    def __init__(self, status: int, headers: dict, body: bytes):
        self.status, self.headers, self.body = status, headers, body


def _read_response(sock, buf: bytearray) -> RawResponse:
    """One HTTP/1.x response off ``sock`` (``buf`` holds bytes already read past the
    previous one): status line, headers, then Content-Length bytes of body."""
    while b"\r\n\r\n" not in buf:
        data = sock.recv(65536)
        if not data:
            raise ConnectionError(f"closed before a full response head: {bytes(buf[:200])!r}")
        buf += data
    head, _, rest = bytes(buf).partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    length = int(headers.get("content-length", 0))
    body = bytearray(rest)
    while len(body) < length:
        data = sock.recv(65536)
        if not data:
            raise ConnectionError("closed inside a response body")
        body += data
    buf[:] = body[length:]
    return RawResponse(int(lines[0].split(" ")[1]), headers, bytes(body[:length]))


def _early_data(sock, buf: bytearray, timeout: float) -> bool:
    """Whether the server has begun to answer (bytes added to ``buf``). A readable socket
    alone does not say so: TLS 1.3 session tickets arrive after the handshake too."""
    if not select.select([sock], [], [], 0)[0]:
        return False
    sock.settimeout(0)
    try:
        data = sock.recv(65536)
    except ssl.SSLWantReadError:
        return False
    except OSError:
        return True
    finally:
        sock.settimeout(timeout)
    buf += data
    return True


def _exchange(server, raw: bytes, responses: int = 1, timeout: float = 10) -> list[RawResponse]:
    """Send ``raw`` on a fresh TLS connection and read ``responses`` answers. The body
    goes out in pieces, and sending stops as soon as an answer is readable: the server
    may answer early (413 before reading the body) and close. One thread only: an SSL
    socket is not safe to read and write from two."""
    sock = server.tls_socket(timeout)
    buf = bytearray()
    try:
        for i in range(0, len(raw), 65536):
            if _early_data(sock, buf, timeout):
                break
            try:
                sock.sendall(raw[i : i + 65536])
            except OSError:  # the server answered and closed; the answer is still to read
                break
        return [_read_response(sock, buf) for _ in range(responses)]
    finally:
        sock.close()


def _review_bytes(uid: str = "raw-1") -> bytes:
    review = captured_review()
    review["request"]["uid"] = uid
    return json.dumps(review).encode()


def _post(body: bytes, version: str = "HTTP/1.1", extra: str = "") -> bytes:
    head = (
        f"POST /mutate?timeout=10s {version}\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n{extra}\r\n"
    )
    return head.encode() + body


def test_http_1_0_request_is_answered_and_closed(server):
    (answer,) = _exchange(server, _post(_review_bytes("h10"), "HTTP/1.0"))
    assert answer.status == 200 and answer.headers["connection"] == "close"
    assert json.loads(answer.body)["response"]["uid"] == "h10"


def test_pipelined_requests_are_answered_in_order(server):
    raw = b"".join(_post(_review_bytes(f"pipe-{i}")) for i in range(5))
    raw += b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
    answers = _exchange(server, raw, responses=6)
    assert [json.loads(a.body)["response"]["uid"] for a in answers[:5]] == [f"pipe-{i}" for i in range(5)]
    assert [a.status for a in answers] == [200] * 6 and json.loads(answers[5].body) == {"status": "ok"}


def test_4gb_content_length_is_refused_without_reading(server):
    started = time.monotonic()
    head = _post(b"", extra="").replace(b"Content-Length: 0", b"Content-Length: %d" % (4 * 1024**3))
    (answer,) = _exchange(server, head + b'{"apiVersion":')
    assert answer.status == 413 and b"over the" in answer.body, answer.body
    assert time.monotonic() - started < ANSWER_SECONDS


def test_body_over_the_limit_is_refused(server):
    body = _review_bytes("big")[:-1] + b', "pad": "' + b"x" * SERVER_LIMIT + b'"}'
    (answer,) = _exchange(server, _post(body))
    assert answer.status == 413 and json.loads(answer.body)["code"] == 413


def _chunked(body: bytes, size: int = 65536) -> bytes:
    chunks = [body[i : i + size] for i in range(0, len(body), size)]
    return b"".join(b"%x\r\n%s\r\n" % (len(c), c) for c in chunks) + b"0\r\n\r\n"


CHUNKED_HEAD = (
    b"POST /mutate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
)


def test_chunked_body_over_the_limit_is_refused(server):
    # Valid JSON up to the limit and past it: cut at the limit, as werkzeug's own
    # max_content_length did for chunked bodies, it would have been parsed.
    body = _review_bytes("chunked-big")[:-1] + b', "pad": "' + b"x" * SERVER_LIMIT + b'"}'
    (answer,) = _exchange(server, CHUNKED_HEAD + _chunked(body))
    assert answer.status == 413, answer.body


def test_chunked_body_within_the_limit_is_served(server):
    (answer,) = _exchange(server, CHUNKED_HEAD + _chunked(_review_bytes("chunked"), 1000))
    assert answer.status == 200 and json.loads(answer.body)["response"]["uid"] == "chunked"


@pytest.mark.parametrize(
    "raw",
    [
        b"GARBAGE\r\n\r\n",
        b"POST /mutate HTTP/9.9\r\nHost: x\r\n\r\n",
        b"POST /mutate HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n",
        b"POST /mutate HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nabcdef",
        b"POST /mutate HTTP/1.1\r\nHost: x\r\nX-Long: " + b"a" * 20000 + b"\r\n\r\n",
        b"POST /" + b"a" * 10000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
        b"POST /mutate HTTP/1.1\r\n" + b"".join(b"X-%d: y\r\n" % i for i in range(200)) + b"\r\n",
        b"POST /mutate HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    ],
    ids=[
        "garbage",
        "http-9.9",
        "negative-length",
        "two-lengths",
        "20kb-header",
        "10kb-path",
        "200-headers",
        "bad-chunk",
    ],
)
def test_malformed_http_gets_a_4xx(server, raw):
    (answer,) = _exchange(server, raw)
    assert 400 <= answer.status < 500, (answer.status, answer.body[:200])


def test_workers_survived_the_corpus(server, workers_before):
    """Runs last in this module: the same worker processes are alive and answer."""
    assert server.worker_pids() == workers_before
    assert server.healthy()
