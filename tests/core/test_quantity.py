"""Quantities parse as the kubernetes client parses them, without importing the client."""

from __future__ import annotations

import py_compile
import subprocess
import sys
import zipfile
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from kubernetes.utils.quantity import parse_quantity as package_parse_quantity

from webhook.core.quantity import parse_quantity

SUFFIXES = ["", "m", "k", "M", "G", "T", "P", "E", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei", "n", "u"]


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("40Gi", Decimal(40 * 2**30)),
        ("500m", Decimal("0.5")),
        ("1", Decimal(1)),
        ("1.5G", Decimal(1_500_000_000)),
        ("2e3", Decimal(2000)),
        (7, Decimal(7)),
    ],
)
def test_known_quantities(text, value):
    assert parse_quantity(text) == value


@given(
    st.one_of(
        st.tuples(st.decimals(min_value=0, max_value=10**6, places=3, allow_nan=False), st.sampled_from(SUFFIXES)).map(
            lambda t: f"{t[0]}{t[1]}"
        ),
        st.text(max_size=12),
    )
)
def test_the_same_answers_and_errors_as_the_kubernetes_package(text):
    try:
        expected = package_parse_quantity(text)
    except Exception as err:  # noqa: BLE001 - whatever the package raises, we raise alike
        with pytest.raises(type(err)):
            parse_quantity(text)
    else:
        # Decimal NaN is never equal to itself ("NaN", "nan" and "NAN" parse to it): the
        # same answer there is NaN from both.
        got = parse_quantity(text)
        assert got == expected or (got.is_nan() and expected.is_nan())


def test_serving_admissions_does_not_import_the_kubernetes_client():
    code = (
        "import json, sys\n"
        "from webhook.serving.app import create_app\n"
        "from webhook.cli.serve import WebhookServer\n"
        "review = json.load(open(sys.argv[1]))['review']\n"
        "answer = create_app().test_client().post('/mutate', json=review).get_json()['response']\n"
        "assert answer['allowed'] and answer.get('patch'), answer  # decided and mutated\n"
        "print(sorted(m for m in sys.modules if m == 'kubernetes' or m.startswith('kubernetes.')))\n"
    )
    captured = Path(__file__).resolve().parents[1] / "fixtures" / "admission-reviews" / "pod-create.json"
    done = subprocess.run([sys.executable, "-c", code, str(captured)], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]", done.stdout


ROOT = Path(__file__).resolve().parents[2]
FAKE_QUANTITY = "def parse_quantity(text):\n    return 'from the file ' + text\n"


def _source_layout(base: Path) -> list[Path]:
    utils = base / "kubernetes" / "utils"
    utils.mkdir(parents=True)
    (base / "kubernetes" / "__init__.py").write_text("")
    (utils / "__init__.py").write_text("")
    (utils / "quantity.py").write_text(FAKE_QUANTITY)
    return [base]


def _bytecode_only_layout(base: Path) -> list[Path]:
    _source_layout(base)
    source = base / "kubernetes" / "utils" / "quantity.py"
    py_compile.compile(str(source), cfile=str(source.with_suffix(".pyc")), doraise=True)
    source.unlink()
    return [base]


def _namespace_split_layout(base: Path) -> list[Path]:
    (base / "a" / "kubernetes" / "utils").mkdir(parents=True)  # no __init__: namespace portions
    (base / "b" / "kubernetes" / "utils").mkdir(parents=True)
    (base / "b" / "kubernetes" / "utils" / "quantity.py").write_text(FAKE_QUANTITY)
    return [base / "a", base / "b"]


def _zipped_layout(base: Path) -> list[Path]:
    archive = base / "kubernetes.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("kubernetes/__init__.py", "")
        z.writestr("kubernetes/utils/__init__.py", "")
        z.writestr("kubernetes/utils/quantity.py", FAKE_QUANTITY)
    return [archive]


@pytest.mark.parametrize(
    ("layout", "package_imported"),
    [
        (_source_layout, False),
        (_bytecode_only_layout, False),
        (_namespace_split_layout, False),
        (_zipped_layout, True),  # not a plain file: the usual import, same function
    ],
)
def test_the_installed_file_is_found_in_every_layout(tmp_path, layout, package_imported):
    # -S: no site-packages, so the layout built here is the only kubernetes there is
    # (webhook.core.quantity needs nothing but the standard library).
    places = [str(p) for p in layout(tmp_path)] + [str(ROOT)]
    code = (
        f"import sys; sys.path[:0] = {places!r}\n"
        "from webhook.core.quantity import parse_quantity\n"
        "print(parse_quantity('1Gi'), 'kubernetes' in sys.modules)\n"
    )
    done = subprocess.run([sys.executable, "-S", "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"from the file 1Gi {package_imported}"


def test_no_kubernetes_installed_is_an_import_error(tmp_path):
    code = f"import sys; sys.path[:0] = [{str(ROOT)!r}]\nimport webhook.core.quantity\n"
    done = subprocess.run([sys.executable, "-S", "-c", code], capture_output=True, text=True)
    assert done.returncode == 1 and "ModuleNotFoundError: No module named 'kubernetes'" in done.stderr
