"""from_tensors, from_loader and as_data_loaders: whatever the Learner is given, as epochal loaders."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from epochal.data import (
    ArrayLoader,
    DataLoaders,
    IterableLoader,
    TensorLoader,
    TorchLoader,
    as_data_loaders,
    from_loader,
    from_tensors,
)


def points(n=40, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 3, generator=g)
    return x, (x[:, 0] > 0).long()


# ----------------------------------------------------------------------------- pass-through
@pytest.mark.parametrize("make", [
    lambda x, y: ArrayLoader(x, y, batch_size=8, shuffle=True),
    lambda x, y: TensorLoader(x, y, batch_size=8),
    lambda x, y: from_tensors(x, y, batch_size=8),
], ids=["ArrayLoader", "TensorLoader", "from_tensors"])
def test_epochal_loaders_pass_through_unchanged(make):
    x, y = points()
    train, valid = make(x, y), make(x, y)
    dls = DataLoaders(train, valid, classes=["a", "b"])
    assert as_data_loaders(dls) is dls
    converted = as_data_loaders((train, valid))
    assert converted.train is train and converted.valid is valid
    assert from_loader(train) is train
    with pytest.raises(ValueError, match="already an epochal loader"):
        from_loader(train, steps_per_epoch=3)


def test_from_tensors_takes_numpy_arrays_of_any_dtype():
    x64, y32 = np.random.default_rng(0).random((10, 3)), (np.arange(10) % 2).astype(np.int32)
    loader = from_tensors(x64, y32, batch_size=4, shuffle=False)
    assert isinstance(loader, TensorLoader) and len(loader) == 3
    first = next(loader.iter_epoch(0))
    assert first[0].dtype == torch.float32 and torch.equal(first[1], torch.tensor([0, 1, 0, 1]))
    pair = from_tensors((x64, np.zeros((10, 2), np.uint8)), y32)
    assert next(pair.iter_epoch(0))[0][1].dtype == torch.uint8
    with pytest.raises(TypeError, match="inputs is a NumPy array of <U1"):
        from_tensors(np.array(list("abcdefghij")), y32)


# ----------------------------------------------------------------------------- as_data_loaders
def test_as_data_loaders_tells_arrays_from_loader_pairs():
    x, y = points()
    arrays = as_data_loaders((x.numpy(), y.numpy()), valid=(x[:8].numpy(), y[:8].numpy()))
    assert isinstance(arrays.train, TensorLoader) and arrays.train.sampler.__class__.__name__ == "RandomSampler"
    assert [len(b) for _, b in arrays.valid.iter_epoch(0)] == [8]
    pair = as_data_loaders((DataLoader(TensorDataset(x, y), batch_size=8), [(x, y)]))
    assert isinstance(pair.train, TorchLoader) and isinstance(pair.valid, IterableLoader)
    single = as_data_loaders(DataLoader(TensorDataset(x, y), batch_size=8))
    assert isinstance(single.train, TorchLoader) and single.valid is None
    with pytest.raises(ValueError, match="given twice"):
        as_data_loaders(([(x, y)], [(x, y)]), valid=[(x, y)])
    with pytest.raises(ValueError, match="3 items"):
        as_data_loaders(([(x, y)], [(x, y)], [(x, y)]))
    with pytest.raises(TypeError, match=r"wrap it in torch.utils.data.DataLoader\(dataset"):
        as_data_loaders(TensorDataset(x, y))
    with pytest.raises(TypeError, match="cannot read batches from a int"):
        as_data_loaders(3)
