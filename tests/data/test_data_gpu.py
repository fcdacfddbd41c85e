"""CUDA paths of the loaders: the same batches as on the CPU, and no host-device synchronisation.

A loader that synchronises (a pageable copy, ``.item()``, a ``torch.tensor(..., device="cuda")``
per batch) makes the host wait for the training step before it can prepare the next batch, so the
GPU idles between steps. ``torch.cuda.set_sync_debug_mode("error")`` turns each such call into an
error. These tests run with ``pytest -m gpu`` on a machine with CUDA.
"""

from __future__ import annotations

import contextlib

import pytest
import torch
from torch import nn

from epochal.callbacks import Callback
from epochal.data.augment import Normalize
from epochal.data.loaders import ImageLoader, TensorLoader
from epochal.learner import Learner

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA (run with -m gpu on a GPU machine)"),
]

IMAGES = torch.randint(0, 256, (64, 3, 16, 16), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
TARGETS = torch.arange(64) % 4
#: Every registered augmentation that changes training batches.
EVERY_AUGMENTATION = [
    "flip",
    "alternating_flip",
    "translate(3)",
    "random_resized_crop(12, scale=(0.35, 1))",
    "rotate_scale(15, scale=(0.9, 1.1))",
    "lighting(0.1)",
    "color_jitter(0.3, 0.3, 0.3, hue=0.05)",
    "cutout(4)",
    "mixup(0.4)",
    "cutmix(1.0, p=0.5)",
]


@contextlib.contextmanager
def no_sync():
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        yield
    finally:
        torch.cuda.set_sync_debug_mode(0)


def _loader(device: str, residency: str = "device", augment=EVERY_AUGMENTATION) -> ImageLoader:
    return ImageLoader(
        IMAGES, TARGETS, batch_size=16, augment=augment, normalize=Normalize(), seed=5, num_classes=4,
        device=device, residency=residency, channels_last=True,
    )


@pytest.mark.parametrize("residency", ["device", "stream"])
def test_cuda_batches_equal_the_cpu_batches(residency):
    on_cpu = list(_loader("cpu").iter_epoch(1))
    on_gpu = list(_loader("cuda", residency).iter_epoch(1))
    assert len(on_cpu) == len(on_gpu) == 4
    for (x, y), (gx, gy) in zip(on_cpu, on_gpu):
        assert gx.device.type == "cuda" and gx.is_contiguous(memory_format=torch.channels_last)
        torch.testing.assert_close(gx.cpu(), x, atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(gy.cpu(), y)


@pytest.mark.parametrize("residency", ["device", "stream"])
def test_image_batches_never_synchronise(residency):
    loader = _loader("cuda", residency)
    with no_sync():
        batches = list(loader.iter_epoch(2))
    assert len(batches) == 4 and batches[0][0].shape == (16, 3, 12, 12)


def test_tensor_loader_never_synchronises():
    loader = TensorLoader(torch.randn(64, 5), TARGETS, batch_size=16, device="cuda")
    with no_sync():
        batches = list(loader.iter_epoch(0))
    assert len(batches) == 4 and batches[0][0].device.type == "cuda"


class NoSyncInStep(Callback):
    """Forward, loss, backward and optimizer step of every batch must not synchronise."""

    def __init__(self):
        self.checked = 0

    def before_batch(self):
        torch.cuda.synchronize()
        torch.cuda.set_sync_debug_mode("error")

    def after_step(self):
        torch.cuda.set_sync_debug_mode(0)
        self.checked += 1


def test_learner_training_step_never_synchronises():
    guard = NoSyncInStep()
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                          nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 4))
    train = _loader("cuda", augment=["flip", "translate(2)"])
    learner = Learner(model, (train, None), optimizer="sgd", lr=0.1, device="cuda", precision="bf16",
                      channels_last=True, clip_grad_norm=1.0, callbacks=[guard], log_every=1000)
    try:
        learner.fit(1)
    finally:
        torch.cuda.set_sync_debug_mode(0)
    assert guard.checked == len(train) == 4
