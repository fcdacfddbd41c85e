"""Trials that train on several processes: one torchrun job per trial (``epochal tune --nproc N``).

The worker that asked for the trial samples its parameters, then starts
``torchrun --standalone --nproc_per_node=N -m epochal.tuning.ddp_trial <launch file>`` and waits,
beating the trial's heartbeat meanwhile. Every rank trains the same resolved recipe into the trial's
run folder (rank 0 alone writes it, as for ``epochal train`` under torchrun); rank 0 alone opens the
study, reports each epoch's value to the trial and asks the pruner, and its decision reaches every
rank (:class:`~epochal.tuning.pruning.OptunaPruning`), so all of them stop at the same epoch. Rank 0
then writes what the worker needs to tell the study (pruned or not, the values reported) to the
launch file's result, and the worker records the trial as it would a trial trained in its own
process. A job that fails (a rank raised, died or hung: the strategy's diagnostic names it) fails
the trial with the first error a rank printed and the path of the job's log, ``torchrun.log`` in
the trial folder.

Ctrl-C reaches torchrun too (same process group), which stops its ranks; the worker waits for it,
then fails the trial. A worker killed outright takes its job with it (the job gets SIGTERM when its
parent dies, on Linux).
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

from epochal.tuning.spec import StudySpec

__all__ = ["LAUNCH_FILE", "RESULT_FILE", "TrialJobError", "run_trial_job"]

#: Written by the worker into the trial folder, read by every rank; removed when the job ends.
LAUNCH_FILE = "trial_launch.json"
#: Written by rank 0 when training ends: ``{"pruned", "reported"}``; removed once read.
RESULT_FILE = "trial_result.json"
#: The job's output (every rank's stdout and stderr, torchrun's own), kept in the trial folder.
LOG_FILE = "torchrun.log"


class TrialJobError(RuntimeError):
    """The trial's torchrun job ended without a result (the message names the first error a rank printed)."""


def _parent_death_signal():
    """A function for ``Popen(preexec_fn=...)`` that makes Linux send the child SIGTERM when the worker
    (the thread that started it) dies; None elsewhere. The C function is looked up here, in the parent:
    between fork and exec the child only calls it (nothing that could wait on another thread's lock)."""
    if not sys.platform.startswith("linux"):
        return None
    import ctypes

    prctl = ctypes.CDLL(None, use_errno=True).prctl
    return lambda: prctl(1, signal.SIGTERM)  # 1: PR_SET_PDEATHSIG


def job_environment(spec: StudySpec) -> dict[str, str]:
    """The job's environment: the worker's, with its import path (so the ranks import what the worker
    can: callbacks registered from Python, as ``multiprocessing`` passes it to the workers), the
    worker's CPU threads shared out among the ranks and the worker's GPUs (``spec.visible_devices``)."""
    import torch

    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(p for p in sys.path if p))
    threads = spec.threads or torch.get_num_threads()
    env["OMP_NUM_THREADS"] = str(max(1, threads // spec.nproc))
    if spec.visible_devices is not None:
        env["CUDA_VISIBLE_DEVICES"] = spec.visible_devices
    return env


def run_trial_job(spec: StudySpec, trial_id: int, config: dict[str, Any], folder: Path) -> dict[str, Any]:
    """Train ``config`` into ``folder`` on ``spec.nproc`` processes; returns rank 0's result.

    Raises:
        TrialJobError: the job failed or ended without writing its result.
        KeyboardInterrupt: Ctrl-C (after the job has stopped).
    """
    from epochal.distributed.launch import torchrun_command
    from epochal.utils import write_json_atomic

    launch, result, log = folder / LAUNCH_FILE, folder / RESULT_FILE, folder / LOG_FILE
    write_json_atomic(launch, {"spec": json.loads(spec.to_json()), "trial_id": trial_id, "config": config})
    command = torchrun_command(spec.nproc, [str(launch)], module="epochal.tuning.ddp_trial")
    try:
        with open(log, "ab") as output:
            process = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT, env=job_environment(spec),
                                       preexec_fn=_parent_death_signal())
            try:
                status = process.wait()
            except BaseException:  # Ctrl-C: torchrun got it too and stops its ranks; give it time
                _stop(process)
                raise
        if status != 0 or not result.is_file():
            how = f"exit status {status}" if status >= 0 else f"signal {-status}"
            raise TrialJobError(f"the trial's torchrun job ({spec.nproc} processes) ended with {how}"
                                f"{_first_error(log)}; every rank's output: {log}")
        return json.loads(result.read_text(encoding="utf-8"))
    finally:
        launch.unlink(missing_ok=True)
        result.unlink(missing_ok=True)


def _stop(process: subprocess.Popen) -> None:
    try:
        process.wait(timeout=60)
    except subprocess.TimeoutExpired:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    except KeyboardInterrupt:  # a second Ctrl-C: do not wait any longer
        process.kill()
        process.wait()


#: A rank's uncaught exception as torch's error handler prints it: ``[rank1]: RuntimeError: ...``.
_RANK_ERROR = re.compile(r"^\[rank(\d+)\]:\s*([A-Za-z_][\w.]*(?:Error|Exception|Failure|Interrupt|Exit)\b.*)$")


def _first_error(path: Path) -> str:
    """``": rank 1: RuntimeError: ..."``: the first exception a rank printed in the job's log, or ``""``."""
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        match = _RANK_ERROR.match(line)
        if match:
            return f": rank {match[1]}: {match[2].strip()}"
    return ""


def _rank_main(launch_path: str) -> None:
    """One rank of a trial's job (``python -m epochal.tuning.ddp_trial LAUNCH_FILE`` under torchrun)."""
    from epochal import distributed
    from epochal.config.experiment import train
    from epochal.config.schema import Config
    from epochal.tuning.pruning import OptunaPruning
    from epochal.tuning.worker import register_callbacks
    from epochal.utils import write_json_atomic

    launch = Path(launch_path)
    payload = json.loads(launch.read_text(encoding="utf-8"))
    spec = StudySpec(**payload["spec"])
    register_callbacks(spec.callbacks)
    trial = None
    if distributed.is_main():  # rank 0 alone talks to the study
        from epochal.tuning._optuna import require_optuna
        from epochal.tuning.spec import load_study

        optuna = require_optuna()
        study, _ = load_study(spec)
        trial = optuna.trial.Trial(study, payload["trial_id"])
    pruning = OptunaPruning(trial, spec.monitor)
    train(Config.model_validate(payload["config"]), run_dir=launch.parent, device=spec.device, progress=False,
          callbacks=[pruning])
    if distributed.is_main():
        write_json_atomic(launch.parent / RESULT_FILE, {"pruned": pruning.pruned, "reported": pruning.reported})


if __name__ == "__main__":
    _rank_main(sys.argv[1])
