"""Workers: processes that take trials from a study until it holds ``n_trials``, and their supervisor.

A worker repeats: fail the trials of dead workers; under the study folder's lock, count the study's
trials and stop at ``n_trials``, else ask for the next one (so workers of one machine never start
more than ``n_trials`` between them); run it (:func:`~epochal.tuning.trial.run_trial`). Trials run
inside the worker process, one after the other: a trial costs no interpreter start-up and no
re-import of torch, and a crash that kills the process (out of memory, a segfault, SIGKILL) takes only
that worker's current trial down, which the supervisor then records as failed.

``--workers K`` starts K such processes (``multiprocessing``'s *spawn*: a fresh interpreter with the
parent's import path, safe with CUDA). The supervisor waits for them, fails the running trial of a
worker that died and starts a new worker in its place while the study still lacks trials (a worker
that dies before finishing any trial is not restarted, so a broken set-up does not loop).
"""

from __future__ import annotations

import gc
import importlib
import multiprocessing
import multiprocessing.connection
import os
import socket
import sys
import warnings
from dataclasses import replace

from epochal.tuning.spec import StudySpec, load_study
from epochal.tuning.storage import WORKER_ATTR, AskLock, Heartbeat, fail_dead_trials, worker_identity
from epochal.tuning.trial import GridExhausted, run_trial

__all__ = ["process_main", "register_callbacks", "run_worker", "supervise"]


def run_worker(spec: StudySpec, index: int = 0) -> int:
    """Run trials of the study until it holds ``spec.n_trials`` (in any state); returns how many ran here.

    Args:
        spec: the study.
        index: the worker's number (its sampler is seeded ``spec.seed + index``).
    """
    study, storage = load_study(spec, index)
    space = spec.space_object()
    ran = 0
    while True:
        fail_dead_trials(study, spec.grace_period)
        with AskLock(spec.study_dir):
            if len(study.get_trials(deepcopy=False)) >= spec.n_trials:
                return ran
            with warnings.catch_warnings():  # "heartbeat is meant for Study.optimize": this loop beats it itself
                warnings.simplefilter("ignore", UserWarning)
                trial = study.ask()
            trial.set_user_attr(WORKER_ATTR, worker_identity())
            Heartbeat(storage, trial._trial_id, spec.heartbeat_interval).beat()  # stale from now on if we die
        try:
            run_trial(study, storage, spec, space, trial)
        except GridExhausted:
            return ran + 1
        ran += 1
        gc.collect()  # the trial's model, optimizer and loaders go before the next trial's are built


def register_callbacks(callbacks: dict[str, str]) -> None:
    """Register ``name -> "module:qualname"`` callbacks that are not registered in this process yet."""
    from epochal.config.builders import callback_registry, register_callback

    known = callback_registry()
    for name, where in callbacks.items():
        if name in known:
            continue
        module_name, _, qualname = where.partition(":")
        if module_name == "__main__" and "__mp_main__" in sys.modules:  # the parent's script, under spawn
            module_name = "__mp_main__"
        try:
            obj = importlib.import_module(module_name)
            for part in qualname.split("."):
                obj = getattr(obj, part)
        except (ImportError, AttributeError) as exc:
            warnings.warn(f"callback {name!r} ({where}) cannot be imported in a worker: {exc}", stacklevel=2)
            continue
        register_callback(name, obj)


def process_main(spec_json: str, index: int) -> None:
    """Entry point of a worker process: stdout joins stderr (the command's stdout stays clean for ``--json``)."""
    sys.stdout.flush()
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    spec = StudySpec.from_json(spec_json)
    register_callbacks(spec.callbacks)
    if spec.threads:
        import torch

        torch.set_num_threads(spec.threads)
    try:
        run_worker(spec, index)
    except KeyboardInterrupt:
        sys.exit(130)


def _worker_spec(spec: StudySpec, index: int, workers: int) -> StudySpec:
    """Per-worker settings: a GPU each when there are several (``nproc`` GPUs each when trials train on
    several processes), and a share of the CPU threads."""
    import torch

    from epochal.config.experiment import resolve_device

    device = resolve_device(spec.device or spec.recipe.get("trainer", {}).get("device"))
    count = torch.cuda.device_count() if device == "cuda" else 0
    if count > 1 and spec.nproc > 1:  # the worker's trial jobs see their own nproc GPUs (shared when too few)
        gpus = [str((index * spec.nproc + k) % count) for k in range(spec.nproc)]
        return replace(spec, device="cuda", visible_devices=",".join(gpus))
    if count > 1:
        return replace(spec, device=f"cuda:{index % count}")
    if device == "cpu" and spec.threads is None:
        return replace(spec, threads=max(1, torch.get_num_threads() // workers))
    return spec


def supervise(spec: StudySpec, workers: int) -> dict[str, int]:
    """Run ``workers`` worker processes until the study is done; returns ``{"started", "died"}``.

    A worker that exits abnormally has its running trial failed at once; it is replaced while the
    study lacks trials, if it had run at least one.
    """
    context = multiprocessing.get_context("spawn")
    study, _ = load_study(spec)
    host = socket.gethostname()
    counts = {"started": 0, "died": 0}

    def start(index: int):
        process = context.Process(target=process_main, args=(_worker_spec(spec, index, workers).to_json(), index),
                                  name=f"epochal-tune-{index}")
        process.start()
        counts["started"] += 1
        return process

    running = {index: start(index) for index in range(workers)}
    try:
        while running:
            ended = multiprocessing.connection.wait([p.sentinel for p in running.values()])
            for index, process in list(running.items()):
                if process.sentinel not in ended:
                    continue
                process.join()
                del running[index]
                if process.exitcode != 0 and _replace(study, spec, process, host, counts):
                    running[index] = start(index)
    except KeyboardInterrupt:
        for process in running.values():
            process.join(timeout=30)  # they got Ctrl-C too and fail their own trials
            if process.is_alive():
                process.terminate()
                process.join()
            fail_dead_trials(study, spec.grace_period, owner={"host": host, "pid": process.pid})
        raise
    return counts


def _replace(study, spec: StudySpec, process, host: str, counts: dict[str, int]) -> bool:
    """Fail the dead worker's trial; whether to start another worker in its place."""
    counts["died"] += 1
    owner = {"host": host, "pid": process.pid}
    failed = fail_dead_trials(study, spec.grace_period, owner=owner)
    how = f"signal {-process.exitcode}" if process.exitcode < 0 else f"exit code {process.exitcode}"
    print(f"[{spec.name}] worker {process.name} (pid {process.pid}) ended with {how}; "
          f"trial(s) {failed or 'none'} recorded as failed", file=sys.stderr, flush=True)
    trials = study.get_trials(deepcopy=False)
    ran_any = any(t.user_attrs.get(WORKER_ATTR) == owner for t in trials)
    return ran_any and len(trials) < spec.n_trials
