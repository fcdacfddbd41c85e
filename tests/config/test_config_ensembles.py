"""Ensembles of runs: `epochal eval RUN1 RUN2 ...` (equal, given, fitted weights; snapshots), text and JSON,
each member's metrics beside the ensemble's, and `epochal predict` with several runs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from epochal.cli.main import app
from epochal.config import load_config
from epochal.config.ensembles import evaluate_ensemble, parse_weights, restore_ensemble
from epochal.config.experiment import train
from epochal.config.inference import evaluate, predict

TINY = ["data.image_size=16", "data.batch_size=8", "model.widths=[8,16,16]", "callbacks.progress_bar=null"]
runner = CliRunner()


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    rng = np.random.default_rng(1)
    root = tmp_path_factory.mktemp("colours")
    for name, colour in {"red": (200, 30, 30), "green": (30, 200, 30), "blue": (30, 30, 200)}.items():
        (root / name).mkdir()
        for i in range(14):
            pixels = np.clip(np.array(colour) + rng.normal(0, 70, (16, 16, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(root / name / f"{i}.png")
    return root


@pytest.fixture(scope="module")
def runs(folder, tmp_path_factory) -> dict[str, Path]:
    """Two plain runs (different learning rates) and a 3-cycle SGDR run with snapshots, same split."""
    out = tmp_path_factory.mktemp("runs")
    base = [*TINY, f"data.path={folder}", "epochs=3", "loss.label_smoothing=0.0"]  # the loss is the log loss
    made = {}
    for name, extra in {"a": ["optimizer.lr=0.2"], "b": ["optimizer.lr=0.05", "seed=0"],
                        "snap": ["phases={schedule: sgdr, cycle_len: 1, n_cycles: 3}", "callbacks.snapshot_ensemble={}"]
                        }.items():
        made[name] = Path(train(load_config("default", [*base, *extra]), out=out, progress=False)["run_dir"])
    return made


def test_members_and_the_ensemble_are_scored_on_the_same_samples(runs):
    result = evaluate_ensemble([runs["a"], runs["b"]], device="cpu")
    assert result["weights"] == [0.5, 0.5] and result["combine"] == "probs" and result["n"] == 9
    for member, run in zip(result["members"], (runs["a"], runs["b"])):
        alone = evaluate(run, device="cpu")
        assert member["metrics"]["accuracy"] == pytest.approx(alone["metrics"]["accuracy"])
        assert member["metrics"]["loss"] == pytest.approx(alone["metrics"]["loss"], rel=1e-5)
    given = evaluate_ensemble([runs["a"], runs["b"]], weights="3,1", device="cpu")
    assert given["weights"] == [0.75, 0.25]
    one = evaluate_ensemble([runs["a"], runs["b"]], weights=[1, 0], device="cpu")
    assert one["metrics"]["loss"] == pytest.approx(one["members"][0]["metrics"]["loss"], rel=1e-5)


def test_fitted_weights_do_not_lose_to_equal_weights_on_the_split_they_are_fitted_on(runs):
    equal = evaluate_ensemble([runs["a"], runs["b"], runs["snap"]], device="cpu")
    fitted = evaluate_ensemble([runs["a"], runs["b"], runs["snap"]], weights="fit", device="cpu")
    assert sum(fitted["weights"]) == pytest.approx(1.0)
    assert fitted["weights_fitted_on"].startswith("validation split")
    assert fitted["metrics"]["loss"] <= equal["metrics"]["loss"] + 1e-9  # L-BFGS starts from equal weights


def test_a_snapshot_runs_cycle_checkpoints_are_its_members(runs):
    summary = json.loads((runs["snap"] / "summary.json").read_text())
    assert summary["snapshots"] == [f"checkpoints/snapshot_{i:02d}.pt" for i in range(3)]
    result = evaluate_ensemble([runs["snap"]], snapshots=True, device="cpu")
    assert [Path(m["checkpoint"]).name for m in result["members"]] == [f"snapshot_{i:02d}.pt" for i in range(3)]
    last = evaluate(runs["snap"] / "checkpoints" / "snapshot_02.pt", device="cpu")
    assert result["members"][2]["metrics"]["accuracy"] == pytest.approx(last["metrics"]["accuracy"])
    with pytest.raises(FileNotFoundError, match="snapshot_"):
        evaluate_ensemble([runs["a"]], snapshots=True, device="cpu")


def test_cli_eval_of_several_runs_prints_every_member_and_json(runs):
    text = runner.invoke(app, ["eval", str(runs["a"]), str(runs["b"]), "--device", "cpu"])
    assert text.exit_code == 0, text.output
    assert "ensemble of 2 members" in text.output and "ensemble" in text.output.splitlines()[-2]
    assert text.output.count("best.pt") == 2 and "accuracy" in text.output
    out = runner.invoke(app, ["eval", str(runs["snap"]), "--snapshots", "--weights", "1,1,2", "--json",
                              "--device", "cpu"])
    assert out.exit_code == 0, out.output
    result = json.loads(out.stdout.splitlines()[-1])
    assert result["weights"] == [0.25, 0.25, 0.5] and len(result["members"]) == 3
    assert set(result["members"][0]) == {"target", "checkpoint", "weight", "metrics"}
    bad = runner.invoke(app, ["eval", str(runs["a"]), str(runs["b"]), "--weights", "1"])
    assert bad.exit_code == 1 and "1 weights for 2 members" in bad.output


def test_predict_with_several_runs_averages_their_probabilities(runs, folder):
    images = sorted((folder / "red").glob("*.png"))[:3]
    rows = predict([runs["a"], runs["b"]], images, device="cpu", top_k=3)
    single = [predict(run, images, device="cpu", top_k=3) for run in (runs["a"], runs["b"])]
    ensemble, _, _, checkpoints = restore_ensemble([runs["a"], runs["b"]])
    assert len(checkpoints) == 2 and len(ensemble.members) == 2
    for i, row in enumerate(rows):
        mean = {c: (dict(single[0][i]["top"])[c] + dict(single[1][i]["top"])[c]) / 2 for c in dict(row["top"])}
        assert dict(row["top"]) == pytest.approx(mean, rel=1e-4)
        assert row["class"] == max(mean, key=mean.get)
    cli = runner.invoke(app, ["predict", str(runs["a"]), str(runs["b"]), str(images[0]), "--json", "--device", "cpu",
                              "--top-k", "3"])
    assert cli.exit_code == 0, cli.output
    predicted = json.loads(cli.stdout.splitlines()[-1])["predictions"]
    assert len(predicted) == 1 and predicted[0]["class"] == rows[0]["class"]
    no_images = runner.invoke(app, ["predict", str(runs["a"]), str(runs["b"])])
    assert no_images.exit_code == 1 and "give the images to predict" in no_images.output


def test_weights_spellings():
    assert parse_weights(None) is None and parse_weights("equal") is None and parse_weights("fit") == "fit"
    assert parse_weights("1, 2") == [1.0, 2.0] and parse_weights([1, 2]) == [1.0, 2.0]
    with pytest.raises(ValueError, match="'equal', 'fit' or one number per member"):
        parse_weights("best")
    assert torch.tensor(parse_weights("0.5,0.5")).sum() == 1
