"""TorchLoader and IterableLoader: users' DataLoaders and iterables, exact where they can be."""

from __future__ import annotations

import random
import warnings

import numpy as np
import pytest
import torch
from torch.utils.data import (
    BatchSampler,
    DataLoader,
    Dataset,
    IterableDataset,
    SequentialSampler,
    TensorDataset,
    WeightedRandomSampler,
)

from epochal.data import TensorLoader, from_loader
from epochal.data.wrappers import IterableLoader, TorchLoader
from epochal.state import capture_rng, restore_rng, seed_everything


def points(n=40, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 3, generator=g)
    return x, (x[:, 0] > 0).long()


class Augmented(Dataset):
    """A map-style dataset drawing from torch's, Python's and NumPy's global generators."""

    def __init__(self, n=40):
        self.x, self.y = points(n)

    def __len__(self):
        return len(self.y)

    def __getitem__(self, i):
        noise = torch.randn(3) + random.random() + float(np.random.rand())
        return self.x[i] + noise, self.y[i]


class Counting(IterableDataset):
    """Samples 0, 1, 2, ... (``n`` of them, or endless), without a length."""

    def __init__(self, n=None):
        self.n = n

    def __iter__(self):
        i = 0
        while self.n is None or i < self.n:
            yield torch.tensor([float(i)]), torch.tensor(i % 2)
            i += 1


class Sized(Counting):
    """``Counting`` with a ``__len__``."""

    def __len__(self):
        return self.n


def epoch(loader, number, start=0):
    return [(x.clone(), y.clone()) for x, y in loader.iter_epoch(number, start)]


def assert_same(a, b):
    assert len(a) == len(b)
    for (xa, ya), (xb, yb) in zip(a, b):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)


def quiet_torch_loader(*args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return TorchLoader(*args, **kwargs)


# ----------------------------------------------------------------------------- torch DataLoaders
def test_shuffled_dataloader_gets_the_seeded_sampler_and_equals_tensor_loader():
    x, y = points()
    dl = DataLoader(TensorDataset(x, y), batch_size=16, shuffle=True)
    with pytest.warns(UserWarning, match="swapped in its seeded sampler") as record:
        loader = TorchLoader(dl, seed=3)
    assert len(record) == 1 and "batch_size=16" in str(record[0].message)
    reference = TensorLoader(x, y, batch_size=16, shuffle=True, seed=3)
    assert loader.exact_resume and len(loader) == len(reference) == 3
    for e in range(3):
        assert_same(epoch(loader, e), epoch(reference, e))
    assert not torch.equal(epoch(loader, 0)[0][1], epoch(loader, 1)[0][1])  # a new order per epoch


def test_unshuffled_dataloader_is_rebuilt_silently_in_dataset_order():
    x, y = points()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        loader = TorchLoader(DataLoader(TensorDataset(x, y), batch_size=16))
    assert loader.exact_resume
    assert torch.equal(torch.cat([b[1] for b in epoch(loader, 4)]), y)


def test_rebuilt_loader_keeps_the_users_settings():
    index = torch.arange(42)

    def collate(samples):
        xs, ys = zip(*samples)
        return torch.stack(xs) * 10, torch.stack(ys)

    def init(worker_id):
        return None

    dl = DataLoader(TensorDataset(index.float().unsqueeze(1), index), batch_size=8, shuffle=True, drop_last=True,
                    collate_fn=collate, num_workers=1, persistent_workers=True, worker_init_fn=init, timeout=30)
    loader = quiet_torch_loader(dl)
    rebuilt = loader._loader
    kept = rebuilt.num_workers, rebuilt.persistent_workers, rebuilt.worker_init_fn, rebuilt.timeout
    assert kept == (1, True, init, 30)
    assert loader.batch_size == 8
    for number in (0, 1):  # persistent workers serve both epochs
        batches = epoch(loader, number)
        assert len(loader) == len(batches) == 5 and all(len(y) == 8 for _, y in batches)  # 42 // 8: drop_last kept
        assert all(torch.equal(x[:, 0], y.float() * 10) for x, y in batches)  # the user's collate_fn ran


def test_workers_make_the_same_batches_from_any_start_with_random_augmentation():
    loader = quiet_torch_loader(DataLoader(Augmented(), batch_size=8, shuffle=True, num_workers=2), seed=1)
    full = epoch(loader, 2)
    assert_same(epoch(loader, 2, start=3), full[3:])  # workers seed each batch from (seed, epoch, index)
    again = quiet_torch_loader(DataLoader(Augmented(), batch_size=8, shuffle=True, num_workers=2,
                                          persistent_workers=True), seed=1)
    assert_same(epoch(again, 2), full)
    assert not torch.equal(full[0][0], epoch(again, 3)[0][0])


def test_without_workers_augmentation_follows_the_global_generators_a_checkpoint_captures():
    loader = quiet_torch_loader(DataLoader(Augmented(), batch_size=8, shuffle=True), seed=1)
    seed_everything(7)
    full = epoch(loader, 2)
    seed_everything(7)
    batches = loader.iter_epoch(2)
    for _ in range(3):
        next(batches)
    saved = capture_rng()  # what a checkpoint after batch 2 holds
    batches.close()
    torch.manual_seed(99)  # a new process
    restore_rng(saved)
    assert_same(epoch(loader, 2, start=3), full[3:])


def test_reading_the_loader_draws_nothing_from_the_global_generators():
    x, y = points()
    loader = quiet_torch_loader(DataLoader(TensorDataset(x, y), batch_size=8, shuffle=True), seed=1)
    torch.manual_seed(5)
    state = torch.get_rng_state()
    epoch(loader, 0)  # torch's own RandomSampler and iterator draw from the global generator
    assert torch.equal(torch.get_rng_state(), state)


def test_exact_steps_per_epoch_continues_across_passes():
    x, y = points(32)
    loader = quiet_torch_loader(DataLoader(TensorDataset(x, y), batch_size=8, shuffle=True), steps_per_epoch=3)
    stream = epoch(quiet_torch_loader(DataLoader(TensorDataset(x, y), batch_size=8, shuffle=True)), 0)
    stream += epoch(quiet_torch_loader(DataLoader(TensorDataset(x, y), batch_size=8, shuffle=True)), 1)
    assert len(loader) == 3
    assert_same(epoch(loader, 0) + epoch(loader, 1), stream[:6])  # epoch 1 = pass 0's last batch, pass 1's first two
    assert_same(epoch(loader, 1, start=2), stream[5:6])


class Custom(DataLoader):
    pass


@pytest.mark.parametrize("make, reason", [
    (lambda: DataLoader(Sized(12), batch_size=4), "IterableDataset"),
    (lambda: DataLoader(Augmented(), batch_size=4, sampler=WeightedRandomSampler([1.0] * 40, 40)), "custom sampler"),
    (lambda: DataLoader(Augmented(), batch_sampler=BatchSampler(SequentialSampler(range(40)), 4, False)),
     "batch_sampler"),
    (lambda: Custom(Augmented(), batch_size=4), "subclass"),
], ids=["iterable-dataset", "sampler", "batch-sampler", "subclass"])
def test_loaders_epochal_cannot_position_are_read_as_they_come(make, reason):
    loader = TorchLoader(make())
    assert not loader.exact_resume and reason in loader.reason
    info = loader.resume_info()
    assert info["exact"] is False and reason in info["note"] and "fresh pass" in info["note"]
    assert len(epoch(loader, 0)) == len(loader)


def test_a_restarted_epoch_keeps_its_length_and_is_recorded():
    loader = TorchLoader(DataLoader(Sized(20), batch_size=4))
    assert len(loader) == 5
    with pytest.warns(RuntimeWarning, match="after batch 3 of epoch 2, .*fresh pass"):
        rest = epoch(loader, 1, start=3)
    assert [x[0, 0].item() for x, _ in rest] == [0.0, 4.0]  # the first two batches of a fresh pass
    assert loader.resume_info()["restarted"] == [{"epoch": 1, "batch": 3}]


# ----------------------------------------------------------------------------- no length
def test_a_loader_without_length_needs_steps_per_epoch():
    loader = from_loader(DataLoader(Counting(), batch_size=4))
    with pytest.raises(TypeError, match=r"from_loader\(data, steps_per_epoch=N\)"):
        len(loader)
    finite = from_loader(DataLoader(Counting(28), batch_size=4))
    assert [len(y) for _, y in finite.iter_epoch(0)] == [4] * 7  # evaluation: one whole pass


def test_steps_per_epoch_takes_the_next_batches_and_starts_new_passes():
    loader = from_loader(DataLoader(Counting(28), batch_size=4), steps_per_epoch=5)  # 7 batches a pass
    firsts = [[x[0, 0].item() for x, _ in loader.iter_epoch(e)] for e in range(3)]
    assert firsts == [[0, 4, 8, 12, 16], [20, 24, 0, 4, 8], [12, 16, 20, 24, 0]]


def test_a_generator_is_a_stream_read_once():
    batches = ((torch.full((2, 1), float(i)), torch.tensor([0, 1])) for i in range(7))
    loader = from_loader(batches, steps_per_epoch=3)
    assert not loader.exact_resume and "one-shot" in loader.reason
    assert [[x[0, 0].item() for x, _ in loader.iter_epoch(e)] for e in range(3)] == [[0, 1, 2], [3, 4, 5], [6]]
    with pytest.raises(ValueError, match="no batch for epoch 3 .*read only once"):
        epoch(loader, 3)


def test_a_list_of_batches_is_exact():
    batches = [(torch.full((2, 1), float(i)), torch.tensor([0, 1])) for i in range(4)]
    loader = from_loader(batches)
    assert isinstance(loader, IterableLoader) and loader.exact_resume and len(loader) == 4
    assert [x[0, 0].item() for x, _ in loader.iter_epoch(5, start=2)] == [2.0, 3.0]
