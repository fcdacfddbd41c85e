"""A CSV file of your own: read it with Python's csv module and train on the arrays.

For text columns, missing values and a fitted preprocessing saved with the run, use
``epochal.tabular_loaders`` instead (docs/data.md, "Tables").

    python examples/own_csv.py        # writes ./runs/<date>_<time>-flowers/
"""

import csv
import tempfile
from pathlib import Path

import numpy as np
from torch import nn

import epochal
from epochal import CSVLogger, Learner

SPECIES = ["setosa", "versicolor", "virginica"]


def write_csv(path: Path) -> Path:
    """Stands in for your file: 600 rows of three measurements and a species name."""
    rng = np.random.default_rng(0)
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["sepal_length", "petal_length", "petal_width", "species"])
        for k in rng.integers(0, 3, 600):
            writer.writerow([*np.round(rng.normal([5 + k, 1.5 + 2 * k, 0.3 + k], 0.5), 2), SPECIES[k]])
    return path


with tempfile.TemporaryDirectory() as folder, open(write_csv(Path(folder) / "flowers.csv"), newline="") as handle:
    rows = list(csv.DictReader(handle))
x = np.array([[float(row[c]) for c in ("sepal_length", "petal_length", "petal_width")] for row in rows])
y = np.array([SPECIES.index(row["species"]) for row in rows])
mean, std = x[:500].mean(0), x[:500].std(0)              # standardise with the training rows' statistics
x = (x - mean) / std

epochal.seed_everything(0)
train = epochal.from_tensors(x[:500], y[:500], batch_size=32, shuffle=True, seed=0)
valid = epochal.from_tensors(x[500:], y[500:], batch_size=100, shuffle=False)
model = nn.Sequential(nn.Linear(3, 32), nn.ReLU(), nn.Linear(32, len(SPECIES)))
learner = Learner(model, (train, valid), metrics=["accuracy"], callbacks=[CSVLogger()],
                  run_dir=epochal.create_run_dir("runs", "flowers"), seed=0)
learner.fit(epochal.one_cycle(6, 0.02))
metrics = learner.validate()
print(f"validation accuracy {metrics['valid/accuracy']:.3f}")
assert metrics["valid/accuracy"] > 0.9, metrics           # three classes: chance is 0.33
assert (learner.run_dir / "metrics.csv").read_text().count("\n") == 7  # a header and one line per epoch
