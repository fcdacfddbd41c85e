"""The recipe key ``distillation``: a run folder becomes the teacher of a recipe's model, end to end."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml

from epochal.callbacks import Distillation
from epochal.config import ConfigError, load_config
from epochal.config.experiment import build_learner, train
from epochal.config.inference import restore_model

from .conftest import colour_folder
from .test_config_experiment import TINY

RGB = {"red": (200, 30, 30), "green": (30, 200, 30), "blue": (30, 30, 200)}


@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("distil")
    two = {"red": RGB["red"], "green": RGB["green"]}
    return {"rgb": colour_folder(root / "rgb", RGB), "rg": colour_folder(root / "rg", two)}


def recipe(folder: Path, *extra: str):
    return load_config("default", [*TINY, f"data.path={folder}", "epochs=2", "trainer.plots=false", *extra])


@pytest.fixture(scope="module")
def teacher_run(folders, tmp_path_factory) -> Path:
    config = recipe(folders["rgb"], "model.widths=[16,32,32]", "name=teacher")
    return Path(train(config, out=tmp_path_factory.mktemp("teacher"), progress=False)["run_dir"])


def test_a_run_folder_teaches_a_recipe_end_to_end(folders, teacher_run, tmp_path):
    distil = [f"distillation={{teacher: {teacher_run}, temperature: 3, alpha: 0.9}}"]
    learner, _ = build_learner(recipe(folders["rgb"], *distil), device="cpu", progress=False)
    callback = learner.get_callback(Distillation)
    assert callback.loss.temperature == 3.0 and callback.loss.alpha == 0.9
    expected = restore_model(teacher_run)[0].state_dict()  # the run's best checkpoint, rebuilt from its recipe
    for key, value in callback.teacher.state_dict().items():
        assert torch.equal(value, expected[key]), key

    alone = train(recipe(folders["rgb"]), out=tmp_path / "alone", progress=False)
    no_soft = train(recipe(folders["rgb"], f"distillation={{teacher: {teacher_run}, alpha: 0}}"),
                    out=tmp_path / "alpha0", progress=False)
    distilled = train(recipe(folders["rgb"], *distil), out=tmp_path / "distilled", progress=False)

    def train_losses(result):
        lines = (Path(result["run_dir"]) / "metrics.jsonl").read_text().splitlines()
        return [yaml.safe_load(line)["train/loss"] for line in lines]

    assert train_losses(no_soft) == train_losses(alone)  # alpha 0: exactly the plain run
    assert train_losses(distilled) != train_losses(alone)
    assert distilled["epochs"] == 2 and 0.0 <= distilled["metrics"]["accuracy"] <= 1.0
    saved = yaml.safe_load((Path(distilled["run_dir"]) / "config.yaml").read_text())
    assert saved["distillation"] == {"teacher": str(teacher_run), "temperature": 3.0, "alpha": 0.9, "cache_dir": None}


def test_a_teacher_of_other_classes_or_no_run_is_refused(folders, teacher_run, tmp_path):
    with pytest.raises(ConfigError, match=r"predicts the classes \['blue', 'green', 'red'\].*\['green', 'red'\]"):
        build_learner(recipe(folders["rg"], f"distillation={{teacher: {teacher_run}}}"), device="cpu")
    with pytest.raises(ConfigError, match="distillation.teacher .*nowhere"):
        build_learner(recipe(folders["rgb"], f"distillation={{teacher: {tmp_path / 'nowhere'}}}"), device="cpu")


def test_cache_dir_with_augmentation_warns(folders, teacher_run, tmp_path):
    config = recipe(folders["rgb"], f"distillation={{teacher: {teacher_run}, cache_dir: {tmp_path / 'logits'}}}",
                    "epochs=1")
    with pytest.warns(UserWarning, match="not cached: the training data are augmented"):
        train(config, out=tmp_path / "runs", progress=False)
    assert not (tmp_path / "logits").exists()


def test_distillation_is_a_recipe_section_not_a_named_callback():
    with pytest.raises(ConfigError, match="unknown callback 'distillation'"):
        load_config("default", ["callbacks.distillation={temperature: 2}"])
    with pytest.raises(ConfigError, match="alpha"):
        load_config("default", ["distillation={teacher: runs/x, alpha: 1.5}"])
