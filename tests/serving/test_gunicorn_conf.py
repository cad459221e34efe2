"""gunicorn settings as `serve` applies them."""

from __future__ import annotations

import gc

from webhook.cli.serve import WebhookServer
from webhook.core.policy import default_policy
from webhook.serving import gunicorn_conf


def test_serve_applies_the_worker_hooks_of_the_config_module():
    server = WebhookServer({"bind": "127.0.0.1:0"}, None, default_policy())
    assert server.cfg.post_worker_init is gunicorn_conf.post_worker_init
    assert server.cfg.worker_class_str == gunicorn_conf.worker_class


def test_post_worker_init_moves_the_loaded_heap_out_of_the_collectors_walk():
    gc.unfreeze()  # as a fresh worker: nothing frozen yet
    gc.collect()
    walked = len(gc.get_objects())
    assert walked > 10_000  # pytest, the webhook package, Flask...
    try:
        gunicorn_conf.post_worker_init(None)
        assert gc.get_freeze_count() >= walked
        assert len(gc.get_objects()) < walked / 100
        later = [{"made": "after the freeze"}]
        assert any(obj is later for obj in gc.get_objects())  # still collectable
    finally:
        gc.unfreeze()
