"""Untrusted values made safe to print in messages, warnings and log lines."""

from __future__ import annotations

import json

_MAX_SHOWN = 64


def describe_value(value: object) -> str:
    """Text for any JSON value without serializing it whole: a hostile request may put a
    1,000-deep array or a 3 MB object where a string belongs (json.dumps of the former
    raised RecursionError)."""
    if isinstance(value, str):
        return value
    if value is None or isinstance(value, bool):
        return json.dumps(value)
    if isinstance(value, int):
        return str(value) if value.bit_length() <= 256 else f"(an integer of {value.bit_length()} bits)"
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, dict):
        return f"(an object of {len(value)} keys)"
    if isinstance(value, list):
        return f"(an array of {len(value)} items)"
    return f"(a {type(value).__name__})"


def quote_value(value: object, limit: int = _MAX_SHOWN) -> str:
    """A user-supplied value made safe to print: JSON-quoted (control characters and
    newlines escaped, non-ASCII as \\u escapes) and cut to ``limit`` characters."""
    text = describe_value(value)
    if len(text) > limit:
        text = text[:limit] + "..."
    return json.dumps(text, ensure_ascii=True)
