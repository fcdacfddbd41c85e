"""Your own torch Dataset and DataLoaders, as a PyTorch Lightning user has them, with epochal's callbacks.

    python examples/own_torch_dataset.py        # writes ./runs/<date>_<time>-spirals/
"""

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

import epochal
from epochal import CSVLogger, EarlyStopping, Learner, ModelCheckpoint, ProgressBar


class Spirals(Dataset):
    """Two interleaved spirals; ``__getitem__`` jitters each point (random augmentation)."""

    def __init__(self, n: int, seed: int):
        g = torch.Generator().manual_seed(seed)
        self.labels = torch.randint(0, 2, (n,), generator=g)
        t = torch.rand(n, generator=g) * 2 * torch.pi + 0.5
        angle = t + self.labels * torch.pi
        self.points = torch.stack([t * torch.cos(angle), t * torch.sin(angle)], dim=1) / 7

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        return self.points[i] + 0.01 * torch.randn(2), self.labels[i]


def main():
    epochal.seed_everything(0)
    train = DataLoader(Spirals(1000, seed=0), batch_size=50, shuffle=True, num_workers=2, persistent_workers=True)
    valid = DataLoader(Spirals(400, seed=1), batch_size=200)
    model = nn.Sequential(nn.Linear(2, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 2))
    learner = Learner(model, (train, valid), optimizer="adamw", metrics=["accuracy"],
                      callbacks=[ProgressBar(), ModelCheckpoint(monitor="valid/accuracy"),
                                 EarlyStopping("valid/accuracy", patience=3), CSVLogger()],
                      run_dir=epochal.create_run_dir("runs", "spirals"), seed=0)
    learner.fit(epochal.one_cycle(6, 0.02))  # shuffle=True: epochal swaps in its seeded sampler (a warning says so)
    metrics = learner.validate()
    print(f"validation accuracy {metrics['valid/accuracy']:.3f}")
    assert metrics["valid/accuracy"] > 0.9, metrics  # two classes: chance is 0.5


if __name__ == "__main__":  # DataLoader workers re-import this file on macOS and Windows
    main()
