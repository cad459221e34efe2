"""Fixtures shared by the unit tests; plain helpers live in support.py."""

from __future__ import annotations

import gc

import pytest


@pytest.fixture(autouse=True)
def _nothing_left_frozen():
    """A capacity watcher freezes the process's heap out of the garbage collector after
    each list (webhook/serving/cluster_watch.py); no test leaves that to the next."""
    yield
    if gc.get_freeze_count():
        gc.unfreeze()


@pytest.fixture(scope="session")
def policy():
    from webhook.core.policy import default_policy

    return default_policy()
