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
"""

import multiprocessing
import os

bind = os.environ.get("GPU_RIGHTSIZER_BIND", "0.0.0.0:8443")
workers = int(os.environ.get("GPU_RIGHTSIZER_WORKERS", min(2, multiprocessing.cpu_count())))
worker_class = "gthread"
threads = int(os.environ.get("GPU_RIGHTSIZER_THREADS", 4))
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
# filesystem is read-only, and nothing here needs runtime worker management.
control_socket_disable = True
accesslog = None
errorlog = "-"
loglevel = os.environ.get("GPU_RIGHTSIZER_LOG_LEVEL", "info")
# TLS 1.2 is the floor (see ssl_context below); the API server speaks 1.2 and 1.3.
do_handshake_on_connect = False


def ssl_context(conf, default_ssl_context_factory):
    # gunicorn calls this for every new connection. One context per worker is built and
    # handed out, and rebuilt when the certificate changes on disk (webhook/reload.py).
    import ssl

    from webhook.reload import TLS

    def build():
        context = default_ssl_context_factory()
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        return context

    return TLS.context(conf.certfile, conf.keyfile, build)


def child_exit(server, worker):
    # A dead worker's live-gauge files are dropped; its counters stay summed in.
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)
