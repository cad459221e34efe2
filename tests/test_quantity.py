"""Quantities parse as the kubernetes client parses them, without importing the client."""

from __future__ import annotations

import subprocess
import sys
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from webhook.quantity import parse_quantity

SUFFIXES = ["", "m", "k", "M", "G", "T", "P", "E", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei", "n", "u"]


@pytest.mark.parametrize(("text", "value"), [
    ("40Gi", Decimal(40 * 2**30)), ("500m", Decimal("0.5")), ("1", Decimal(1)), ("1.5G", Decimal(1_500_000_000)),
    ("2e3", Decimal(2000)), (7, Decimal(7)),
])
def test_known_quantities(text, value):
    assert parse_quantity(text) == value


@given(st.one_of(
    st.tuples(st.decimals(min_value=0, max_value=10**6, places=3, allow_nan=False), st.sampled_from(SUFFIXES))
    .map(lambda t: f"{t[0]}{t[1]}"),
    st.text(max_size=12),
))
def test_the_same_answers_and_errors_as_the_kubernetes_package(text):
    from kubernetes.utils.quantity import parse_quantity as package_parse

    try:
        expected = package_parse(text)
    except Exception as err:  # noqa: BLE001 - whatever the package raises, we raise alike
        with pytest.raises(type(err)):
            parse_quantity(text)
    else:
        assert parse_quantity(text) == expected


def test_serving_admissions_does_not_import_the_kubernetes_client():
    code = (
        "import sys\n"
        "from webhook.app import create_app\n"
        "from webhook.commands.serve import WebhookServer\n"
        "client = create_app().test_client()\n"
        "client.post('/mutate', json={})\n"
        "print(sorted(m for m in sys.modules if m == 'kubernetes' or m.startswith('kubernetes.')))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]", done.stdout
