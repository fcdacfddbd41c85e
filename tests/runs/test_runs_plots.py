"""Run plots: each function writes a real PNG whose content reflects its input."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from epochal.runs.plots import (
    confusion_matrix,
    plot_confusion_matrix,
    plot_history,
    read_history,
)


def _png(path):
    with Image.open(path) as image:
        assert image.format == "PNG"
        array = np.asarray(image.convert("L"))
    assert array.std() > 5  # not a blank canvas
    return image.size


def test_plot_history_from_metrics_jsonl(tmp_path):
    records = [
        {"epoch": e, "train/loss": 2.0 - e * 0.3, "valid/loss": 2.1 - e * 0.2, "valid/accuracy": 0.2 * e}
        for e in range(4)
    ]
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    history = read_history(tmp_path)
    assert history == records
    wide = _png(plot_history(history, tmp_path / "curves.png", title="run"))
    narrow = _png(plot_history([{"epoch": 0, "train/loss": 1.0}], tmp_path / "one.png"))
    assert wide[0] > 1.5 * narrow[0]  # a second panel for accuracy
    with pytest.raises(ValueError, match="empty"):
        plot_history([], tmp_path / "x.png")


def test_confusion_matrix_counts_and_plot(tmp_path):
    targets = torch.tensor([0, 0, 1, 1, 2, 2])
    scores = torch.nn.functional.one_hot(torch.tensor([0, 1, 1, 1, 2, 0]), 3).float()
    matrix = confusion_matrix(scores, targets, 3)
    assert matrix.tolist() == [[1, 1, 0], [0, 2, 0], [1, 0, 1]]
    assert confusion_matrix(torch.tensor([0, 1]), torch.tensor([1, 1]), 2).tolist() == [[0, 0], [1, 1]]
    _png(plot_confusion_matrix(matrix, ["cat", "dog", "frog"], tmp_path / "cm.png"))
    with pytest.raises(ValueError, match="does not match"):
        plot_confusion_matrix(matrix, ["a", "b"], tmp_path / "bad.png")


def test_plot_history_draws_averaged_weights_beside_the_live_model(tmp_path, monkeypatch):
    import epochal.runs.plots as plots

    figures = []
    monkeypatch.setattr(plots, "_save", lambda fig, path: figures.append(fig) or path)
    records = [{"epoch": e, "train/loss": 1.0 - 0.1 * e, "valid/loss": 1.1 - 0.1 * e, "valid_swa/loss": 1.0 - 0.15 * e,
                "valid/accuracy": 0.5 + 0.1 * e, "valid_swa/accuracy": 0.55 + 0.1 * e} for e in range(3)]
    plot_history(records, tmp_path / "curves.png")
    loss, accuracy = figures[0].axes[:2]
    assert [line.get_label() for line in loss.lines] == ["train", "valid", "valid_swa"]
    assert [line.get_label() for line in accuracy.lines] == ["valid", "valid_swa"]
