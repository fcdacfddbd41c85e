"""A snapshot ensemble from one run: SGDR cycles, a checkpoint at the end of each, their ensemble evaluated.

Huang et al., *Snapshot Ensembles: Train 1, get M for free* (2017): three cosine cycles on the bundled
cifar10-mini, the ``snapshot_ensemble`` callback writing ``checkpoints/snapshot_<k>.pt`` at the end of
each cycle, then the three snapshots evaluated alone and together (equal weights, and weights fitted
on the held-out log loss), which is what ``epochal eval RUN --snapshots [--weights fit]`` prints.

    python examples/snapshot_ensemble.py [WORKDIR]     # trains into WORKDIR/runs (default: ./runs)
"""

from __future__ import annotations

import sys
from pathlib import Path

from epochal.config import load_config
from epochal.config.ensembles import evaluate_ensemble
from epochal.config.experiment import train


def main(workdir: Path) -> dict:
    config = load_config("default", [
        "epochs=3",
        "model.widths=[16,32,64]",
        "data.image_size=16",                                       # small and fast: a CPU example
        f"data.options.cache_dir={workdir / 'cache'}",              # packed once, reused by the evaluations
        "loss.label_smoothing=0.0",                                 # the reported loss is the log loss
        "phases={schedule: sgdr, cycle_len: 1, n_cycles: 3}",       # three 1-epoch cosine cycles
        "callbacks.snapshot_ensemble={}",                           # a snapshot at the end of each cycle
        "callbacks.progress_bar=null",
    ])
    run = train(config, out=workdir / "runs", progress=False)["run_dir"]
    equal = evaluate_ensemble([run], snapshots=True, device="cpu")
    fitted = evaluate_ensemble([run], snapshots=True, weights="fit", device="cpu")
    for member in equal["members"]:
        print(f"{Path(member['checkpoint']).name}: accuracy {member['metrics']['accuracy']:.3f}  "
              f"log loss {member['metrics']['loss']:.3f}")
    print(f"ensemble (equal):  accuracy {equal['metrics']['accuracy']:.3f}  log loss {equal['metrics']['loss']:.3f}")
    print(f"ensemble (fitted {[round(w, 2) for w in fitted['weights']]}): accuracy "
          f"{fitted['metrics']['accuracy']:.3f}  log loss {fitted['metrics']['loss']:.3f}")
    losses = [m["metrics"]["loss"] for m in equal["members"]]
    assert len(losses) == 3, equal["members"]
    # the log loss of a mixture is never above the mean of its members' (Jensen), and fitting can only help
    assert equal["metrics"]["loss"] <= sum(losses) / 3 + 1e-6, (equal["metrics"], losses)
    assert fitted["metrics"]["loss"] <= equal["metrics"]["loss"] + 1e-6
    assert equal["metrics"]["accuracy"] > 0.2, equal["metrics"]                 # 10 classes: chance is 0.10
    return {"equal": equal, "fitted": fitted}


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path("."))
