"""``epochal relabel`` end to end: a run trained without the neutral class moves its confident images."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from epochal.cli.main import app
from epochal.config import load_config
from epochal.config.experiment import train
from epochal.config.inference import predict

runner = CliRunner()
COLOURS = {"red": (200, 30, 30), "green": (30, 200, 30), "blue": (30, 30, 200)}
TINY = ["data.image_size=16", "data.batch_size=8", "model.widths=[8,16,16]", "callbacks.progress_bar=null",
        "trainer.device=cpu", "trainer.plots=false", "data.augment=null"]


def _images(folder: Path, colour: tuple[int, int, int], n: int, rng, prefix: str = "") -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        pixels = np.clip(np.array(colour) + rng.normal(0, 30, (16, 16, 3)), 0, 255).astype(np.uint8)
        Image.fromarray(pixels).save(folder / f"{prefix}{i}.png")


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    """Three colour classes of 10 images and an ``unsure`` folder: four red-ish and four grey images."""
    root, rng = tmp_path_factory.mktemp("neutral"), np.random.default_rng(0)
    for name, colour in COLOURS.items():
        _images(root / name, colour, 10, rng)
    _images(root / "unsure", (190, 40, 40), 4, rng, "red-")
    _images(root / "unsure", (120, 120, 120), 4, rng, "grey-")
    return root


@pytest.fixture(scope="module")
def run(folder, tmp_path_factory) -> str:
    config = load_config("default", [*TINY, f"data.path={folder}", "data.options.neutral_class=unsure", "epochs=6",
                                     "loss.label_smoothing=0.0", "model.scale=1.0"])
    return train(config, out=tmp_path_factory.mktemp("runs"), progress=False)["run_dir"]


def _rows(path: Path) -> dict[str, str]:
    with open(path, newline="") as handle:
        return {row["path"]: row["label"] for row in csv.DictReader(handle)}


def test_relabel_moves_confident_neutral_images_and_the_csv_trains(folder, run, tmp_path):
    out = tmp_path / "labels.csv"
    result = runner.invoke(app, ["relabel", run, "--data", str(folder), "--threshold", "0.9", "--out", str(out),
                                 "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout.splitlines()[-1])
    neutral = sorted(str(p) for p in (folder / "unsure").glob("*.png"))
    predicted = {r["path"]: r for r in predict(run, neutral, top_k=1, device="cpu")}
    expected = {p: r["class"] for p, r in predicted.items() if r["probability"] >= 0.9}
    rows = _rows(out)
    assert len(rows) == report["images"] == 38 and report["neutral"] == 8
    assert {p: rows[p] for p in neutral if rows[p] != "unsure"} == expected
    assert report["moved"] == {c: sum(v == c for v in expected.values()) for c in ("blue", "green", "red")}
    assert report["stayed"] == 8 - len(expected)
    assert report["moved"] == {"blue": 0, "green": 0, "red": 4} and report["stayed"] == 4  # the grey ones stay
    for path, label in rows.items():  # the labelled images keep their folder's class
        if Path(path).parent.name != "unsure":
            assert label == Path(path).parent.name
    config = load_config("default", [*TINY, f"data.path={out}", "data.options.neutral_class=unsure", "epochs=1",
                                     "data.valid_pct=0.25"])
    trained = train(config, out=tmp_path / "again", progress=False)
    data_json = json.loads((Path(trained["run_dir"]) / "data.json").read_text())
    assert data_json["classes"] == ["blue", "green", "red"]
    counts = data_json["class_counts"]  # the four moved images train as red, the grey ones stay out
    assert counts["red"] > counts["blue"] and sum(counts.values()) == data_json["train_size"]


def test_relabel_refuses_an_existing_file_and_leaves_it(folder, run, tmp_path):
    out = tmp_path / "labels.csv"
    out.write_text("keep me\n")
    result = runner.invoke(app, ["relabel", run, "--data", str(folder), "--out", str(out)])
    assert result.exit_code == 1 and "already exists" in result.output
    assert out.read_text() == "keep me\n"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--threshold", "1.5"], "must be in (0, 1]"),
        (["--neutral-class", "purple"], "no neutral class 'purple'"),
    ],
)
def test_relabel_bad_input_names_what_is_wrong(folder, run, tmp_path, args, message):
    result = runner.invoke(app, ["relabel", run, "--data", str(folder), "--out", str(tmp_path / "x.csv"), *args])
    assert result.exit_code == 1 and message in result.output
    assert not (tmp_path / "x.csv").exists()


def test_relabel_text_report_counts_each_class(folder, run, tmp_path):
    result = runner.invoke(app, ["relabel", run, "--data", str(folder), "--threshold", "1.0", "--out",
                                 str(tmp_path / "strict.csv")])
    assert result.exit_code == 0, result.output
    assert "moved to red:" in result.output and "stayed unsure:" in result.output
    rows = _rows(tmp_path / "strict.csv")
    assert len(rows) == 38


def test_relabel_reads_a_label_csv_and_its_own_output_for_another_round(folder, run, tmp_path):
    listing = tmp_path / "listing.csv"  # the folder as a path,label CSV, paths relative to the CSV's folder
    files = sorted(folder.rglob("*.png"))
    listing.write_text("path,label\n" + "".join(f"{os.path.relpath(p, tmp_path)},{p.parent.name}\n" for p in files))
    from_folder, from_csv = tmp_path / "folder.csv", tmp_path / "csv.csv"
    for data, out in ((folder, from_folder), (listing, from_csv)):
        result = runner.invoke(app, ["relabel", run, "--data", str(data), "--out", str(out), "--json"])
        assert result.exit_code == 0, result.output
    assert _rows(from_csv) == _rows(from_folder)  # the same images, the same new labels
    second = runner.invoke(app, ["relabel", run, "--data", str(from_csv), "--threshold", "0.5", "--out",
                                 str(tmp_path / "round2.csv"), "--json"])
    assert second.exit_code == 0, second.output
    report = json.loads(second.stdout.splitlines()[-1])
    assert report["neutral"] == 4 and report["images"] == 38  # the four grey images that stayed are predicted again
    multi = tmp_path / "multi.csv"
    multi.write_text("path,labels\n" + "".join(f"{p},{p.parent.name}\n" for p in files))
    refused = runner.invoke(app, ["relabel", run, "--data", str(multi), "--out", str(tmp_path / "m.csv")])
    assert refused.exit_code == 1 and "multi-label" in refused.output
