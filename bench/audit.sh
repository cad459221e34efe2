#!/bin/sh
# Audit the locked dependencies with pip-audit: bench/audit.sh [extra pip-audit flags]
#
# The lock is what the project's virtualenv resolved (`pip freeze`, minus the project
# itself), written to bench/results/requirements-lock.txt. pip-audit needs a
# vulnerability database on the network (OSV or PyPI's JSON API). On machines without
# it, pip-audit can still print "No known vulnerabilities found" after skipping every
# package ("Dependency not found on PyPI and could not be audited"): this script counts
# the skipped packages and fails unless every one of them was audited.
set -eu
cd "$(dirname "$0")/.."
PY="${PYTHON:-.venv/bin/python}"
mkdir -p bench/results
LOCK=bench/results/requirements-lock.txt
"$PY" -m pip freeze --exclude-editable | grep -v '^gpu-rightsizer' > "$LOCK"
echo "audit: $(wc -l < "$LOCK") locked packages in $LOCK"
"$PY" -m pip_audit --version >/dev/null 2>&1 || "$PY" -m pip install -q 'pip-audit>=2.7,<3'
OUT=bench/results/pip-audit.json
set +e
"$PY" -m pip_audit --requirement "$LOCK" --no-deps --disable-pip --format json --output "$OUT" --progress-spinner off "$@"
STATUS=$?
set -e
set +e
"$PY" - "$OUT" "$LOCK" <<'PYEOF'
import json, sys
out, lock = sys.argv[1], sys.argv[2]
try:
    report = json.load(open(out))
except (OSError, ValueError):
    print("audit: pip-audit wrote no report (no network?): NOTHING WAS AUDITED")
    sys.exit(2)
deps = report.get("dependencies", [])
skipped = [d for d in deps if d.get("skip_reason")]
vulns = [(d["name"], d["version"], v["id"]) for d in deps for v in d.get("vulns", [])]
locked = sum(1 for line in open(lock) if line.strip() and not line.startswith("#"))
print(f"audit: {len(deps) - len(skipped)} of {locked} packages audited, {len(skipped)} skipped, {len(vulns)} known vulnerabilities")
for d in skipped[:10]:
    print(f"  skipped {d['name']} {d.get('version', '')}: {d['skip_reason']}")
for name, version, vid in vulns:
    print(f"  VULNERABLE {name} {version}: {vid}")
sys.exit(1 if vulns else 2 if skipped or not deps else 0)
PYEOF
RESULT=$?
exit $(( RESULT != 0 ? RESULT : STATUS ))
