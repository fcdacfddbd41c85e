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
python3 - "$summary" README.md <<'PY'
# The run is deterministic: its numbers must be the ones README's results table documents for
# `epochal train` (row "`default` | `epochal train`"), within a small tolerance for another CPU.
import json, re, sys
summary = json.load(open(sys.argv[1]))
assert summary["status"] == "finished", summary["status"]
row = next(line for line in open(sys.argv[2]) if line.startswith("| `default` | `epochal train` |"))
documented = {k: float(v) for k, v in re.findall(r"(accuracy|loss) ([0-9.]+)", row)}
assert set(documented) == {"accuracy", "loss"}, row
measured = {"accuracy": summary["final"]["valid/accuracy"], "loss": summary["final"]["valid/loss"]}
tolerance = {"accuracy": 0.02, "loss": 0.05}
for key, value in documented.items():
    assert abs(measured[key] - value) <= tolerance[key], (
        f"README documents {key} {value} for `epochal train`, the run gave {measured[key]:.4f}")
print(f"README check: ok, {sys.argv[1]}: {measured} (README: {documented}), {summary['wall_s']} s")
PY
