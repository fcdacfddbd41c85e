"""Checkpoint I/O: atomic writes, clear errors for bad files, RNG capture, seeding, safetensors."""

import os
import pickle
import random

import numpy as np
import pytest
import torch
from torch import nn

from epochal.data.base import ArrayLoader
from epochal.learner import Learner
from epochal.state import (
    CheckpointError,
    atomic_write_bytes,
    capture_rng,
    load_checkpoint,
    restore_rng,
    save_checkpoint,
    seed_everything,
)


def test_save_and_load_round_trip(tmp_path):
    path = save_checkpoint(tmp_path / "c.pt", {"model": {"w": torch.arange(3.0)}, "step": 5})
    payload = load_checkpoint(path)
    assert payload["step"] == 5 and torch.equal(payload["model"]["w"], torch.arange(3.0))
    assert [p.name for p in tmp_path.iterdir()] == ["c.pt"]  # no temporary files left behind


def test_failed_write_keeps_the_previous_file(tmp_path):
    path = save_checkpoint(tmp_path / "c.pt", {"step": 1})
    before = path.read_bytes()

    def broken(handle):
        handle.write(b"partial bytes")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic_write_bytes(path, broken)
    assert path.read_bytes() == before
    assert load_checkpoint(path)["step"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.pt"]


def test_truncated_checkpoint_gives_a_clear_error(tmp_path):
    path = save_checkpoint(tmp_path / "c.pt", {"model": {"w": torch.randn(1000)}})
    path.write_bytes(path.read_bytes()[:500])
    with pytest.raises(CheckpointError, match="truncated, corrupt"):
        load_checkpoint(path)


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_foreign_files_are_rejected(tmp_path):
    plain = tmp_path / "weights.pt"
    torch.save({"w": torch.zeros(2)}, plain)
    with pytest.raises(CheckpointError, match="not an epochal checkpoint"):
        load_checkpoint(plain)

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    evil = tmp_path / "evil.pt"
    evil.write_bytes(pickle.dumps({"format": "epochal-checkpoint", "x": Evil()}))
    with pytest.raises(CheckpointError):
        load_checkpoint(evil)
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "missing.pt")
    (tmp_path / "text.pt").write_text("hello")
    with pytest.raises(CheckpointError):
        load_checkpoint(tmp_path / "text.pt")


def test_rng_capture_restore_covers_python_numpy_torch():
    state = capture_rng()
    first = (random.random(), float(np.random.rand()), float(torch.rand(1)))
    restore_rng(state)
    assert (random.random(), float(np.random.rand()), float(torch.rand(1))) == first


def test_seed_everything(monkeypatch):
    monkeypatch.delenv("PYTHONHASHSEED", raising=False)
    seed_everything(3)
    a = (random.random(), np.random.rand(), torch.rand(1))
    seed_everything(3)
    b = (random.random(), np.random.rand(), torch.rand(1))
    assert a[0] == b[0] and a[1] == b[1] and torch.equal(a[2], b[2])
    import os

    assert os.environ["PYTHONHASHSEED"] == "3"
    with pytest.raises(ValueError, match="seed"):
        seed_everything(-1)
    seed_everything(0, deterministic=True)
    assert torch.are_deterministic_algorithms_enabled()
    seed_everything(0)
    assert not torch.are_deterministic_algorithms_enabled()


def _learner(tmp_path, **kwargs):
    torch.manual_seed(0)
    x, y = torch.randn(48, 4), torch.randint(0, 3, (48,))
    model = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.Linear(8, 3))
    return Learner(model, (ArrayLoader(x, y, batch_size=16, shuffle=True), ArrayLoader(x, y, batch_size=16)),
                   optimizer="adamw", metrics=["accuracy"], device="cpu", **kwargs)


def test_checkpoint_holds_plain_data_and_restores_weights(tmp_path):
    learner = _learner(tmp_path)
    learner.fit(2)
    path = learner.save_checkpoint(tmp_path / "state.pt")
    payload = torch.load(path, weights_only=True)  # tensors and plain data only
    assert payload["state"]["step"] == 6 and payload["optimizer"]["state"]
    other = _learner(tmp_path)
    other.load_checkpoint(path, weights_only=True)
    for a, b in zip(learner.model.state_dict().values(), other.model.state_dict().values()):
        assert torch.equal(a, b)
    wrong = Learner(nn.Linear(4, 3), (learner.data.train, None), device="cpu")
    with pytest.raises(CheckpointError, match="does not fit this model"):
        wrong.load_checkpoint(path)


def test_safetensors_export_round_trip(tmp_path):
    learner = _learner(tmp_path)
    learner.fit(1)
    path = learner.export_weights(tmp_path / "model.safetensors")
    other = _learner(tmp_path)
    other.load_weights(path)
    for a, b in zip(learner.model.state_dict().values(), other.model.state_dict().values()):
        assert torch.equal(a, b)


def test_run_folder_files(tmp_path):
    import json

    learner = _learner(tmp_path, run_dir=tmp_path / "run", config={"lr": 0.001}, seed=0)
    learner.fit(2)
    lines = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in lines] == [1, 2]  # numbered as the screen shows them
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["status"] == "finished" and summary["epochs"] == 2 and summary["steps"] == 6
    assert summary["torch"] == torch.__version__ and summary["device"] == "cpu" and summary["seed"] == 0
    # CPU timings are comparable only on the same kind of CPU: its vector instructions and cores are recorded
    assert summary["cpu"] == {"capability": torch.backends.cpu.get_cpu_capability(),
                              "cores": len(os.sched_getaffinity(0))}
    assert summary["final"]["valid/accuracy"] == learner.history[-1]["valid/accuracy"]
    best = max(r["valid/accuracy"] for r in learner.history)
    assert summary["best"]["valid/accuracy"]["value"] == best
    assert summary["wall_s"] > 0 and summary["throughput"]["samples_per_s"] > 0
    assert (tmp_path / "run" / "config.yaml").read_text().strip() == "lr: 0.001"
    for sub in ("checkpoints", "plots"):
        assert (tmp_path / "run" / sub).is_dir()
    assert not (tmp_path / "run" / "tensorboard").exists()  # only the TensorBoard callback makes it


def test_seed_worker_distinct_per_worker_and_rank():
    from epochal.state import seed_worker

    draws = {}
    for rank in (0, 1):
        for worker in (0, 1):
            seed = seed_worker(worker, base_seed=42, rank=rank)
            draws[(rank, worker)] = (seed, random.random(), float(np.random.rand()))
    assert len({d[0] for d in draws.values()}) == 4 and len({d[1] for d in draws.values()}) == 4
    assert seed_worker(1, base_seed=42, rank=1) == draws[(1, 1)][0]
    assert random.random() == draws[(1, 1)][1]


def test_an_empty_checkpoint_says_so(tmp_path):
    (tmp_path / "last.pt").write_bytes(b"")
    with pytest.raises(CheckpointError, match=r"is empty \(0 bytes\).*best.pt"):
        load_checkpoint(tmp_path / "last.pt")


class _Hostile:
    def __reduce__(self):
        return (print, ("pwned",))


@pytest.mark.parametrize("payload", [lambda: {"model": _Hostile()}, lambda: nn.Linear(2, 2)], ids=["code", "module"])
def test_refusals_say_what_is_accepted_and_how_to_convert_not_weights_only_false(tmp_path, payload):
    path = tmp_path / "foreign.pt"
    torch.save(payload(), path)
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path)
    message = str(info.value)
    assert "weights_only=False" not in message and "Re-running" not in message
    assert "tensors and plain data" in message and ".safetensors" in message
    assert f"epochal.convert_trusted_checkpoint({str(path)!r}, 'weights.safetensors')" in message


def test_convert_trusted_checkpoint_makes_loadable_safetensors(tmp_path):
    from safetensors.torch import load_file

    from epochal.state import convert_trusted_checkpoint

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))
    torch.save(model, tmp_path / "module.pt")  # a whole pickled module: refused by load_checkpoint
    torch.save({"epoch": 3, "model_state_dict": model.state_dict(), "note": _Hostile.__name__},
               tmp_path / "script.pt")
    for source in ("module.pt", "script.pt"):
        out = convert_trusted_checkpoint(tmp_path / source, tmp_path / f"{source}.safetensors")
        weights = load_file(str(out))
        assert weights.keys() == model.state_dict().keys()
        assert all(torch.equal(weights[k], v) for k, v in model.state_dict().items())
    learner = Learner(nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4)),
                      (ArrayLoader(torch.zeros(4, 3), torch.zeros(4)), None), device="cpu")
    learner.load_weights(tmp_path / "module.pt.safetensors")
    assert torch.equal(learner.model[0].weight, model[0].weight)
    with pytest.raises(KeyError, match="no entry 'weights'.*model_state_dict"):
        convert_trusted_checkpoint(tmp_path / "script.pt", tmp_path / "x.safetensors", key="weights")


def test_damaged_bytes_are_named_without_torchs_advice(tmp_path):
    (tmp_path / "best.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match=r"could not be read \(UnpicklingError: Unsupported operand") as info:
        load_checkpoint(tmp_path / "best.pt")
    assert "weights_only" not in str(info.value) and "trusted source" not in str(info.value)
