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


@pytest.fixture(scope="module")
def ml_run(tiny_multi_label, tmp_path_factory) -> tuple[Path, dict]:
    """A multi-label run trained through ``epochal train``, and its train result."""
    tmp = tmp_path_factory.mktemp("ml-run")
    trained = _cli("train", str(_recipe(tmp / "m.yaml", tiny_multi_label)), "--out", str(tmp / "runs"), "--no-progress")
    return Path(trained["run_dir"]), trained


@pytest.fixture(scope="module")
def red_images(tiny_images) -> list[str]:
    return sorted(str(p) for p in (tiny_images / "red").glob("*.png"))[:3]


def test_train_chooses_bce_and_saves_tuned_thresholds(ml_run):
    run, trained = ml_run
    assert trained["chosen_from_data"] == {"loss": "bce_with_logits", "metrics": ["f1", "f1_macro", "mAP"]}
    saved_config = yaml.safe_load((run / "config.yaml").read_text())
    assert saved_config["loss"]["name"] == "bce_with_logits"
    assert saved_config["metrics"] == ["f1", "f1_macro", "mAP"]
    record = json.loads((run / "thresholds.json").read_text())
    assert record["classes"] == ["blue", "bright", "green", "red"] and record["n"] == 6
    assert record["checkpoint"] == "checkpoints/best.pt"
    assert trained["thresholds"]["at_thresholds"] == record["valid"]["at_thresholds"]
    assert trained["thresholds"]["at_0.5"]["f1_micro"] == pytest.approx(trained["metrics"]["f1"])
    # each class's threshold maximises its own F1 over cuts that include 0.5's, so macro F1 cannot drop
    assert record["valid"]["at_thresholds"]["f1_macro"] >= record["valid"]["at_0.5"]["f1_macro"]


def test_eval_reports_f1_at_half_and_at_the_saved_thresholds(ml_run):
    run, _ = ml_run
    record = json.loads((run / "thresholds.json").read_text())
    evaluated = _cli("eval", str(run))["metrics"]
    assert evaluated["f1"] == pytest.approx(record["valid"]["at_0.5"]["f1_micro"])
    assert evaluated["f1_macro"] == pytest.approx(record["valid"]["at_0.5"]["f1_macro"])
    assert evaluated["f1_at_thresholds"] == pytest.approx(record["valid"]["at_thresholds"]["f1_micro"])
    assert evaluated["f1_macro_at_thresholds"] == pytest.approx(record["valid"]["at_thresholds"]["f1_macro"])


def test_predict_lists_every_class_above_its_threshold(ml_run, red_images):
    run, _ = ml_run
    record = json.loads((run / "thresholds.json").read_text())
    rows = _cli("predict", str(run), *red_images, "--top-k", "4")["predictions"]
    assert len(rows) == 3
    for row in rows:
        scores = dict(row["top"])
        assert len(scores) == 4 and sum(scores.values()) != pytest.approx(1.0)  # sigmoids, not a softmax
        assert row["labels"] == [c for c in record["classes"] if scores[c] > record["thresholds"][c]]
    flipped = _cli("predict", str(run), *red_images, "--tta", "flip,translate", "--top-k", "4")["predictions"]
    assert [r["top"] for r in flipped] != [r["top"] for r in rows]
    refused = runner.invoke(app, ["eval", str(run), "--tta", "flip,flop"])
    assert refused.exit_code == 1 and "['flip', 'translate']" in refused.output


def test_a_multi_label_ensemble_predicts_at_one_half_from_mixed_sigmoids(ml_run, red_images):
    from epochal.config.inference import predict

    run, _ = ml_run
    alone = predict(run, red_images, top_k=4, device="cpu")
    rows = predict([run, run], red_images, top_k=4, device="cpu", combine="sigmoid")
    for single, row in zip(alone, rows):
        assert dict(row["top"]) == pytest.approx(dict(single["top"]), abs=1e-5)
        assert row["labels"] == [c for c, p in sorted(row["top"], key=lambda t: t[0]) if p > 0.5]
    with pytest.raises(ValueError, match="use --combine sigmoid"):
        predict([run, run], red_images, device="cpu")
