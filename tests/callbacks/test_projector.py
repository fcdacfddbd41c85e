"""TensorBoard's Embedding Projector data: files per write, the layer's shape, labels, the model untouched."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from epochal.callbacks.projector import sample_labels
from epochal.callbacks.tensorboard import TensorBoard


def _mlp() -> nn.Module:
    return nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 2))


def _writes(folder, tag):
    return sorted(p for p in folder.glob(f"*/{tag}") if (p / "tensors.tsv").is_file())


@pytest.mark.parametrize(("layer", "width"), [("0", 6), (None, 6), ("2", 2)])
def test_projector_files_appear_every_n_epochs_with_the_layers_shape(make_learner, tmp_path, layer, width):
    callback = TensorBoard(embeddings_freq=2, embeddings_layer=layer, embeddings_samples=20)
    learner = make_learner(tmp_path, [callback], model=_mlp)
    learner.fit(4)
    tag = layer or "features"
    writes = _writes(tmp_path / "tensorboard", tag)
    assert [int(p.parent.name) for p in writes] == [8, 16]  # after epochs 2 and 4 (4 steps each)
    points = np.loadtxt(writes[-1] / "tensors.tsv", delimiter="\t", ndmin=2)
    assert points.shape == (20, width)
    torch.manual_seed(0)  # make_learner's data: validation is its first 32 samples, in order
    x = torch.randn(64, 4)
    y = (x[:, 0] > 0).long()[:20]
    labels = (writes[-1] / "metadata.tsv").read_text().split()
    assert labels == [str(int(v)) for v in y]
    model = learner.model.eval()
    with torch.no_grad():
        if layer == "2":
            expected = model(x[:20])
        else:  # the first Linear's output (layer 0) or the final Linear's input (after the ReLU)
            expected = model[0](x[:20]) if layer == "0" else model[1](model[0](x[:20]))
    np.testing.assert_allclose(points, expected.numpy(), rtol=1e-4, atol=1e-5)
    config = (tmp_path / "tensorboard" / "projector_config.pbtxt").read_text()
    assert config.count("tensor_path") == 2


def test_projector_leaves_the_models_mode_and_training(make_learner, tmp_path):
    plain = make_learner(tmp_path / "a", [], model=_mlp)
    plain.fit(2)
    projected = make_learner(tmp_path / "b", [TensorBoard(embeddings_freq=1, embeddings_samples=8)], model=_mlp)
    projected.fit(2)
    for key, value in plain.model.state_dict().items():
        assert torch.equal(value, projected.model.state_dict()[key]), key
    assert projected.model.training == plain.model.training


def test_unknown_layer_is_refused_before_training(make_learner, tmp_path):
    learner = make_learner(tmp_path, [TensorBoard(embeddings_freq=1, embeddings_layer="3")], model=_mlp)
    with pytest.raises(ValueError, match="embeddings_layer"):
        learner.fit(1)
    assert learner.history == []


@pytest.mark.parametrize("key", ["embeddings_freq", "embeddings_samples"])
def test_bad_embedding_settings_are_refused(key):
    with pytest.raises(ValueError, match=key):
        TensorBoard(**{key: -1})


def test_labels_name_classes_and_multi_label_sets():
    assert sample_labels(torch.tensor([1, 0]), ["cat", "dog"]) == ["dog", "cat"]
    assert sample_labels(torch.tensor([[1.0, 1.0], [0.0, 0.0]]), ["a", "b"]) == ["a|b", "-"]
    assert sample_labels(torch.tensor([0.5]), None) == ["0.5"]
