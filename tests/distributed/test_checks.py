"""A data-parallel fit in a group of one process: nothing to say before the first step, and no all-reduce
on the micro-batches that accumulate (each case runs in ``group_of_one_worker.py``, see why there)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

WORKER = str(Path(__file__).resolve().parent / "group_of_one_worker.py")


def _run(mode: str, tmp_path) -> dict:
    done = subprocess.run([sys.executable, WORKER, mode, str(tmp_path / "store")], capture_output=True,
                          text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_a_group_of_one_process_trains_without_a_split_warning(tmp_path):
    result = _run("split_warning", tmp_path)  # the worker turns the RuntimeWarning into an error
    assert result["step"] == result["steps_per_epoch"]


def test_every_accumulating_micro_batch_skips_the_all_reduce_the_first_one_of_a_fit_too(tmp_path):
    # the first micro-batch of a fit (after a resume, the first of the resumed run) met no DDP wrapper
    # yet and was all-reduced: avg(avg(g1) + g2), one ulp from avg(g1 + g2) (the resumed run drifted)
    result = _run("no_sync", tmp_path)
    assert result["seen"] == [False, True, False, True]  # 4 micro-batches, 2 steps: all-reduce on the stepping ones
