"""The parts of trials on several processes that need no job: GPUs per worker, threads per rank, refusals.

The whole path (torchrun jobs of 2 gloo processes, rank 0 pruning for both, a failing job) is
``test_study.py::test_trials_that_train_on_two_processes_each``.
"""

from __future__ import annotations

import sys

import pytest
import torch

from epochal.config import ConfigError
from epochal.distributed.launch import torchrun_command
from epochal.tuning.ddp_trial import job_environment
from epochal.tuning.spec import StudySpec
from epochal.tuning.worker import _worker_spec


def _spec(**kwargs) -> StudySpec:
    return StudySpec(name="s", study_dir="/tmp/s", storage="sqlite:////tmp/s/study.db", recipe={"trainer": {}},
                     space={}, space_source="space.yaml", n_trials=4, monitor="valid/loss", direction="minimize",
                     **kwargs)


@pytest.fixture
def four_gpus(monkeypatch):
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 4)
    monkeypatch.setattr("epochal.config.experiment.resolve_device", lambda chosen: chosen or "cuda")


def test_each_worker_s_jobs_see_their_own_gpus(four_gpus):
    spec = _spec(device="cuda", nproc=2)
    assert [_worker_spec(spec, i, 2).visible_devices for i in range(2)] == ["0,1", "2,3"]
    assert {_worker_spec(spec, i, 2).device for i in range(2)} == {"cuda"}  # each rank takes cuda:LOCAL_RANK
    assert _worker_spec(spec, 2, 3).visible_devices == "0,1"  # too few GPUs: they wrap around
    single = _spec(device="cuda")
    assert [_worker_spec(single, i, 2).device for i in range(2)] == ["cuda:0", "cuda:1"]  # unchanged for nproc=1
    assert _worker_spec(single, 1, 2).visible_devices is None


def test_the_worker_s_threads_are_shared_out_among_its_ranks(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "7")
    env = job_environment(_spec(threads=4, nproc=2))
    assert env["OMP_NUM_THREADS"] == "2" and env["CUDA_VISIBLE_DEVICES"] == "7"  # the worker's own GPUs stay
    assert job_environment(_spec(threads=1, nproc=2))["OMP_NUM_THREADS"] == "1"
    assert job_environment(_spec(nproc=2, visible_devices="2,3"))["CUDA_VISIBLE_DEVICES"] == "2,3"
    assert [p for p in sys.path if p][0] in job_environment(_spec(nproc=2))["PYTHONPATH"].split(":")


def test_the_job_runs_the_rank_entry_point_under_torchrun():
    command = torchrun_command(2, ["launch.json"], module="epochal.tuning.ddp_trial")
    assert command[1:] == ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                           "-m", "epochal.tuning.ddp_trial", "launch.json"]
    assert torchrun_command(3, ["train", "default"])[-3:] == ["epochal", "train", "default"]


def test_more_processes_per_trial_than_gpus_and_bad_values_are_refused(four_gpus, tmp_path):
    from epochal.tuning import tune

    with pytest.raises(ConfigError, match=r"nproc=8: each trial trains on 8 GPUs, and this machine has 4"):
        tune("default", {"params": {"optimizer.lr": {"type": "float", "low": 0.01, "high": 0.1}}}, trials=1,
             nproc=8, device="cuda", out=tmp_path)
    for bad in (0, True, 1.5):
        with pytest.raises(ValueError, match="nproc must be an integer >= 1"):
            tune("default", {"params": {}}, trials=1, nproc=bad, out=tmp_path)
    assert not any(tmp_path.iterdir())  # refused before any study folder was made


def test_a_search_started_under_torchrun_is_refused(monkeypatch, tmp_path):
    from epochal.tuning import tune

    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(ConfigError, match="not under torchrun: it starts a torchrun job per trial itself with --nproc"):
        tune("default", {"params": {}}, trials=1, out=tmp_path)
    assert not any(tmp_path.iterdir())


def test_a_failed_job_is_explained_by_the_first_error_a_rank_printed(tmp_path):
    from epochal.tuning.ddp_trial import _first_error

    log = tmp_path / "torchrun.log"
    log.write_text("[rank1]: Traceback (most recent call last):\n[rank1]:   File \"x.py\", line 1\n"
                   "[rank1]: ValueError: data.path 'imgs' does not exist\n[rank0]: RankFailure: rank 1 stopped\n"
                   "torch.distributed.elastic.multiprocessing.errors.ChildFailedError: \n")
    assert _first_error(log) == ": rank 1: ValueError: data.path 'imgs' does not exist"
    log.write_text("killed\n")
    assert _first_error(log) == ""


@pytest.mark.skipif(not hasattr(__import__("os"), "pidfd_open"), reason="the parent-death signal is Linux's")
def test_a_job_ends_when_the_worker_that_started_it_is_killed(tmp_path):
    import os
    import select
    import subprocess

    parent = tmp_path / "worker.py"
    parent.write_text(  # the worker and its job both wait for a signal, for ever
        "import signal, subprocess, sys\n"
        "from epochal.tuning.ddp_trial import _parent_death_signal\n"
        "job = subprocess.Popen([sys.executable, '-c', 'import signal; signal.pause()'], "
        "preexec_fn=_parent_death_signal())\n"
        "print(job.pid, flush=True)\n"
        "signal.pause()\n")
    worker = subprocess.Popen([sys.executable, str(parent)], stdout=subprocess.PIPE, text=True)
    job = os.pidfd_open(int(worker.stdout.readline()))  # readable once the job has ended (a zombie counts)
    try:
        worker.kill()  # SIGKILL: the worker can do nothing on its way out
        worker.wait()
        ended, _, _ = select.select([job], [], [], 60)
    finally:
        os.close(job)
    assert ended, "the job outlived its worker"
