"""gunicorn settings for `gpu-rightsizer serve`.

Why these values (see README, "Performance" and "Failure modes"):
- gthread workers keep HTTP/1.1 connections alive. kube-apiserver reuses keep-alive
  connections to webhooks (kubernetes/kubernetes#82090); gunicorn's sync worker closes
  each one, so every admission would pay a new TLS handshake.
- keepalive is longer than the API server's idle timeout (Go's http.Transport: 90 s), so
  the client, not us, closes an idle connection. A server that closes it just as the API
  server reuses it fails that admission with EOF, and the API server does not retry
  (knative/pkg#1509).
- timeout: a worker silent for this long is killed and replaced; the API server's own
  webhook timeout (timeoutSeconds, at most 30 s) is shorter.
- REQUEST_DEADLINE (webhook/serving/worker.py, 3 s): a thread that has served one request for
  this long has its connection shut down, so slow clients cannot hold every thread.
- post_worker_init freezes what the worker has loaded out of the garbage collector's
  reach (below).
"""

import gc

from webhook import settings

# No `bind` here: `serve` always binds --host:--port (webhook/settings.py).
workers = settings.workers()
# gthread plus a per-request deadline against slow clients (webhook/serving/worker.py).
worker_class = "webhook.serving.worker.DeadlineThreadWorker"
# Threads wait on sockets, not on the CPU (a decision takes well under a millisecond), so
# many are cheap; each slow client holds one for up to REQUEST_DEADLINE (webhook/serving/worker.py).
# With 4, 20 connections sending a byte a second delayed a real request by 13 s; with 16
# (32 per 2 workers) they did not delay it at all (tests/reliability/test_slow_clients.py).
threads = settings.threads()
worker_connections = 1000
keepalive = 120
timeout = 30
graceful_timeout = 20
# Request-line and header bounds: an AdmissionReview request is one short line and a
# handful of headers.
limit_request_line = 4094
limit_request_fields = 50
limit_request_field_size = 8190
# gunicorn >= 25.1 opens a control socket under $HOME by default; the container's root
# filesystem is read-only, nothing here needs runtime worker management, and it would be
# one more way in (tests/reliability/test_security.py checks only the TLS port listens).
control_socket_disable = True
accesslog = None
errorlog = "-"
loglevel = settings.log_level()
# TLS 1.2 is the floor (see ssl_context below); the API server speaks 1.2 and 1.3.
do_handshake_on_connect = False


def ssl_context(conf, default_ssl_context_factory):
    # gunicorn calls this for every new connection. One context per worker is built and
    # handed out, and rebuilt when the certificate changes on disk (webhook/serving/tls.py).
    import ssl

    from webhook.serving.tls import TLS

    def build():
        context = default_ssl_context_factory()
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        return context

    return TLS.context(conf.certfile, conf.keyfile, build)


def post_worker_init(worker):
    # Called once the worker has loaded the app. The modules, Flask, pydantic, the policy
    # and the catalog are ~44,000 objects that live as long as the worker; a full
    # collection walked them all with the GIL held, 19-20 ms (30-40 ms while the
    # kubernetes client was imported too) in which no request of the worker moved
    # (bench/bench_gc.py). Frozen, they are never walked again: a full collection takes
    # under 0.5 ms. What requests and the decision memo create stays collectable.
    gc.freeze()


def child_exit(server, worker):
    # A dead worker's live-gauge files are dropped; its counters stay summed in.
    if settings.metrics_dir():
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)
