"""Parsers of the inference annotations: strict, and every failure names the annotation,
the (quoted) value and what is accepted."""

from __future__ import annotations

from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from webhook.core import annotations as ann
from webhook.core.inference import parse_model


@pytest.mark.parametrize(
    "text,tokens",
    [("8192", 8192), ("8k", 8192), ("8K", 8192), ("128k", 131072), (" 32k ", 32768), ("1", 1), ("16384k", 16777216)],
)
def test_context_length(text, tokens):
    assert ann.parse_context_length(text) == tokens


@pytest.mark.parametrize(
    "text", ["", "0", "0k", "8.5k", "8kb", "-8k", "8 k k", "16385k", "1e4", "８k", "8m", None, 8192]
)
def test_context_length_rejects(text):
    with pytest.raises(ann.InvalidAnnotation) as err:
        ann.parse_context_length(text)
    assert err.value.annotation == ann.CONTEXT_LENGTH
    assert "8k, 128k" in str(err.value)


@pytest.mark.parametrize("text,n", [("1", 1), ("4", 4), (" 256 ", 256), ("65536", 65536)])
def test_max_concurrency(text, n):
    assert ann.parse_max_concurrency(text) == n


@pytest.mark.parametrize("text", ["0", "-1", "1.0", "65537", "four", "", "4x"])
def test_max_concurrency_rejects(text):
    with pytest.raises(ann.InvalidAnnotation, match=r"max-concurrency=.*from 1 to 65536"):
        ann.parse_max_concurrency(text)


@pytest.mark.parametrize(
    "text,key", [("auto", "auto"), ("FP8", "fp8"), ("bf16", "bf16"), ("fp16", "fp16"), ("fp8_e5m2", "fp8_e5m2")]
)
def test_kv_cache_dtype(text, key):
    assert ann.parse_kv_cache_dtype(text) == key


def test_kv_cache_dtype_rejects_with_the_list():
    with pytest.raises(ann.InvalidAnnotation) as err:
        ann.parse_kv_cache_dtype("int4")
    assert 'kv-cache-dtype="int4"' in str(err.value)
    assert "auto, fp16, bf16, fp8" in str(err.value)


@pytest.mark.parametrize(
    "text,value",
    [
        ("0.9", Fraction(9, 10)),
        ("1", Fraction(1)),
        ("1.0", Fraction(1)),
        (".85", Fraction(17, 20)),
        ("0.000001", Fraction(1, 10**6)),
    ],
)
def test_utilization(text, value):
    assert ann.parse_utilization(text) == value


@pytest.mark.parametrize("text", ["0", "0.0", "1.01", "2", "-0.5", "90%", "nan", "inf", "0.9.1", "1e-1", "0.0000001"])
def test_utilization_rejects(text):
    with pytest.raises(ann.InvalidAnnotation, match="greater than 0 and at most 1"):
        ann.parse_utilization(text)


def test_architecture():
    assert ann.parse_architecture("layers=32,kv-heads=8,head-dim=128") == {"layers": 32, "kv-heads": 8, "head-dim": 128}
    assert ann.parse_architecture(" head-dim = 64 , LAYERS=16,kv-heads=8") == {
        "layers": 16,
        "kv-heads": 8,
        "head-dim": 64,
    }


@pytest.mark.parametrize(
    "text",
    [
        "layers=32,kv-heads=8",  # missing key
        "layers=32,kv-heads=8,head-dim=128,layers=32",  # repeated
        "layers=32,kv-heads=8,head-dim=128,heads=32",  # unknown
        "layers=0,kv-heads=8,head-dim=128",
        "layers=32,kv-heads=8,head-dim=4097",
        "layers=32;kv-heads=8;head-dim=128",
        "layers=3.5,kv-heads=8,head-dim=128",
        "layers=32,kv-heads=8,head-dim=",
        "layers=٣٢,kv-heads=8,head-dim=128",  # non-ASCII digits
        "",
    ],
)
def test_architecture_rejects(text):
    with pytest.raises(ann.InvalidAnnotation) as err:
        ann.parse_architecture(text)
    assert err.value.annotation == ann.ARCHITECTURE
    assert "layers=N,kv-heads=N,head-dim=N" in str(err.value)


def test_model_rejects_with_the_table_and_a_safe_echo():
    with pytest.raises(ann.InvalidAnnotation) as err:
        parse_model("llama\n-forged: log line" + "x" * 200)
    message = str(err.value)
    assert "\n" not in message and "\\n" in message
    assert "llama-3.1-8b" in message and "phi-3-medium" in message
    assert len(message) < 700


PARSERS = [
    ann.parse_context_length,
    ann.parse_max_concurrency,
    ann.parse_kv_cache_dtype,
    ann.parse_utilization,
    ann.parse_architecture,
    parse_model,
]


@given(st.sampled_from(PARSERS), st.one_of(st.text(max_size=80), st.integers(), st.none(), st.floats()))
def test_parsers_raise_only_invalid_annotation(parser, value):
    try:
        parser(value)
    except ann.InvalidAnnotation as err:
        assert err.annotation.startswith(ann.PREFIX)
        assert "\n" not in str(err)


def test_model_is_a_sizing_annotation():
    assert ann.MODEL in ann.SIZING_ANNOTATIONS
