"""Multi-label end to end: defaults chosen from the data, mixup soft targets, thresholds through train/eval/predict."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml
from typer.testing import CliRunner

from epochal.cli.main import app
from epochal.config import load_config
from epochal.config.experiment import build_learner

runner = CliRunner()


def _recipe(path: Path, data: Path, **extra) -> Path:
    """A tiny recipe that names no loss and no metrics."""
    recipe = {
        "name": "ml", "epochs": 2, "seed": 0,
        "data": {"path": str(data), "valid_pct": 0.25, "image_size": 16, "batch_size": 8, "augment": ["flip"],
                 "options": {"progress": False}},
        "model": {"name": "airbench", "widths": [8, 16, 16]},
        "optimizer": {"name": "sgd", "lr": 0.05},
        "callbacks": {"model_checkpoint": {}},
        "trainer": {"device": "cpu", "plots": False},
        **extra,
    }
    path.write_text(yaml.safe_dump(recipe))
    return path


def test_defaults_come_from_the_labels(tiny_multi_label, tiny_images, tmp_path):
    multi, _ = build_learner(load_config(str(_recipe(tmp_path / "m.yaml", tiny_multi_label))), progress=False)
    assert isinstance(multi.loss_fn, torch.nn.BCEWithLogitsLoss)
    assert [m.name for m in multi.metrics] == ["f1", "f1_macro", "mAP"]
    single, _ = build_learner(load_config(str(_recipe(tmp_path / "s.yaml", tiny_images))), progress=False)
    assert isinstance(single.loss_fn, torch.nn.CrossEntropyLoss)
    assert [m.name for m in single.metrics] == ["accuracy"]


def test_loss_arguments_without_a_name_are_checked_against_the_chosen_loss(tiny_multi_label, tmp_path):
    recipe = _recipe(tmp_path / "m.yaml", tiny_multi_label, loss={"pos_weight": "balanced"})
    learner, _ = build_learner(load_config(str(recipe)), progress=False)
    assert learner.loss_fn.pos_weight is not None
    smoothing = _recipe(tmp_path / "s.yaml", tiny_multi_label, loss={"label_smoothing": 0.1})
    with pytest.raises(ValueError, match=r"'label_smoothing' of loss 'bce_with_logits'.*sets no loss.name"):
        build_learner(load_config(str(smoothing)), progress=False)
    with pytest.raises(ValueError, match=r"fit none of the losses chosen from the data.*set loss.name"):
        load_config(str(_recipe(tmp_path / "x.yaml", tiny_multi_label, loss={"gamma": 2.0})))


@pytest.mark.parametrize("mix", [{"name": "mixup", "alpha": 0.4}, {"name": "cutmix", "alpha": 1.0}])
def test_mixing_gives_soft_multi_hot_targets_that_bce_takes(tiny_multi_label, tmp_path, mix):
    recipe = _recipe(tmp_path / "m.yaml", tiny_multi_label)
    config = load_config(str(recipe), [f"data.augment=[{json.dumps(mix)}]"])
    learner, _ = build_learner(config, progress=False)
    images, targets = next(iter(learner.data.train.iter_epoch(0)))
    assert targets.dtype == torch.float32 and targets.shape[1] == 4
    assert ((targets > 0) & (targets < 1)).any() and targets.min() >= 0 and targets.max() <= 1
    loss = learner.loss_fn(learner.model(images), targets)
    assert torch.isfinite(loss)


def _cli(*args: str) -> dict:
    result = runner.invoke(app, [*args, "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout.splitlines()[-1])


def test_train_tunes_thresholds_that_eval_and_predict_use(tiny_multi_label, tiny_images, tmp_path):
    recipe = _recipe(tmp_path / "m.yaml", tiny_multi_label)
    trained = _cli("train", str(recipe), "--out", str(tmp_path / "runs"), "--no-progress")
    run = Path(trained["run_dir"])
    assert trained["chosen_from_data"] == {"loss": "bce_with_logits", "metrics": ["f1", "f1_macro", "mAP"]}
    saved_config = yaml.safe_load((run / "config.yaml").read_text())
    assert saved_config["loss"]["name"] == "bce_with_logits"
    record = json.loads((run / "thresholds.json").read_text())
    assert record["classes"] == ["blue", "bright", "green", "red"] and record["n"] == 6
    assert trained["thresholds"]["at_thresholds"] == record["valid"]["at_thresholds"]
    # the tuned thresholds are chosen for each class's F1, so none of them is below its F1 at 0.5
    assert record["valid"]["at_thresholds"]["f1_macro"] >= record["valid"]["at_0.5"]["f1_macro"]

    evaluated = _cli("eval", str(run))["metrics"]
    assert evaluated["f1"] == pytest.approx(record["valid"]["at_0.5"]["f1_micro"])
    assert evaluated["f1_macro"] == pytest.approx(record["valid"]["at_0.5"]["f1_macro"])
    assert evaluated["f1_at_thresholds"] == pytest.approx(record["valid"]["at_thresholds"]["f1_micro"])
    assert evaluated["f1_macro_at_thresholds"] == pytest.approx(record["valid"]["at_thresholds"]["f1_macro"])

    images = sorted(str(p) for p in (tiny_images / "red").glob("*.png"))[:3]
    rows = _cli("predict", str(run), *images, "--top-k", "4")["predictions"]
    for row in rows:
        scores = dict(row["top"])
        assert len(scores) == 4 and sum(scores.values()) != pytest.approx(1.0)  # sigmoids, not a softmax
        assert row["labels"] == [c for c in record["classes"] if scores[c] > record["thresholds"][c]]
    flipped = _cli("predict", str(run), *images, "--tta", "flip,translate", "--top-k", "4")["predictions"]
    assert [r["top"] for r in flipped] != [r["top"] for r in rows]
    refused = runner.invoke(app, ["eval", str(run), "--tta", "flip,flop"])
    assert refused.exit_code == 1 and "['flip', 'translate']" in refused.output
