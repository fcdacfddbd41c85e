"""A run folder says what its data pipeline left out: ``data_report.json``, and a CLI line pointing at it.

Before the data report, ``epochal train`` printed "skipped 6 undecodable file(s); see data.json and
summary.json" while neither file named them, and listing skips (hidden files, broken links) and
table findings were nowhere in the run folder.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image
from typer.testing import CliRunner

from epochal.cli.main import app

TINY = {
    "epochs": 1,
    "model": {"name": "airbench", "widths": [8, 16, 16]},
    "optimizer": {"name": "sgd", "lr": 0.01},
    "callbacks": {"model_checkpoint": None, "progress_bar": None},
    "trainer": {"device": "cpu", "plots": False},
}


def _images(root: Path) -> Path:
    rng = np.random.default_rng(0)
    for c, name in enumerate(("red", "blue")):
        (root / name).mkdir(parents=True)
        for i in range(10):
            pixels = np.clip(rng.normal(60 + 120 * c, 30, (16, 16, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(root / name / f"{i}.png")
    (root / "red" / "._0.png").write_bytes(b"\0\5\26\7")
    (root / "blue" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    os.symlink("elsewhere.png", root / "blue" / "moved.png")
    return root


def _train(tmp_path: Path, recipe: dict) -> tuple[Path, str]:
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump({"name": "report", **TINY, **recipe}))
    result = CliRunner().invoke(app, ["train", str(path), "--out", str(tmp_path / "runs"), "--no-progress"])
    assert result.exit_code == 0, result.output
    run = next((tmp_path / "runs").iterdir())
    return run, result.stdout


def test_the_run_folder_lists_every_skipped_path_and_the_cli_points_there(tmp_path):
    root = _images(tmp_path / "images")
    data = {"path": str(root), "valid_pct": 0.25, "image_size": 16, "batch_size": 8, "augment": ["flip"],
            "options": {"cache_dir": str(tmp_path / "cache"), "progress": False}}
    with pytest.warns(UserWarning):
        run, out = _train(tmp_path, {"data": data})
    report = json.loads((run / "data_report.json").read_text())
    files = {f["path"]: f["reason"] for f in report["skipped_files"]["files"]}
    assert files == {
        str(root / "red" / "._0.png"): "hidden",
        str(root / "blue" / "broken.png"): "undecodable",
        str(root / "blue" / "moved.png"): "dangling_symlink",
    }
    assert report["skipped_files"]["by_reason"] == {"hidden": 1, "dangling_symlink": 1, "undecodable": 1}
    line = next(line for line in out.splitlines() if line.startswith("data: "))
    assert "3 skipped file(s) (1 hidden, 1 dangling symlink, 1 undecodable)" in line
    assert line.endswith(str(run / "data_report.json"))
    assert "data.json and summary.json" not in out


def test_table_findings_go_to_the_same_report(tmp_path):
    colours = ("red", "green", "blue")
    rows = [f"{colours[i % 3]},{i / 10:.1f},{'yes' if i % 2 else 'no'}" for i in range(60)]
    rows[4] = "red,forty,no"
    rows[8] = "red,1.0"
    (tmp_path / "t.csv").write_text("\n".join(["colour,size,y", *rows]) + "\n")
    data = {"kind": "tabular", "path": str(tmp_path / "t.csv"), "target": "y", "valid_pct": 0.25, "batch_size": 16,
            "options": {"continuous": ["size"]}}
    with pytest.warns(UserWarning, match="forty"):
        run, out = _train(tmp_path, {"data": data, "model": {"name": "tabular_mlp", "hidden": [8]},
                                     "optimizer": {"name": "adamw", "lr": 0.01}})
    report = json.loads((run / "data_report.json").read_text())
    kinds = {(t["kind"], t.get("column")): t["count"] for t in report["tables"]}
    assert kinds == {("malformed_rows", None): 1, ("text_in_numeric", "size"): 1}
    assert report["skipped_files"]["count"] == 0
    assert "1 malformed rows, 1 text in numeric" in out and str(run / "data_report.json") in out


def test_a_clean_run_has_an_empty_report_and_no_data_line(tmp_path):
    root = tmp_path / "clean"
    _images(root)
    for name in ("._0.png", "broken.png", "moved.png"):
        for sub in ("red", "blue"):
            (root / sub / name).unlink(missing_ok=True)
    data = {"path": str(root), "valid_pct": 0.25, "image_size": 16, "batch_size": 8,
            "options": {"cache_dir": str(tmp_path / "cache"), "progress": False}}
    run, out = _train(tmp_path, {"data": data})
    report = json.loads((run / "data_report.json").read_text())
    assert report["skipped_files"]["count"] == 0 and report["tables"] == [] and report["empty_classes"] == []
    assert not any(line.startswith("data: ") for line in out.splitlines())


def test_a_recipe_reads_a_non_utf8_table_with_data_options_file_encoding(tmp_path):
    rows = [f"{'rouge' if i % 2 else 'bleu'},{i / 10:.1f},{'oui' if i % 3 else 'non'}" for i in range(40)]
    rows[6] = "rouge,0.6,caf\xe9"  # file line 8: the header is line 1
    (tmp_path / "t.csv").write_bytes("\n".join(["couleur,taille,y", *rows]).encode("cp1252") + b"\n")
    recipe = {"data": {"kind": "tabular", "path": str(tmp_path / "t.csv"), "target": "y", "valid_pct": 0.25,
                       "batch_size": 16}, "model": {"name": "tabular_mlp", "hidden": [8]}}
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump({"name": "latin", **TINY, **recipe}))
    refused = CliRunner().invoke(app, ["train", str(path), "--out", str(tmp_path / "runs"), "--no-progress"])
    assert refused.exit_code != 0
    assert "t.csv: line 8 is not valid utf-8" in refused.output and "data.options.file_encoding" in refused.output
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())
    run, _ = _train(tmp_path, {**recipe, "data": {**recipe["data"], "options": {"file_encoding": "cp1252"}}})
    assert "café" in json.loads((run / "data.json").read_text())["classes"]
