"""Tensors or NumPy arrays, as a Keras user has them: ``Learner(model, (x, y), valid=(x_valid, y_valid))``.

    python examples/own_tensors.py        # writes ./runs/<date>_<time>-tensors/
"""

import numpy as np
from torch import nn

import epochal
from epochal import EarlyStopping, Learner, ProgressBar

rng = np.random.default_rng(0)
x = rng.normal(size=(1200, 8))                           # float64, as NumPy makes them: trained as float32
y = (x[:, 0] * x[:, 1] + x[:, 2] > 0).astype(np.int32)  # integer labels: int64 for the loss
x_train, y_train, x_valid, y_valid = x[:1000], y[:1000], x[1000:], y[1000:]

epochal.seed_everything(0)
model = nn.Sequential(nn.Linear(8, 64), nn.ReLU(), nn.Linear(64, 2))
learner = Learner(model, (x_train, y_train), valid=(x_valid, y_valid), metrics=["accuracy"],
                  callbacks=[ProgressBar(), EarlyStopping("valid/accuracy", patience=3)],
                  run_dir=epochal.create_run_dir("runs", "tensors"), seed=0)
learner.fit(epochal.one_cycle(8, 0.02))                  # batches of 64 in a new seeded order each epoch
print(f"validation accuracy {learner.validate()['valid/accuracy']:.3f}")

# Your own batch size (device="cuda" keeps the arrays in GPU memory): epochal.from_tensors
train = epochal.from_tensors(x_train, y_train, batch_size=32, shuffle=True, seed=0)
valid = epochal.from_tensors(x_valid, y_valid, batch_size=200, shuffle=False)
learner = Learner(nn.Sequential(nn.Linear(8, 64), nn.ReLU(), nn.Linear(64, 2)), (train, valid), metrics=["accuracy"],
                  run_dir=epochal.create_run_dir("runs", "tensors-batch-32"), seed=0)
learner.fit(epochal.one_cycle(5, 0.02))
probabilities = learner.predict((x_valid, y_valid), activation="softmax")  # validate and predict take arrays too
accuracy = float((probabilities.argmax(1).numpy() == y_valid).mean())
print(f"batch size 32: validation accuracy {accuracy:.3f}")
assert accuracy > 0.85 and abs(learner.validate()["valid/accuracy"] - accuracy) < 1e-6, accuracy
