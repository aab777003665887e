#!/usr/bin/env bash
# Reproduces the static analysis of SECURITY-ANALYSIS.md: Slither in Foundry mode over contracts/
# (tests, harness and mocks filtered out), with the repository's native forge and solc shim.
#
#   scripts/slither.sh            # human-readable report + out/slither/slither.json
#   SLITHER_VENV=/path scripts/slither.sh
#
# Slither is installed into its own virtualenv (default /tmp/slither-venv), never into the
# project's .venv, and nothing is added to requirements.txt. The analysis runs on a scratch copy of
# the sources, because Slither's Foundry mode starts with `forge clean` and a forced rebuild,
# which would otherwise wipe the shared forge-out/ and forge-cache/ under concurrent test runs.
# Exit status: 0 when every High/Medium finding is one of the triaged ones listed in
# SECURITY-ANALYSIS.md, 1 when a new High/Medium finding appears, 2 when Slither cannot run.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
VENV=${SLITHER_VENV:-/tmp/slither-venv}
FORGE_BIN="$ROOT/node_modules/@foundry-rs/forge-linux-amd64/bin"
OUT="$ROOT/out/slither"
# High/Medium detectors triaged in SECURITY-ANALYSIS.md (answered, not fixed).
TRIAGED="weak-prng uninitialized-local unused-return"

if [ ! -x "$FORGE_BIN/forge" ]; then
  echo "slither.sh: native forge not found at $FORGE_BIN (run npm ci)" >&2
  exit 2
fi
if [ ! -x "$VENV/bin/slither" ]; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q --disable-pip-version-check slither-analyzer
fi

WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
cp -r "$ROOT/foundry.toml" "$ROOT/contracts" "$ROOT/interfaces" "$ROOT/bin" "$WORK/"
mkdir -p "$WORK/tests/forge"
ln -s "$ROOT/node_modules" "$WORK/node_modules"
mkdir -p "$OUT"
rm -f "$OUT/slither.json"

cd "$WORK"
set +e
PATH="$FORGE_BIN:$PATH" "$VENV/bin/slither" . \
  --filter-paths "node_modules|tests|harness|mocks" \
  --json "$OUT/slither.json" 2> "$OUT/slither.txt"
rc=$?
set -e
cat "$OUT/slither.txt"
if [ ! -s "$OUT/slither.json" ]; then
  echo "slither.sh: Slither did not produce a report (exit $rc)" >&2
  exit 2
fi

"$VENV/bin/python" - "$OUT/slither.json" "$TRIAGED" <<'PY'
import json, sys
from collections import Counter
data = json.load(open(sys.argv[1]))
triaged = set(sys.argv[2].split())
dets = (data.get("results") or {}).get("detectors", [])
by_impact = Counter(d["impact"] for d in dets)
print("\nslither summary:", ", ".join(f"{k}: {v}" for k, v in sorted(by_impact.items())) or "no findings")
new = sorted({d["check"] for d in dets if d["impact"] in ("High", "Medium") and d["check"] not in triaged})
for d in dets:
    if d["impact"] in ("High", "Medium"):
        tag = "triaged" if d["check"] in triaged else "NEW"
        print(f"  [{d['impact']}/{tag}] {d['check']}: {d['description'].splitlines()[0]}")
if new:
    print("slither.sh: new High/Medium detectors not triaged in SECURITY-ANALYSIS.md:", ", ".join(new))
    sys.exit(1)
PY
