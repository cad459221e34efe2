"""webhook/settings.py is the one place the environment is read, and every variable it
reads is documented."""

from __future__ import annotations

import re
from pathlib import Path

from webhook import settings

ROOT = Path(__file__).resolve().parents[1]
SOURCES = sorted((ROOT / "webhook").rglob("*.py"))


def test_only_settings_reads_the_environment():
    readers = [
        str(path.relative_to(ROOT))
        for path in SOURCES
        if path.name != "settings.py"
        and re.search(r"os\.environ\.get|os\.getenv|os\.environ\[[^]]*\](?!\s*=)", path.read_text())
    ]
    assert readers == []


def test_every_variable_named_in_the_package_is_a_setting():
    named = set()
    for path in SOURCES:
        if path.name != "settings.py":
            named |= set(re.findall(r"GPU_RIGHTSIZER_[A-Z_]+", path.read_text()))
    assert named <= {v.name for v in settings.VARIABLES}
    # It never took effect (`serve` always binds --host:--port) and was removed.
    assert "GPU_RIGHTSIZER_BIND" not in named | {v.name for v in settings.VARIABLES}


def test_defaults(monkeypatch):
    for variable in settings.VARIABLES:
        monkeypatch.delenv(variable.name, raising=False)
    assert settings.policy_path() is None
    assert (settings.host(), settings.port(), settings.threads(), settings.log_level()) == ("0.0.0.0", 8443, 16, "info")
    assert (settings.request_deadline(), settings.reload_seconds()) == (3.0, 2.0)
    assert 1 <= settings.workers() <= 2
    monkeypatch.setenv(settings.THREADS, "4")
    monkeypatch.setenv(settings.RELOAD_SECONDS, "0.5")
    assert (settings.threads(), settings.reload_seconds()) == (4, 0.5)


def test_every_variable_is_documented_in_the_development_page():
    page = (ROOT / "docs" / "development.md").read_text()
    rows = set(re.findall(r"^\| `([A-Z_]+)` \| ([^|]*) \| ([^|]*) \|$", page, re.M))
    assert rows == {(v.name, v.default, v.meaning) for v in settings.VARIABLES}
