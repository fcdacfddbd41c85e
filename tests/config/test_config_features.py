"""Feature extraction: a frozen backbone's cached features, a head trained on them, a whole-network run."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from epochal.config import ConfigError, load_config
from epochal.config.experiment import train
from epochal.config.features import head_from_features, pooled_features
from epochal.config.inference import evaluate, restore_model
from epochal.state import load_checkpoint

TINY = ["data.image_size=16", "data.batch_size=8", "model.widths=[8,16,16]", "callbacks.progress_bar=null",
        "trainer.device=cpu", "trainer.plots=false"]


@pytest.fixture(scope="module")
def source_run(tiny_images, tmp_path_factory) -> dict:
    config = load_config("default", [*TINY, f"data.path={tiny_images}", "epochs=1"])
    return train(config, out=tmp_path_factory.mktemp("source"), progress=False)


def _feature_recipe(images: Path, weights: str, cache: Path, extra: tuple[str, ...] = ()) -> list[str]:
    return [*TINY, f"data.path={images}", f"model.weights={weights}", "model.freeze=backbone",
            "data.cache_features=true", "data.augment=null", f"data.options.cache_dir={cache}",
            "epochs=3", "callbacks.model_checkpoint.monitor=valid/loss", *extra]


def _tensors(run_dir: str) -> dict[str, torch.Tensor]:
    return load_checkpoint(Path(run_dir) / "checkpoints" / "last.pt")["model"]


def test_head_trains_on_cached_features_and_the_run_is_the_whole_network(source_run, tiny_images, tmp_path):
    config = load_config("default", _feature_recipe(tiny_images, source_run["run_dir"], tmp_path / "cache"))
    first = train(config, out=tmp_path / "runs", progress=False)
    before, after = _tensors(source_run["run_dir"]), _tensors(first["run_dir"])
    assert set(after) == set(before)  # the whole network, not the head alone
    changed = sorted(k for k in before if not torch.equal(before[k], after[k]))
    assert changed and all(k.startswith("head.fc.") for k in changed)  # BN statistics included: frozen
    cached = list((tmp_path / "cache" / "features").glob("*.pt"))
    assert len(cached) == 2  # the training and the validation split
    # the run evaluates from images like any run: its best checkpoint's validation loss, from images
    result = evaluate(first["run_dir"], device="cpu")
    assert result["metrics"]["loss"] == pytest.approx(first["best"]["loss"], rel=1e-4)
    written = {p: p.stat().st_mtime_ns for p in cached}
    second = train(config, out=tmp_path / "runs", progress=False)  # reads the cache: same numbers
    assert {p: p.stat().st_mtime_ns for p in cached} == written
    assert second["metrics"]["loss"] == pytest.approx(first["metrics"]["loss"], rel=1e-6)


def test_cached_features_are_the_networks_pooled_features(source_run, tiny_images, tmp_path):
    from epochal.config.builders import build_data, build_model
    from epochal.config.features import apply_freeze, feature_data

    config = load_config("default", _feature_recipe(tiny_images, source_run["run_dir"], tmp_path / "cache"))
    images = build_data(config, "cpu")
    model = build_model(config, images)
    apply_freeze(config, model)
    model.eval()
    x, _ = next(iter(images.valid.iter_epoch(0)))
    with torch.no_grad():
        expected_logits = model(x)
    data = feature_data(config, model, images, "cpu")
    features, _ = next(iter(data.valid.iter_epoch(0)))
    with torch.no_grad():
        torch.testing.assert_close(features, pooled_features(model, x))
        torch.testing.assert_close(model(features), expected_logits)  # forward is now the head on features
        torch.testing.assert_close(head_from_features(model, features), expected_logits)
    assert data.info["feature_cache"]["valid_hit"] is False
    assert feature_data(config, model, images, "cpu").info["feature_cache"]["valid_hit"] is True


def test_other_weights_get_other_cache_entries(source_run, tiny_images, tmp_path):
    config = load_config("default", _feature_recipe(tiny_images, source_run["run_dir"], tmp_path / "cache"))
    train(config, out=tmp_path / "runs", progress=False)
    scratch = load_config("default", _feature_recipe(tiny_images, source_run["run_dir"], tmp_path / "cache",
                                                     ("model.weights=null",)))
    with pytest.warns(UserWarning, match="random"):
        train(scratch, out=tmp_path / "runs", progress=False)
    assert len(list((tmp_path / "cache" / "features").glob("*.pt"))) == 4


def test_damaged_cache_file_is_recomputed(source_run, tiny_images, tmp_path):
    config = load_config("default", _feature_recipe(tiny_images, source_run["run_dir"], tmp_path / "cache"))
    first = train(config, out=tmp_path / "runs", progress=False)
    for path in (tmp_path / "cache" / "features").glob("*.pt"):
        path.write_bytes(path.read_bytes()[:100])
    second = train(config, out=tmp_path / "runs", progress=False)
    assert second["metrics"]["loss"] == pytest.approx(first["metrics"]["loss"], rel=1e-6)


def test_freeze_backbone_without_cache_trains_only_the_head(source_run, tiny_images, tmp_path):
    config = load_config("default", [*TINY, f"data.path={tiny_images}", f"model.weights={source_run['run_dir']}",
                                     "model.freeze=backbone", "epochs=1"])
    run = train(config, out=tmp_path / "runs", progress=False)
    before, after = _tensors(source_run["run_dir"]), _tensors(run["run_dir"])
    changed = sorted(k for k in before if not torch.equal(before[k], after[k]))
    assert changed and all(k.startswith("head.fc.") for k in changed)
    model, *_ = restore_model(run["run_dir"])
    assert model.head.fc.weight.shape[0] == 3


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["data.cache_features=true", "data.augment=null"], "set model.freeze: backbone"),
        (["data.cache_features=true", "model.freeze=backbone", "data.augment=[flip]"], "without augmentation"),
        (["model.freeze=backbone", "phases=[{epochs: 1, freeze: true}]"], "conflicts with model.freeze"),
    ],
)
def test_conflicting_settings_are_refused(tiny_images, overrides, message):
    with pytest.raises(ConfigError, match=message):
        load_config("default", [*TINY, f"data.path={tiny_images}", *overrides])


def test_model_without_classifier_head_is_refused(tiny_images, tmp_path):
    from epochal.config.features import trainable_head

    with pytest.raises(ConfigError, match="ClassifierHead"):
        trainable_head(torch.nn.Linear(2, 2))
