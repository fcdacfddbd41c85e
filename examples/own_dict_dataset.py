"""Dict batches, Hugging Face style: ``{"input_ids": ..., "labels": ...}``, or keys of your own.

A Dataset whose items are dicts gives dict batches in a DataLoader, as a Hugging Face
``datasets.Dataset`` does after ``.with_format("torch")``. Usual key names (``input_ids``,
``pixel_values``, ``image``, ``labels``, ``label``, ...) are found by themselves; others are named
with ``epochal.from_loader(loader, inputs=..., targets=...)``.

    python examples/own_dict_dataset.py        # writes ./runs/<date>_<time>-reviews/
"""

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

import epochal
from epochal import Learner

GOOD, BAD = [1, 2, 3], [4, 5, 6]                          # token ids of a tiny vocabulary of 50


class Reviews(Dataset):
    """Token-id reviews: positive ones hold more 'good' tokens than 'bad' ones."""

    def __init__(self, n: int, seed: int):
        g = torch.Generator().manual_seed(seed)
        self.tokens = torch.randint(7, 50, (n, 12), generator=g)
        self.stars = torch.randint(0, 2, (n,), generator=g)
        cue_words = torch.tensor([BAD, GOOD])[self.stars]  # (n, 3): the cue words of each review's class
        self.tokens[:, :3] = cue_words.gather(1, torch.randint(0, 3, (n, 3), generator=g))

    def __len__(self):
        return len(self.stars)

    def __getitem__(self, i):
        return {"tokens": self.tokens[i], "stars": self.stars[i], "review_id": i}


class BagOfWords(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed, self.head = nn.EmbeddingBag(50, 16), nn.Linear(16, 2)

    def forward(self, tokens):
        return self.head(self.embed(tokens))


epochal.seed_everything(0)
train = epochal.from_loader(DataLoader(Reviews(800, seed=0), batch_size=32, shuffle=True),
                            inputs="tokens", targets="stars")
valid = epochal.from_loader(DataLoader(Reviews(200, seed=1), batch_size=100), inputs="tokens", targets="stars")
learner = Learner(BagOfWords(), (train, valid), metrics=["accuracy"],
                  run_dir=epochal.create_run_dir("runs", "reviews"), seed=0)
learner.fit(epochal.one_cycle(5, 0.05))
metrics = learner.validate()
print(f"validation accuracy {metrics['valid/accuracy']:.3f}")
assert metrics["valid/accuracy"] > 0.9, metrics           # two classes: chance is 0.5

unnamed = Learner(BagOfWords(), (DataLoader(Reviews(64, seed=2), batch_size=32), None))
try:
    unnamed.fit(1)
except ValueError as error:  # without names, the error lists the batch's keys and says how to name them
    print(error)
    assert "['tokens', 'stars', 'review_id']" in str(error), error
else:
    raise AssertionError("keys that cannot be guessed must be named")
