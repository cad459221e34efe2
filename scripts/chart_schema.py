#!/usr/bin/env python3
"""Keep charts/gpu-rightsizer/values.schema.json's `policy` equal to the policy schema.

The schema's top level (image, replicaCount, certificates, ...) is written by hand in the
JSON file; its `definitions` (every Policy* model) and `properties.policy` are generated
from the pydantic models of the policy file (webhook/core/policy.py), so `helm install/upgrade/template` refuse a policy field the server
would refuse: unknown keys, wrong types, out-of-range numbers, unknown enum values.
Checks the schema cannot express (the gpuModel is in the catalog, profiles exist, ...)
stay with the server, which refuses such a policy at start and keeps the old one on reload.

    python scripts/chart_schema.py           # rewrite the file
    python scripts/chart_schema.py --check   # exit 1 if it is stale (tests/test_chart.py runs this)
"""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SCHEMA_FILE = ROOT / "charts" / "gpu-rightsizer" / "values.schema.json"
# Generated definitions carry this prefix, so a rewrite replaces exactly them.
PREFIX = "Policy."


def policy_module():
    """The module holding PolicySpec (webhook/core/policy.py)."""
    sys.path.insert(0, str(ROOT))
    return importlib.import_module("webhook.core.policy")


def policy_schema() -> tuple[dict, dict]:
    """(the policy's schema, its definitions), draft-07 style (`definitions`, which every
    Helm 3 release's validator resolves)."""
    spec = policy_module().PolicySpec
    schema = spec.model_json_schema(by_alias=True, ref_template="#/definitions/" + PREFIX + "{model}")
    defs = {PREFIX + name: body for name, body in schema.pop("$defs", {}).items()}
    defs[PREFIX + spec.__name__] = schema
    return {"$ref": f"#/definitions/{PREFIX}{spec.__name__}"}, defs


def build(current: dict) -> dict:
    out = dict(current)
    ref, defs = policy_schema()
    kept = {k: v for k, v in (current.get("definitions") or {}).items() if not k.startswith(PREFIX)}
    out["definitions"] = {**kept, **dict(sorted(defs.items()))}
    out["properties"] = {
        **current["properties"],
        "policy": {"description": "The policy file, inline (webhook/data/default-policy.yaml by default).", **ref},
    }
    return out


def render(schema: dict) -> str:
    return json.dumps(schema, indent=2) + "\n"


def main(argv: list[str]) -> int:
    current = json.loads(SCHEMA_FILE.read_text())
    text = render(build(current))
    if "--check" in argv:
        if text != SCHEMA_FILE.read_text():
            print(f"{SCHEMA_FILE.relative_to(ROOT)} is stale: run python scripts/chart_schema.py", file=sys.stderr)
            return 1
        return 0
    SCHEMA_FILE.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
