"""Writes tests/fixtures/golden/*.response.json from the requests beside them.

Run by hand (`python -m tests.support.golden`) only when a change of behaviour is intended,
then read the diff of the responses: they are the contract tests/admission/test_admission.py
holds to.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path

from webhook.admission.admit import admit
from webhook.admission.answer import PlainAnswers
from webhook.core.policy import default_policy

GOLDEN = Path(__file__).resolve().parents[1] / "fixtures" / "golden"


def readable(response: dict) -> dict:
    """The response with its patch decoded, so a diff of the file can be read."""
    out = dict(response["response"]) if "response" in response else dict(response)
    if "patch" in out:
        out["patch"] = json.loads(base64.b64decode(out["patch"]))
    return out


def main() -> None:
    policy = default_policy()
    for request_file in sorted(GOLDEN.glob("*.request.json")):
        review = json.loads(request_file.read_text())
        response = readable(admit(review, PlainAnswers(policy)).response)
        out = request_file.with_name(request_file.name.replace(".request.", ".response."))
        out.write_text(json.dumps(response, indent=1, sort_keys=True) + "\n")
        print(out.name)


if __name__ == "__main__":
    main()
