"""An autoencoder trained on unlabelled images (the loss gets the inputs), whose encoder feeds a classifier."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from epochal.config import ConfigError, load_config
from epochal.config.builders import build_loss
from epochal.config.experiment import train
from epochal.config.inference import evaluate, predict, restore_model
from epochal.data import image_folder_loaders, unlabelled_items
from epochal.state import load_checkpoint

#: The autoencoder recipe at 16 px: two strided layers (16 is divisible by 4), an 8-number code.
TINY_AE = ["data.image_size=16", "data.batch_size=4", "optimizer.lr=0.01", "model.widths=[8,16]", "model.latent_dim=8",
           "callbacks.progress_bar=null", "trainer.device=cpu", "trainer.plots=false", "data.valid_pct=0.25"]
#: The same encoder under a classifier head.
TINY_PROBE = [*TINY_AE, "epochs=12", "data.options.progress=false"]


@pytest.fixture(scope="module")
def unlabelled(tmp_path_factory) -> Path:
    """24 noisy 16x16 images of three colours, at several depths, with no class folders."""
    root = tmp_path_factory.mktemp("unlabelled")
    rng = np.random.default_rng(1)
    colours = [(200, 30, 30), (30, 200, 30), (30, 30, 200)]
    for i in range(24):
        folder = root / ("" if i % 3 == 0 else f"batch{i % 3}") / ("deep" if i % 4 == 0 else "")
        folder.mkdir(parents=True, exist_ok=True)
        pixels = np.clip(np.array(colours[i % 3]) + rng.normal(0, 30, (16, 16, 3)), 0, 255).astype(np.uint8)
        Image.fromarray(pixels).save(folder / f"{i}.png")
    return root


@pytest.fixture(scope="module")
def autoencoder_run(unlabelled, tmp_path_factory) -> dict:
    config = load_config("autoencoder", [*TINY_AE, f"data.path={unlabelled}", "epochs=12"])
    return train(config, out=tmp_path_factory.mktemp("ae-runs"), progress=False)


def test_unlabelled_items_are_every_image_at_any_depth_without_classes(unlabelled, tmp_path):
    items = unlabelled_items(unlabelled)
    assert len(items) == 24 and items.classes == [] and not items.multi_label
    assert {Path(p).name for p in items.paths} == {f"{i}.png" for i in range(24)}
    assert items.targets.tolist() == [0] * 24
    with pytest.raises(ValueError, match="no image files"):
        unlabelled_items(tmp_path)


def test_a_folder_without_class_folders_names_the_option_for_unlabelled_images(tmp_path):
    Image.fromarray(np.zeros((8, 8, 3), dtype=np.uint8)).save(tmp_path / "a.png")
    with pytest.raises(ValueError, match="data.options.unlabelled: true"):
        image_folder_loaders(tmp_path, progress=False)


def test_unlabelled_loaders_deliver_the_augmented_images_as_their_targets(unlabelled):
    data = image_folder_loaders(unlabelled, valid_pct=0.25, batch_size=6, augment=["flip", "translate(pad=2)"],
                                unlabelled=True, progress=False, drop_last=False)
    assert data.classes is None and data.info["task"] == "reconstruction" and data.info["num_classes"] == 0
    assert (data.info["train_size"], data.info["valid_size"]) == (18, 6)
    for loader in (data.train, data.valid):
        for x, y in loader.iter_epoch(0):
            assert y is x  # the very tensor the model sees: augmented and normalised
    plain = image_folder_loaders(unlabelled, valid_pct=0.25, batch_size=6, augment=None, unlabelled=True,
                                 progress=False, drop_last=False)
    flipped = next(iter(data.train.iter_epoch(0)))[0]
    assert not torch.equal(flipped, next(iter(plain.train.iter_epoch(0)))[0])  # the augmentation did run


@pytest.mark.parametrize(("setting", "value"), [("classes", ["a", "b"]), ("balance", "oversample"),
                                                 ("neutral_class", "a")])
def test_settings_that_need_labels_are_refused_for_unlabelled_images(unlabelled, setting, value):
    with pytest.raises(ValueError, match=f"{setting}=.*needs labels"):
        image_folder_loaders(unlabelled, unlabelled=True, progress=False, **{setting: value})


def test_a_label_csv_is_refused_as_unlabelled_data(unlabelled, tmp_path):
    labels = tmp_path / "labels.csv"
    labels.write_text(f"path,label\n{next(unlabelled.rglob('*.png'))},x\n")
    with pytest.raises(ValueError, match="label CSV"):
        image_folder_loaders(labels, unlabelled=True, progress=False)


def test_labelled_and_unlabelled_packs_of_one_folder_are_cached_apart(tiny_images, tmp_path):
    image_folder_loaders(tiny_images, cache_dir=tmp_path, progress=False)
    image_folder_loaders(tiny_images, cache_dir=tmp_path, unlabelled=True, progress=False)
    assert len([p for p in tmp_path.iterdir() if p.is_dir()]) == 2


def test_reconstruction_data_gets_mse_and_a_classification_loss_is_refused():
    info = {"task": "reconstruction", "num_classes": 0}
    config = load_config("autoencoder", ["loss.name=null"])
    assert isinstance(build_loss(config, info), torch.nn.MSELoss)
    config = load_config("autoencoder", ["loss.name=cross_entropy"])
    with pytest.raises(ValueError, match="the inputs themselves"):
        build_loss(config, info)


def test_models_that_do_not_reconstruct_are_refused_for_unlabelled_images_and_the_reverse():
    with pytest.raises(ConfigError, match="not a model that reconstructs its input"):
        load_config("autoencoder", ["model={name: resnet18}"])
    with pytest.raises(ConfigError, match=r"data.options.unlabelled: true"):
        load_config("default", ["model={name: conv_autoencoder}"])
    with pytest.raises(ConfigError, match="class frequencies"):
        load_config("autoencoder", ["model.init_bias=priors"])


def test_the_autoencoder_learns_to_reconstruct_unlabelled_images(autoencoder_run, unlabelled):
    lines = (Path(autoencoder_run["run_dir"]) / "metrics.jsonl").read_text().splitlines()
    history = [json.loads(line)["valid/loss"] for line in lines]
    assert len(history) == 12
    assert history[-1] < 0.5 * history[0]  # MSE on normalised pixels: a constant output scores about 1
    model, config, info, _ = restore_model(autoencoder_run["run_dir"])
    assert info["task"] == "reconstruction" and config.data.options["unlabelled"] is True
    assert model.default_input_size == (3, 16, 16)  # sized from the images
    # eval rebuilds the validation split: its loss is the run's best
    result = evaluate(autoencoder_run["run_dir"], device="cpu")
    assert result["metrics"]["loss"] == pytest.approx(autoencoder_run["best"]["loss"], rel=1e-4)
    assert result["n"] == 6


def test_predict_gives_each_images_reconstruction_error_and_code(autoencoder_run, unlabelled):
    from epochal.data import Normalize
    from epochal.data.decode import load_rgb_array

    files = sorted(unlabelled.rglob("*.png"))[:3]
    rows = predict(autoencoder_run["run_dir"], files, device="cpu")
    model, _, info, _ = restore_model(autoencoder_run["run_dir"])
    images = torch.stack([torch.from_numpy(load_rgb_array(f, size=(16, 16))) for f in files]).float() / 255
    images = Normalize(*(info["normalize"]["mean"], info["normalize"]["std"]))(images)
    model.eval()
    with torch.no_grad():
        errors = (model(images) - images).square().flatten(1).mean(1)
        codes = model.encode(images)
    assert [r["path"] for r in rows] == [str(f) for f in files]
    assert [r["reconstruction_error"] for r in rows] == pytest.approx(errors.tolist(), rel=1e-5)
    np.testing.assert_allclose([r["embedding"] for r in rows], codes.numpy(), rtol=1e-5, atol=1e-6)
    with pytest.raises(ConfigError, match="leave --tta out"):
        predict(autoencoder_run["run_dir"], files, tta=True, device="cpu")
    with pytest.raises(ConfigError, match="leave --tta out"):
        evaluate(autoencoder_run["run_dir"], tta=True, device="cpu")


def test_the_encoder_feeds_a_classifier_that_trains_its_head_on_cached_codes(autoencoder_run, tiny_images,
                                                                             tmp_path):
    overrides = [*TINY_PROBE, f"data.path={tiny_images}", f"model.weights={autoencoder_run['run_dir']}",
                 f"data.options.cache_dir={tmp_path / 'cache'}"]
    result = train(load_config("encoder-classifier", overrides), out=tmp_path / "runs", progress=False)
    source = load_checkpoint(Path(autoencoder_run["run_dir"]) / "checkpoints/best.pt")["model"]
    encoder = {k: v for k, v in source.items() if k.startswith("encoder.")}
    after = load_checkpoint(Path(result["run_dir"]) / "checkpoints/last.pt")["model"]
    assert encoder and all(torch.equal(after[k], v) for k, v in encoder.items())  # loaded, then frozen (BN too)
    assert sorted(k for k in after if not k.startswith("encoder.")) == ["head.fc.bias", "head.fc.weight"]
    assert len(list((tmp_path / "cache" / "features").glob("*.pt"))) == 2  # codes of both splits, cached
    assert result["metrics"]["accuracy"] > 0.5  # three colours: the code tells them apart
    summary = json.loads((Path(result["run_dir"]) / "summary.json").read_text())
    assert summary["status"] == "finished"


def test_an_encoder_of_another_size_is_reported(autoencoder_run, tiny_images, tmp_path):
    overrides = [*TINY_PROBE, f"data.path={tiny_images}", f"model.weights={autoencoder_run['run_dir']}",
                 "model.latent_dim=4", f"data.options.cache_dir={tmp_path / 'cache'}"]
    with pytest.warns(UserWarning, match=r"encoder\.3\.weight"):  # the code layer: 16*4*4 -> 4, not -> 8
        train(load_config("encoder-classifier", overrides), out=tmp_path / "runs", progress=False)


def test_epochal_predict_writes_errors_and_codes_as_csv(autoencoder_run, unlabelled, tmp_path):
    from typer.testing import CliRunner

    from epochal.cli.main import app

    out = tmp_path / "codes.csv"
    files = [str(f) for f in sorted(unlabelled.rglob("*.png"))[:2]]
    done = CliRunner().invoke(app, ["predict", autoencoder_run["run_dir"], *files, "--out", str(out), "--json"])
    assert done.exit_code == 0, done.output
    rows = list(csv.reader(out.open()))
    assert rows[0] == ["path", "reconstruction_error", *(f"code_{i}" for i in range(8))]
    assert [r[0] for r in rows[1:]] == files
    assert json.loads(done.stdout.strip().splitlines()[-1])["n"] == 2


def test_sanity_check_of_an_autoencoder_skips_the_label_checks(unlabelled):
    from epochal.config.experiment import build_learner
    from epochal.diagnostics import sanity_check

    config = load_config("autoencoder", [*TINY_AE, f"data.path={unlabelled}", "data.options.progress=false"])
    learner, _ = build_learner(config, progress=False)
    report = sanity_check(learner, max_steps=300, lr=1e-2, sample_size=64)
    checks = {c.name: c for c in report.checks}
    labels = checks["labels_constant"]
    assert labels.passed is None and "the targets are the inputs" in labels.message
    assert checks["overfit"].passed is True and report.passed
    short = sanity_check(learner, max_steps=2, lr=1e-2, sample_size=64, skip=["lr_sweep"])
    short = {c.name: c for c in short.checks}["overfit"]
    assert short.passed is False and "target loss <= 0.05 x the first loss)" in short.message  # no accuracy
