"""BatchNorm recalibration: equal to a fresh update_bn pass, and every temporary change undone (also on error)."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn
from torch.optim.swa_utils import update_bn

from epochal.averaging import augmentation, batch_norms, recalibrate_bn
from epochal.data.base import ArrayLoader
from epochal.data.loaders import ImageLoader


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4, momentum=0.3), nn.ReLU(),
                         nn.Conv2d(4, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.Linear(4 * 6 * 6, 2))


def _images(n: int = 40) -> ImageLoader:
    g = torch.Generator().manual_seed(1)
    pixels = torch.randint(0, 256, (n, 3, 8, 8), dtype=torch.uint8, generator=g)
    return ImageLoader(pixels, torch.arange(n) % 2, batch_size=16, shuffle=True, augment=["flip", "translate(pad=2)"],
                       seed=3)


def _bn_state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items() if "running" in k or "num_batches" in k}


@pytest.mark.parametrize("augment", [True, False])
def test_recalibration_equals_a_fresh_cumulative_pass_of_update_bn(augment):
    model, loader = _net(), _images()
    with torch.no_grad():
        model[1].running_mean.fill_(5.0)  # stale statistics, as after averaging weights
    reference = copy.deepcopy(model)
    with augmentation(loader, augment):
        batches = [x for x, _ in loader.iter_epoch(0)]
    update_bn(batches, reference)
    seen = recalibrate_bn(model, loader, augment=augment)
    assert seen == 40
    for key, value in _bn_state(reference).items():
        assert torch.equal(model.state_dict()[key], value), key
    assert model[1].momentum == 0.3 and model[4].momentum == 0.1
    assert not torch.equal(_bn_state(_net())["1.running_mean"], model.state_dict()["1.running_mean"])


def test_augmentation_off_changes_the_batches_and_is_restored_also_on_error():
    loader = _images()
    pipeline = loader.augment
    on = next(iter(loader.iter_epoch(0)))[0]
    with augmentation(loader, False):
        off = next(iter(loader.iter_epoch(0)))[0]
        assert len(loader.augment) == 0
    assert loader.augment is pipeline and not torch.equal(on, off)
    with pytest.raises(RuntimeError, match="boom"), augmentation(loader, False):
        raise RuntimeError("boom")
    assert loader.augment is pipeline
    noisy = ArrayLoader(torch.zeros(4, 2), torch.zeros(4), transform=lambda x, y, g: (x + 1, y))
    with augmentation(noisy, False):
        assert noisy.transform is None
    assert noisy.transform is not None
    with pytest.raises(ValueError, match="neither"), augmentation([torch.zeros(2, 2)], False):
        pass


def test_modes_and_momentum_come_back_and_a_failed_pass_keeps_the_old_statistics():
    model = _net().eval()
    model[4].train()
    before = _bn_state(model)

    def failing():
        yield torch.zeros(4, 3, 8, 8), None
        raise OSError("disk gone")

    with pytest.raises(OSError, match="disk gone"):
        recalibrate_bn(model, failing())
    assert [m.training for m in model.modules()] == [False, False, False, False, False, True, False, False]
    assert all(torch.equal(model.state_dict()[k], v) for k, v in before.items())
    assert [m.momentum for m in batch_norms(model)] == [0.3, 0.1]


def test_max_batches_and_models_without_batchnorm():
    model, loader = _net(), _images()
    assert recalibrate_bn(model, loader, max_batches=1) == 16
    assert model[1].num_batches_tracked == 1
    assert recalibrate_bn(nn.Linear(3, 2), [torch.zeros(2, 3)]) == 0
