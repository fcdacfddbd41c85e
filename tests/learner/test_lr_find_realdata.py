"""The LR finder's suggestion beats 10x and 0.1x of itself on real images (CIFAR-10 JPEG subset)."""

import shutil

import pytest
import torch
from torch import nn

from epochal.data import image_folder_loaders
from epochal.learner import Learner
from epochal.schedules import one_cycle


def small_cnn() -> nn.Module:
    def block(cin, cout):
        return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(),
                             nn.MaxPool2d(2))

    return nn.Sequential(block(3, 32), block(32, 64), block(64, 128), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Linear(128, 10))


@pytest.fixture(scope="module")
def cifar_subset(cifar10_jpeg_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("cifar-subset")
    for folder in sorted(cifar10_jpeg_dir.iterdir()):
        (out / folder.name).mkdir()
        for path in sorted(folder.iterdir())[:300]:
            shutil.copy(path, out / folder.name / path.name)
    return out


@pytest.mark.slow  # three trainings on 3,000 JPEGs (2-4 min); the finder's math and behaviour have fast tests
@pytest.mark.realdata
def test_lr_find_suggestion_beats_ten_times_and_a_tenth(cifar_subset):
    data = image_folder_loaders(cifar_subset, valid_pct=0.2, seed=0, batch_size=64, augment=["flip"],
                                loader="cpu", progress=False)

    def learner():
        torch.manual_seed(0)
        return Learner(small_cnn(), data, optimizer="adamw", weight_decay=0.01, metrics=["accuracy"], device="cpu")

    suggestion = learner().lr_find(start=1e-6, end=10, num=80).suggestion
    losses = {}
    for factor in (0.1, 1.0, 10.0):
        trained = learner()
        trained.fit(one_cycle(3, suggestion * factor))
        losses[factor] = trained.history[-1]["valid/loss"]
    assert losses[1.0] < losses[0.1] and losses[1.0] < losses[10.0], (suggestion, losses)
