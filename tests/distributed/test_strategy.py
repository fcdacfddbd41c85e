"""DataParallel on two CPU processes (torchrun, gloo) against one process: weights, exact evaluation, resume.

One uninterrupted two-process run (:func:`ddp_run`) serves the first tests: two ranks with batch B
each take the same steps as one process with batch 2B (the union of the ranks' batches is the
single process's batch: epochal's sampler deals one seeded permutation to the ranks in turn), and
its validation on 101 samples split 51/50 gives exactly the accuracy and AUROC one process computes
for the same weights. The kill test stops a second run with SIGKILL and resumes it on two processes.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys

import ddp_worker as worker
import pytest
import torch
from ddp_helpers import HERE, LAUNCH_TIMEOUT_S, job_env, torchrun, torchrun_command

WORKER = str(HERE / "ddp_worker.py")


@pytest.fixture(scope="module")
def ddp_run(tmp_path_factory):
    """The uninterrupted two-process run: its folder and each rank's final weights and history."""
    root = tmp_path_factory.mktemp("ddp")
    torchrun(WORKER, "full", str(root / "run"), str(root / "full"))
    ranks = [torch.load(root / f"full.rank{r}.pt", weights_only=True) for r in range(2)]
    return root / "run", ranks


def single_process(batch_size: int):
    learner = worker.learner(batch_size, rank=0, world_size=1)
    learner.fit(worker.phases())
    return learner


def test_two_ranks_of_batch_b_take_the_steps_of_one_process_of_batch_2b(ddp_run):
    _, (rank0, rank1) = ddp_run
    for key in rank0["weights"]:  # DDP keeps the replicas identical
        assert torch.equal(rank0["weights"][key], rank1["weights"][key]), key
    assert rank0["history"] == rank1["history"]  # every rank holds rank 0's record
    alone = single_process(2 * worker.PER_RANK)
    for key, value in alone.model.state_dict().items():
        torch.testing.assert_close(rank0["weights"][key], value, rtol=0, atol=1e-6)
    assert [r["step"] for r in rank0["history"]] == [r["step"] for r in alone.history] == [3, 6, 9]
    for ddp, one in zip(rank0["history"], alone.history):
        assert ddp["train/loss"] == pytest.approx(one["train/loss"], rel=1e-5)  # the loss of both ranks' samples


def test_uneven_validation_counts_every_sample_once(ddp_run):
    _, (rank0, _) = ddp_run
    assert worker.dataset()[1][1].shape[0] == 101  # 51 samples on rank 0, 50 on rank 1
    alone = worker.learner(2 * worker.PER_RANK, rank=0, world_size=1)
    alone.model.load_state_dict(rank0["weights"])
    metrics = alone.validate()
    final = rank0["history"][-1]
    assert final["valid/accuracy"] == metrics["valid/accuracy"]  # sums and counts: exactly
    assert final["valid/auroc"] == metrics["valid/auroc"]  # every rank's scores gathered: exactly
    assert final["valid/loss"] == pytest.approx(metrics["valid/loss"], rel=1e-6)
    correct = round(final["valid/accuracy"] * 101)
    assert final["valid/accuracy"] == correct / 101  # out of 101, not of a padded 102


def test_checkpoint_holds_the_bare_model_and_loads_into_one_process(ddp_run):
    run_dir, (rank0, _) = ddp_run
    checkpoint = torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)
    assert not any(key.startswith("module.") for key in checkpoint["model"])
    assert len(checkpoint["rng_ranks"]) == 2 and checkpoint["state"]["step"] == 9
    alone = worker.learner(2 * worker.PER_RANK, rank=0, world_size=1)
    alone.load_checkpoint(run_dir / "checkpoints" / "last.pt", weights_only=True)
    for key, value in alone.model.state_dict().items():
        assert torch.equal(value, rank0["weights"][key]), key
    # (tensorboard/ only with the TensorBoard callback)
    files = sorted(p.name for p in run_dir.iterdir())
    assert files == [".lock", "checkpoints", "metrics.jsonl", "plots", "summary.json"]
    assert len((run_dir / "metrics.jsonl").read_text().splitlines()) == 3  # one writer: one line per epoch


def _crash(run_dir, stop_step: int) -> None:
    """Start the two-process run and SIGKILL both workers once they passed the checkpoint of ``stop_step``."""
    job = subprocess.Popen(torchrun_command(WORKER, "crash", str(run_dir), str(run_dir.parent / "never"),
                                            str(stop_step)),
                           env=job_env(), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    workers: dict[str, int] = {}
    try:
        for line in job.stdout:
            # the two ranks share one pipe: their lines may run together ("READY 0 11READY 1 12")
            for rank, pid in re.findall(r"READY (\d+) (\d+)", line):
                workers[rank] = int(pid)
            if len(workers) == 2:
                break
        assert sorted(workers) == ["0", "1"], "the workers ended before the step"
        for pid in workers.values():
            os.kill(pid, signal.SIGKILL)
        assert job.wait(timeout=LAUNCH_TIMEOUT_S) != 0  # torchrun reaps the killed workers and fails
    finally:
        if job.poll() is None:  # something went wrong before the kill: torchrun stops its workers
            job.terminate()
            job.wait(timeout=LAUNCH_TIMEOUT_S)


@pytest.mark.slow  # two more torchrun launches: about a minute on a busy 2-core machine
def test_sigkilled_two_process_run_resumes_to_the_uninterrupted_weights(ddp_run, tmp_path):
    _, (uninterrupted, _) = ddp_run
    crashed = tmp_path / "crash"
    _crash(crashed, stop_step=4)
    checkpoint = torch.load(crashed / "checkpoints" / "last.pt", weights_only=True)
    assert checkpoint["state"]["step"] == 4 and checkpoint["state"]["epoch"] == 1 and checkpoint["state"]["batch"] == 2
    assert not (tmp_path / "never.rank0.pt").exists()
    torchrun(WORKER, "resume", str(crashed), str(tmp_path / "resumed"))
    for rank in range(2):
        resumed = torch.load(tmp_path / f"resumed.rank{rank}.pt", weights_only=True)
        # bit for bit: the resumed run's first micro-batch skips the all-reduce like every accumulating one
        # (it was all-reduced when the wrapper did not exist yet: weights 1.5e-8 apart)
        for key, value in uninterrupted["weights"].items():
            assert torch.equal(resumed["weights"][key], value), f"rank {rank} {key}"
        assert [(r["epoch"], r["step"], r["lr"]) for r in resumed["history"]] == \
            [(r["epoch"], r["step"], r["lr"]) for r in uninterrupted["history"]]
        for ours, theirs in zip(resumed["history"], uninterrupted["history"]):
            assert ours == pytest.approx(theirs, rel=1e-6)
    lines = (crashed / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 3


def test_strategy_of_a_single_process_is_trivial():
    from epochal.distributed import Strategy, auto_strategy

    strategy = auto_strategy("cpu")
    assert type(strategy) is Strategy and strategy.is_main and strategy.world.world_size == 1
    tensor = torch.ones(2)
    assert strategy.sum(tensor) is tensor and strategy.from_main({"a": 1}) == {"a": 1}
    assert strategy.agree(True) and strategy.gather_objects(3) == [3]
    assert strategy.describe() is None


if __name__ == "__main__":
    sys.exit(pytest.main([__file__]))
