"""AveragedWeights: updates, buffers copied or averaged, the swap is undone also on error, checkpoints."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from epochal.averaging import AveragedWeights, EqualMean, ExponentialMean


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Linear(4, 2))


def _perturb(model: nn.Module, scale: float) -> None:
    with torch.no_grad():
        for p in model.parameters():
            p.add_(scale)
        model[1].running_mean.add_(scale)
        model[1].num_batches_tracked.add_(1)


def test_buffers_are_copied_or_averaged():
    model = _model()
    copied = AveragedWeights(model, EqualMean(), average_buffers=False)
    averaged = AveragedWeights(model, EqualMean(), average_buffers=True)
    for _ in range(4):
        _perturb(model, 1.0)
        copied.update(model)
        averaged.update(model)
    state, live = copied.state(), model.state_dict()
    assert torch.equal(state["1.running_mean"], live["1.running_mean"])  # copied: the model's latest
    mean_of_runs = torch.stack([torch.full((4,), float(k)) for k in range(1, 5)]).mean(0)
    torch.testing.assert_close(averaged.state()["1.running_mean"], mean_of_runs)
    assert averaged.state()["1.num_batches_tracked"] == live["1.num_batches_tracked"] == 4  # ints: copied
    torch.testing.assert_close(copied.state()["0.bias"], live["0.bias"] - 1.5)  # mean of +1..+4 is +2.5
    assert copied.n_averaged == averaged.n_averaged == 4


def test_swapped_into_holds_the_average_and_restores_the_model_also_on_error():
    model = _model()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    averaged = AveragedWeights(model, EqualMean())
    _perturb(model, 2.0)
    averaged.update(model)
    _perturb(model, 3.0)
    live = {k: v.clone() for k, v in model.state_dict().items()}
    ids = [(id(t), t.data_ptr()) for t in [*model.parameters(), *model.buffers()]]
    with averaged.swapped_into(model):
        torch.testing.assert_close(model[0].weight, before["0.weight"] + 2.0)
    assert all(torch.equal(model.state_dict()[k], v) for k, v in live.items())
    with pytest.raises(RuntimeError, match="boom"), averaged.swapped_into(model):
        raise RuntimeError("boom")
    assert all(torch.equal(model.state_dict()[k], v) for k, v in live.items())
    # the same tensors and storage throughout: a compiled wrapper and the optimizer keep working
    assert [(id(t), t.data_ptr()) for t in [*model.parameters(), *model.buffers()]] == ids


def test_state_dict_round_trip_and_ordered_state_loads_into_the_model():
    model = _model()
    averaged = AveragedWeights(model, ExponentialMean(0.9))
    for _ in range(3):
        _perturb(model, 0.5)
        averaged.update(model)
    restored = AveragedWeights(_model(), ExponentialMean(0.9))
    restored.load_state_dict(averaged.state_dict())
    assert restored.n_averaged == 3
    pairs = zip(restored.params + restored.buffers, averaged.params + averaged.buffers, strict=True)
    assert all(torch.equal(a, b) for a, b in pairs)
    other = _model()
    other.load_state_dict(averaged.ordered_state(other))
    assert torch.equal(other[0].weight, averaged.state()["0.weight"])


def test_a_different_model_is_refused():
    averaged = AveragedWeights(_model(), EqualMean())
    with pytest.raises(ValueError, match="parameters"):
        averaged.update(nn.Linear(3, 2))
    with pytest.raises(ValueError, match="lack"):
        AveragedWeights(nn.Linear(3, 2), EqualMean()).load_state_dict(averaged.state_dict())
