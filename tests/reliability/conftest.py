"""A real `gpu-rightsizer serve` shared by the tests that do not disturb it (the hostile
corpus and the security checks); tests that kill or restart workers start their own."""

from __future__ import annotations

import pytest

from tests.support.served import start_server


@pytest.fixture(scope="session")
def server(tmp_path_factory):
    live = start_server(tmp_path_factory.mktemp("webhook"), workers=2)
    yield live
    live.stop()
