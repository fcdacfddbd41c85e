"""BatchFormat: pairs, longer tuples and dict batches as (inputs, targets); NumPy to tensors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from epochal.data.batches import BatchFormat, as_tensor


def points(n=40, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 3, generator=g)
    return x, (x[:, 0] > 0).long()


@pytest.mark.parametrize("keys", [("image", "label"), ("pixel_values", "labels"), ("x", "y"), ("features", "target")])
def test_dict_batch_keys_are_guessed(keys):
    x, y = points(8)
    inputs, targets = BatchFormat()({keys[0]: x, keys[1]: y, "id": torch.arange(8)})
    assert inputs is x and targets is y


def test_dict_batch_keys_can_be_named_including_several_inputs():
    batch = {"a": torch.zeros(4, 2), "b": torch.ones(4, 5), "kind": torch.arange(4), "idx": torch.arange(4)}
    inputs, targets = BatchFormat(inputs=("a", "b"), targets="kind")(batch)
    assert isinstance(inputs, tuple) and [t.shape[1] for t in inputs] == [2, 5] and targets is batch["kind"]
    with pytest.raises(ValueError, match=r"keys \['a', 'b', 'kind', 'idx'\].*from_loader\(loader, inputs="):
        BatchFormat()(batch)
    with pytest.raises(KeyError, match=r"\['label'\] is not among them"):
        BatchFormat(inputs="a", targets="label")(batch)
    with pytest.raises(TypeError, match="name keys of dict batches"):
        BatchFormat(targets="kind")((torch.zeros(2), torch.zeros(2)))


def test_tuple_batches_take_the_last_item_as_the_target():
    a, b, y = torch.zeros(4, 2), torch.ones(4, 3), torch.arange(4)
    assert BatchFormat()([a, y]) == (a, y)
    inputs, targets = BatchFormat()((a, b, y))
    assert inputs == (a, b) and targets is y
    with pytest.raises(TypeError, match="a batch must be"):
        BatchFormat()(a)
    with pytest.raises(ValueError, match="single samples"):
        BatchFormat()((torch.zeros(3), torch.tensor(1)))


def test_numpy_batches_become_tensors_of_the_usual_dtypes():
    x64, y32 = np.random.default_rng(0).random((10, 3)), (np.arange(10) % 2).astype(np.int32)
    inputs, targets = BatchFormat()((x64, y32))
    assert inputs.dtype == torch.float32 and targets.dtype == torch.int64
    assert as_tensor(np.zeros((2, 3), np.uint8)).dtype == torch.uint8  # images stay uint8
    with pytest.raises(TypeError, match="labels is a NumPy array of <U1"):
        as_tensor(np.array(list("ab")), "labels")
