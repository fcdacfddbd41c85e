"""The decision threshold chosen on the validation split (``trainer.decision``) and its use by eval and predict."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from epochal.cli.main import app
from epochal.config import ConfigError, load_config
from epochal.config.decision import choose_threshold, decide, decision_metrics, read_decision
from epochal.config.experiment import train
from epochal.config.inference import evaluate, predict

TABLE = ["data.batch_size=32", "callbacks.progress_bar=null", "model.hidden=[16]", "epochs=3", "trainer.plots=false"]


def test_decision_metrics_match_a_hand_count():
    probs = torch.tensor([0.9, 0.8, 0.4, 0.3, 0.2, 0.6])
    actual = torch.tensor([1, 0, 1, 0, 0, 0]).bool()
    # at 0.5: predicted positive 0, 1, 5 -> tp 1, fp 2, fn 1, tn 2
    metrics = decision_metrics(probs, actual, 0.5)
    assert metrics["accuracy"] == pytest.approx(3 / 6)
    assert metrics["f1"] == pytest.approx(2 * 1 / (2 * 1 + 2 + 1))
    assert metrics["balanced_accuracy"] == pytest.approx(0.5 * (1 / 2 + 2 / 4))


@pytest.mark.parametrize("metric", ["accuracy", "f1", "balanced_accuracy"])
def test_the_chosen_threshold_is_as_good_as_any_cut(metric):
    generator = torch.Generator().manual_seed(0)
    probs = torch.rand(60, generator=generator)
    actual = (probs + 0.4 * torch.rand(60, generator=generator)) > 0.8
    threshold, value = choose_threshold(probs, actual, metric)
    assert decision_metrics(probs, actual, threshold)[metric] == pytest.approx(value)
    brute = max(decision_metrics(probs, actual, float(t))[metric] for t in itertools.chain(probs, [0.0, 1.0]))
    assert value == pytest.approx(brute)
    assert not (probs == threshold).any()


def test_ties_keep_the_threshold_nearest_one_half():
    probs, actual = torch.tensor([0.1, 0.9]), torch.tensor([False, True])
    assert choose_threshold(probs, actual, "accuracy")[0] == pytest.approx(0.5)


def test_decide_picks_the_positive_class_above_the_threshold():
    probs = torch.tensor([[0.7, 0.3], [0.4, 0.6], [0.9, 0.1]])
    decision = {"positive_index": 1, "threshold": 0.2}
    assert decide(probs, decision).tolist() == [1, 1, 0]
    assert decide(probs, {"positive_index": 0, "threshold": 0.8}).tolist() == [1, 1, 0]


def test_a_bad_decision_key_is_refused_when_the_recipe_loads():
    with pytest.raises(ConfigError, match="precision"):
        load_config("tabular-adult", ["trainer.decision.metric=precision"])


def test_training_chooses_saves_and_uses_the_threshold(tiny_table, tmp_path):
    config = load_config(
        "tabular-adult", [*TABLE, f"data.path={tiny_table}", "data.target=y", "trainer.decision.metric=f1"]
    )
    result = train(config, out=tmp_path / "runs", progress=False)
    run = Path(result["run_dir"])
    saved = read_decision(run)
    assert saved == result["decision"] and saved["metric"] == "f1" and saved["positive"] == "yes"
    assert saved["valid"]["f1"] >= saved["valid_at_half"]["f1"]
    evaluated = evaluate(run, device="cpu")  # the run's own validation split: the same numbers
    assert evaluated["decision"]["metrics"] == pytest.approx(saved["valid"])
    cli = CliRunner().invoke(app, ["eval", str(run), "--json"])
    assert cli.exit_code == 0, cli.output
    assert json.loads(cli.stdout.splitlines()[-1])["decision"]["threshold"] == pytest.approx(saved["threshold"])
    rows = predict(run, [tiny_table], top_k=2, device="cpu")
    for row in rows:
        p_yes = dict(row["top"])["yes"]
        assert row["class"] == ("yes" if p_yes > saved["threshold"] else "no")
        assert row["probability"] == pytest.approx(dict(row["top"])[row["class"]])


def test_multi_class_data_is_refused_naming_the_key(tmp_path):
    table = tmp_path / "three.csv"
    table.write_text("x,y\n" + "".join(f"{i % 7}.5,{'abc'[i % 3]}\n" for i in range(60)))
    overrides = [*TABLE, f"data.path={table}", "data.target=y", "trainer.decision.metric=accuracy"]
    config = load_config("tabular-adult", overrides)
    with pytest.raises(ConfigError, match="trainer.decision .* 3"):
        train(config, out=tmp_path / "runs", progress=False)
    assert not any((tmp_path / "runs").iterdir())  # refused before training: no run folder left


def test_a_regression_target_is_refused_naming_the_key(tiny_regression_table, tmp_path):
    overrides = [*TABLE, f"data.path={tiny_regression_table}", "data.target=y", "loss={name: mse}", "metrics=[]",
                 "model.init_bias=default", "callbacks.model_checkpoint={monitor: valid/loss}"]
    with pytest.raises(ConfigError, match="no classes .* set trainer.decision to null"):
        train(load_config("tabular-adult", overrides), out=tmp_path / "runs", progress=False)
