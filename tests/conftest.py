"""Fixtures shared by the unit tests; plain helpers live in support.py."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def policy():
    from webhook.core.policy import default_policy

    return default_policy()
