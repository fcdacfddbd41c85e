"""Helpers of the data-parallel tests: torchrun with two CPU processes (gloo), and a tiny recipe.

Every launch starts three interpreters (torchrun's agent and two workers), each importing torch,
so the tests share launches where they can and give each one a generous timeout: the machine is
often busy, and no test may depend on its speed.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np

import epochal

HERE = Path(__file__).parent
#: Seconds any rendezvous or collective of a test job may wait: a failure ends the job long before
#: the test's own timeout.
JOB_TIMEOUT_S = 60
LAUNCH_TIMEOUT_S = 600


def job_env(**extra: str) -> dict[str, str]:
    """The environment of a test job: this checkout's epochal, one torch thread per process."""
    src = str(Path(epochal.__file__).resolve().parents[1])
    path = os.pathsep.join([src, str(HERE), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return {**os.environ, "PYTHONPATH": path, "OMP_NUM_THREADS": "1", "EPOCHAL_DIST_TIMEOUT": str(JOB_TIMEOUT_S),
            **extra}


def torchrun_command(*args: str, nproc: int = 2) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}", *args]


def torchrun(*args: str, cwd: Path | None = None, check: bool = True, **extra_env: str) -> subprocess.CompletedProcess:
    """Run ``torchrun --standalone --nproc_per_node=2 ARGS`` to the end."""
    proc = subprocess.run(torchrun_command(*args), cwd=cwd, env=job_env(**extra_env), capture_output=True, text=True,
                          timeout=LAUNCH_TIMEOUT_S)
    if check:
        output = f"{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}"
        assert proc.returncode == 0, f"torchrun failed ({proc.returncode}):\n{output}"
    return proc


def write_table(path: Path, n: int = 90) -> Path:
    """``colour,size,weight,y``: a binary target from colour and size."""
    rng = np.random.default_rng(0)
    colour = rng.choice(["red", "green", "blue"], n)
    size, weight = rng.normal(0, 1, n), rng.normal(0, 1, n)
    target = np.where((colour == "red") | (size > 0.5), "yes", "no")
    rows = [f"{c},{s:.3f},{w:.3f},{y}" for c, s, w, y in zip(colour, size, weight, target)]
    path.write_text("\n".join(["colour,size,weight,y", *rows]) + "\n")
    return path


RECIPE = """\
name: ddp
seed: 0
epochs: 2
data: {{kind: tabular, path: {table}, target: y, valid_pct: 0.3, batch_size: 8}}
model: {{name: tabular_mlp, hidden: [16]}}
metrics: [accuracy, auroc]
optimizer: {{name: sgd, lr: 0.1, lr_scaling: linear, reference_batch_size: 8}}
callbacks:
  model_checkpoint: {{monitor: valid/accuracy}}
{extra}trainer: {{device: cpu, plots: false, log_every: 2}}
"""


