"""Tabular embeddings export: a CSV per categorical column with its category names and learnt vectors."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from epochal.cli.main import app
from epochal.config import ConfigError, load_config
from epochal.config.experiment import train
from epochal.config.inference import export, restore_model

runner = CliRunner()
TABLE = ["data.batch_size=32", "epochs=2", "callbacks.progress_bar=null", "trainer.device=cpu", "trainer.plots=false",
         "data.target=y", "model={name: tabular_mlp, hidden: [16]}"]


@pytest.fixture(scope="module")
def table_run(tiny_table, tmp_path_factory) -> str:
    config = load_config("tabular-adult", [*TABLE, f"data.path={tiny_table}"])
    return train(config, out=tmp_path_factory.mktemp("runs"), progress=False)["run_dir"]


def _read(path: Path) -> tuple[list[str], list[str], torch.Tensor]:
    with open(path, newline="") as handle:
        header, *rows = list(csv.reader(handle))
    return header, [r[0] for r in rows], torch.tensor([[float(v) for v in r[1:]] for r in rows])


def test_cli_writes_a_file_per_column_with_the_category_names_and_vectors(table_run, tmp_path):
    out = tmp_path / "emb"
    result = runner.invoke(app, ["export", table_run, "--format", "embeddings", "--out", str(out), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout.splitlines()[-1])
    model, _, info, _ = restore_model(table_run)
    index = json.loads((out / "index.json").read_text())["columns"]
    assert list(index) == list(report["columns"]) and "colour" in index
    assert len(index) == len(model.embeddings)
    header, names, vectors = _read(out / index["colour"]["file"])
    assert names == info["preprocessor"]["vocab"]["colour"]
    assert sorted(names[1:]) == ["blue", "green", "red"] and names[0] == "<unk>"
    assert header == ["category", *(f"dim_{i}" for i in range(vectors.shape[1]))]
    position = list(index).index("colour")
    torch.testing.assert_close(vectors, model.embeddings[position].weight.detach(), rtol=1e-6, atol=1e-7)
    assert index["colour"] == {"file": "colour.csv", "categories": 4, "dim": vectors.shape[1]}
    assert report["bytes"] == sum(p.stat().st_size for p in out.iterdir())


def test_existing_folder_is_refused_and_kept(table_run, tmp_path):
    out = tmp_path / "emb"
    out.mkdir()
    (out / "mine.txt").write_text("keep")
    with pytest.raises(ConfigError, match="not an empty folder"):
        export(table_run, "embeddings", out)
    assert [p.name for p in out.iterdir()] == ["mine.txt"]


def test_default_folder_is_inside_the_run(table_run):
    result = export(table_run, "embeddings")
    assert Path(result["path"]) == Path(table_run) / "embeddings" and (Path(result["path"]) / "index.json").is_file()


def test_runs_without_embeddings_are_refused(tiny_table, tiny_images, tmp_path):
    onehot = train(load_config("tabular-adult", [*TABLE, f"data.path={tiny_table}", "data.options.encoding=onehot"]),
                   out=tmp_path / "runs", progress=False)
    with pytest.raises(ConfigError, match="without categorical embeddings"):
        export(onehot["run_dir"], "embeddings")
    image = train(load_config("default", [f"data.path={tiny_images}", "data.image_size=16", "data.batch_size=8",
                                          "model.widths=[8,16,16]", "callbacks.progress_bar=null", "epochs=1",
                                          "trainer.device=cpu", "trainer.plots=false"]),
                  out=tmp_path / "runs", progress=False)
    result = runner.invoke(app, ["export", image["run_dir"], "--format", "embeddings"])
    assert result.exit_code == 1 and "not a tabular run" in result.output
    bad = runner.invoke(app, ["export", image["run_dir"], "--format", "embedings"])
    assert bad.exit_code == 1 and "embeddings" in bad.output
