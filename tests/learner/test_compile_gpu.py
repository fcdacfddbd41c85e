"""CUDA graphs under ``compile_mode``: the Learner trains, validates, predicts and runs TTA as without them.

``compile_mode="reduce-overhead"`` (and ``"max-autotune"``, airbench's) replays each step as a CUDA
graph, which writes every replay's outputs into the same memory: code that keeps an output across
calls reads a later call's values. The same inductor kernels run with and without the graphs, so the
two fits must agree to rounding. These tests run with ``pytest -m gpu`` on a machine with CUDA.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from epochal.data.augment import predict_tta
from epochal.data.base import ArrayLoader
from epochal.learner import Learner

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA (run with -m gpu on a GPU machine)"),
]


def _fit(mode: str | None):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                          nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 4))
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(64, 3, 16, 16, generator=g), torch.arange(64) % 4
    train = ArrayLoader(x, y, batch_size=16, shuffle=True, seed=0)
    valid = ArrayLoader(x[:24], y[:24], batch_size=8)  # 3 batches: scores collected across calls
    learner = Learner(model, (train, valid), optimizer="sgd", lr=0.1, device="cuda", metrics=["accuracy", "auroc"],
                      compile=True, compile_mode=mode, channels_last=True)
    learner.fit(2)
    preds = learner.predict(valid)
    learner.model.eval()
    with torch.no_grad():
        tta = torch.cat([predict_tta(learner.model_call, xb.cuda(), flip=True, translate=1, translate_weight=0.5)
                         for xb, _ in valid.iter_epoch(0)])
    return learner.history, preds, tta.cpu()


def test_cuda_graphs_train_validate_predict_and_tta_as_without_them():
    history, preds, tta = _fit(None)
    graphs_history, graphs_preds, graphs_tta = _fit("reduce-overhead")
    for plain, graphs in zip(history, graphs_history, strict=True):
        for key in ("train/loss", "valid/loss", "valid/accuracy", "valid/auroc"):
            assert graphs[key] == pytest.approx(plain[key], rel=1e-4, abs=1e-5), key
    torch.testing.assert_close(graphs_preds, preds, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(graphs_tta, tta, rtol=1e-4, atol=1e-5)
