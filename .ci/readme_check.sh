#!/usr/bin/env bash
# Run README's set-up command exactly as written, in a fresh clone with a new virtual environment,
# and check that it produced a finished run folder.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
git clone -q "$repo" "$work/epochal"
cd "$work/epochal"
# the first line of the first bash block under "## Set up and run"
setup="$(awk '/^## Set up and run/{s=1} s&&/^```bash/{getline; print; exit}' README.md)"
[ -n "$setup" ] || { echo "README check: no set-up command found" >&2; exit 1; }
echo "README check: $setup"
bash -c "$setup" > "$work/setup.log" 2>&1 || { tail -50 "$work/setup.log"; exit 1; }
summary="$(ls runs/*-default/summary.json | head -1)"
python3 - "$summary" <<'PY'
import json, sys
summary = json.load(open(sys.argv[1]))
assert summary["status"] == "finished", summary["status"]
assert summary["final"]["valid/accuracy"] > 0.3, summary["final"]
print(f"README check: ok, {sys.argv[1]}: accuracy {summary['final']['valid/accuracy']:.4f}, {summary['wall_s']} s")
PY
