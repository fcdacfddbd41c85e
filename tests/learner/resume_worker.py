"""Child process of the kill -9 resume test: trains, optionally blocks at a step, or resumes.

Usage: python resume_worker.py RUN_DIR full|crash|resume STOP_STEP OUT_WEIGHTS [array|torch] [swa]

``array`` trains on epochal's ArrayLoader; ``torch`` on a plain ``torch.utils.data.DataLoader``
with ``shuffle=True`` over a Dataset that adds random noise in ``__getitem__``. With ``swa`` the
schedule ends with an SWA phase whose weights are averaged every 2 steps, and OUT_WEIGHTS also gets
the averaged tensors and their count (before the final swap into the model).
"""

import sys
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from epochal.callbacks.base import Callback
from epochal.callbacks.model_checkpoint import ModelCheckpoint
from epochal.callbacks.swa import SWA
from epochal.data.base import ArrayLoader
from epochal.learner import Learner
from epochal.schedules import one_cycle, swa_phase
from epochal.state import seed_everything


class BlockAtStep(Callback):
    """After the checkpoint of ``step`` is on disk, say so and wait to be killed."""

    order = 200  # after ModelCheckpoint

    def __init__(self, step: int):
        self.step = step

    def after_step(self) -> None:
        if self.learner.state.step == self.step:
            print("READY", flush=True)
            sys.stdin.read()  # blocks until the parent kills this process


def noisy(x, y, generator):
    return x + 0.1 * torch.randn(x.shape, generator=generator), y


class NoisyPoints(Dataset):
    """A user's map-style Dataset whose ``__getitem__`` draws from torch's global generator."""

    def __init__(self, x, y):
        self.x, self.y = x, y

    def __len__(self):
        return len(self.y)

    def __getitem__(self, index):
        return self.x[index] + 0.1 * torch.randn(self.x.shape[1]), self.y[index]


def loaders(kind: str, x, y):
    if kind == "torch":
        return (DataLoader(NoisyPoints(x[:80], y[:80]), batch_size=16, shuffle=True),
                DataLoader(NoisyPoints(x[80:], y[80:]), batch_size=8))
    return (ArrayLoader(x[:80], y[:80], batch_size=16, shuffle=True, seed=7, transform=noisy),
            ArrayLoader(x[80:], y[80:], batch_size=8))


def main() -> None:
    run_dir, mode, stop_step, out = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3]), sys.argv[4]
    kind = sys.argv[5] if len(sys.argv) > 5 else "array"
    seed_everything(0, deterministic=True)
    data_gen = torch.Generator().manual_seed(123)
    x = torch.randn(100, 8, generator=data_gen)
    y = (x[:, :3].sum(1) > 0).long() + (x[:, 3] > 1).long()
    train, valid = loaders(kind, x, y)
    model = nn.Sequential(nn.Linear(8, 32), nn.BatchNorm1d(32), nn.ReLU(), nn.Dropout(0.3), nn.Linear(32, 3))
    averaging = len(sys.argv) > 6 and sys.argv[6] == "swa"
    callbacks = [ModelCheckpoint(monitor="valid/accuracy", every_n_steps=3)]
    phases = one_cycle(3, 0.2, optimizer="sgd", weight_decay=1e-3)
    if averaging:
        swa = SWA(start="swa", update_every=2, lr=0.05, final=False)
        callbacks.append(swa)
        phases = [*one_cycle(2, 0.2, optimizer="sgd", weight_decay=1e-3), *swa_phase(2, lr=0.05)]
    if mode == "crash":
        callbacks.append(BlockAtStep(stop_step))
    learner = Learner(model, (train, valid), optimizer="sgd", metrics=["accuracy"], callbacks=callbacks,
                      device="cpu", run_dir=run_dir, seed=0, log_every=2)
    learner.fit(phases, resume=run_dir if mode == "resume" else None)
    saved = {k: v.clone() for k, v in learner.model.state_dict().items()}
    if averaging:
        saved.update({f"swa.{k}": v.clone() for k, v in swa.averaged.state().items()})
        saved["swa.n_averaged"] = torch.tensor(swa.averaged.n_averaged)
    torch.save(saved, out)


if __name__ == "__main__":
    main()
