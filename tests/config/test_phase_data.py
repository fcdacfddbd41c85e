"""Per-phase data in recipes: progressive resizing and batch changes, built from the main loaders."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from epochal.callbacks.base import Callback
from epochal.cli.main import app
from epochal.config import ConfigError, load_config
from epochal.config.builders import _REGISTERED_CALLBACKS, register_callback
from epochal.config.experiment import build_learner, schedule_plot, train
from epochal.data import ImageLoader, TensorLoader
from epochal.state import load_checkpoint

TINY = ["data.image_size=16", "data.batch_size=4", "model.widths=[8,16,16]", "callbacks.progress_bar=null"]
RESIZING = [
    "data_variants={small: {image_size: 12, batch_size: 6}}",
    "phases=[{epochs: 1, lr: 0.05, data: small}, {epochs: 1, lr: 0.01}]",
    "epochs=2",
]


class ImageSides(Callback):
    """Records the side of every training batch."""

    def __init__(self):
        self.sides = []

    def after_batch(self) -> None:
        if self.learner.training:
            self.sides.append(self.learner.xb.shape[-1])


class CrashAtStep(Callback):
    """Raises after the checkpoint of optimizer step ``step`` is written, as a crash would."""

    order = 200  # after ModelCheckpoint (100)

    def __init__(self, step: int):
        self.step = step

    def after_batch(self) -> None:
        if self.learner.training and self.learner.state.step == self.step:
            raise RuntimeError(f"crash at step {self.step}")


@pytest.fixture
def crash_callback():
    register_callback("crash_at_step", CrashAtStep)
    yield
    _REGISTERED_CALLBACKS.pop("crash_at_step", None)


def test_progressive_resizing_trains_each_phase_on_its_own_loader(tiny_images):
    config = load_config("default", [*TINY, f"data.path={tiny_images}", *RESIZING])
    learner, phases = build_learner(config, device="cpu", progress=False)
    main, small = learner.data.train, phases[0].data
    assert isinstance(small, ImageLoader) and phases[1].data is None
    assert small.images is main.images and torch.equal(small.rows, main.rows)  # nothing packed again
    assert small.batch_size == 6 and small.image_size == 12 and main.image_size == 16
    sides = ImageSides()
    learner.add_callback(sides)
    history = learner.fit(phases)
    assert learner.schedule.steps_per_epoch == (len(small), len(main))
    assert len(small) == len(main.rows) // 6 and len(main) == len(main.rows) // 4  # drop_last
    assert sides.sides == [12] * len(small) + [16] * len(main)
    assert [r["step"] for r in history] == [len(small), len(small) + len(main)]
    assert all(math.isfinite(r["valid/loss"]) for r in history)


def test_phases_with_the_same_settings_share_one_loader(tiny_images):
    inline = "{image_size: 12, batch_size: 6}"
    phases = f"phases=[{{epochs: 1, data: small, lr: 0.05}}, {{epochs: 0.5, data: {inline}}}, {{epochs: 1}}]"
    config = load_config("default", [*TINY, f"data.path={tiny_images}", *RESIZING, phases])
    learner, built = build_learner(config, device="cpu", progress=False)
    assert built[0].data is built[1].data and built[2].data is None
    learner.fit(built)
    # the first two phases are one stretch of the same data; the epoch ends where the data changes
    small, main = len(built[0].data), len(learner.data.train)
    assert learner.schedule.boundaries == (0, small, small + round(0.5 * small), small + round(0.5 * small) + main)


def test_tabular_phase_batches_the_same_tensors(tiny_table):
    overrides = [
        f"data.path={tiny_table}",
        "data.target=y",
        "data.batch_size=16",
        "callbacks.progress_bar=null",
        "model.hidden=[8]",
        "phases=[{epochs: 1, data: {batch_size: 40, balance: null}}, {epochs: 1}]",
    ]
    config = load_config("tabular-adult", overrides)
    learner, phases = build_learner(config, device="cpu", progress=False)
    variant = phases[0].data
    assert isinstance(variant, TensorLoader) and variant.batch_size == 40
    assert variant.inputs[0] is learner.data.train.inputs[0] and variant.targets is learner.data.train.targets
    assert len(variant) == math.ceil(len(variant.targets) / 40) and len(learner.data.train) > len(variant)
    history = learner.fit(phases)
    assert [r["step"] for r in history] == [len(variant), len(variant) + len(learner.data.train)]


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["phases=[{epochs: 1, data: {path: elsewhere}}]"], r"phases.0.data: 'path' cannot change in a phase: it"),
        (["phases=[{epochs: 1, data: {valid_pct: 0.5}}]"], r"'valid_pct' cannot change.*validation split"),
        (["phases=[{epochs: 1, data: {options: {fit: pad}}}]"], r"'options' cannot change.*shared by every phase"),
        (["phases=[{epochs: 1, data: {batch_szie: 3}}]"], r"phases.0.data: unknown key 'batch_szie'.*'batch_size'"),
        (["phases=[{epochs: 1}, {epochs: 1, data: {batch_size: 0}}]"], r"phases.1.data.batch_size: .*greater than"),
        (["phases=[{epochs: 1, data: smal}]", *RESIZING[:1]], r"unknown data variant 'smal'.*did you mean 'small'"),
        (["data_variants={s: {augment: [flipp]}}"], r"data_variants.s.augment: unknown augmentation 'flipp'"),
        (["phases=[{epochs: 1, data: 3}]"], r"phases.0.data must be the name of a data_variants entry or a mapping"),
    ],
)
def test_phase_data_errors_name_the_key_and_the_reason(overrides, message):
    with pytest.raises(ConfigError, match=message):
        load_config("default", overrides)


def test_table_phases_cannot_resize_images():
    with pytest.raises(ConfigError, match=r"phases.0.data: data.image_size is for image folders"):
        load_config("tabular-adult", ["phases=[{epochs: 1, data: {image_size: 12}}]"])


def test_saved_config_keeps_only_the_keys_a_phase_sets(tiny_images):
    config = load_config("default", [f"data.path={tiny_images}", *RESIZING, "data_variants.plain={balance: null}"])
    saved = config.to_dict()
    assert saved["data_variants"] == {"small": {"image_size": 12, "batch_size": 6}, "plain": {"balance": None}}
    assert load_config(saved).to_dict() == saved


@pytest.mark.parametrize("crash_step", [2, 8])  # mid-epoch in the small phase, then in the full-size one
def test_resume_across_a_data_change_is_exact(tiny_images, tmp_path, crash_callback, crash_step):
    overrides = [
        *TINY,
        f"data.path={tiny_images}",
        "data_variants={small: {image_size: 12, batch_size: 3}}",
        "phases=[{epochs: 1, lr: 0.05, data: small}, {epochs: 2, lr: 0.01}]",
        "callbacks.model_checkpoint={every_n_steps: 1}",
        "trainer.plots=false",
    ]
    whole = train(load_config("default", overrides), out=tmp_path / "whole", progress=False)
    crashing = load_config("default", [*overrides, f"callbacks.crash_at_step={{step: {crash_step}}}"])
    with pytest.raises(RuntimeError, match=f"crash at step {crash_step}"):
        train(crashing, out=tmp_path / "crashed", progress=False)
    (run,) = (tmp_path / "crashed").iterdir()
    assert load_checkpoint(run / "checkpoints" / "last.pt")["state"]["step"] == crash_step
    train(load_config("default", overrides), resume=run, progress=False)
    expected = load_checkpoint(Path(whole["run_dir"]) / "checkpoints" / "last.pt")["model"]
    resumed = load_checkpoint(run / "checkpoints" / "last.pt")["model"]
    assert all(torch.equal(expected[k], resumed[k]) for k in expected)
    history = [json.loads(line)["valid/loss"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert history == [r["valid/loss"] for r in _records(Path(whole["run_dir"]))]


def _records(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def test_plot_schedule_counts_each_phase_on_its_own_data(tiny_images, tmp_path):
    config = load_config("default", [*TINY, f"data.path={tiny_images}", *RESIZING])
    learner, phases = build_learner(config, device="cpu", progress=False)
    result = schedule_plot(config, tmp_path / "schedule.png", device="cpu")
    small, main = len(phases[0].data), len(learner.data.train)
    assert result["steps_per_epoch"] == [small, main] and result["phase_steps"] == [small, main]
    assert result["total_steps"] == small + main and Path(result["plot"]).stat().st_size > 5000
    with pytest.raises(ConfigError, match=r"phases.0.data sets \['batch_size'\].*leave --steps-per-epoch out"):
        schedule_plot(config, tmp_path / "given.png", steps_per_epoch=10)
    resized_only = load_config("default", [*TINY, "phases=[{epochs: 1, data: {image_size: 12}}, {epochs: 2}]"])
    assert schedule_plot(resized_only, tmp_path / "r.png", steps_per_epoch=10)["phase_steps"] == [10, 20]
    cli = CliRunner().invoke(
        app, ["plot-schedule", "--set", f"data.path={tiny_images}", *_sets([*TINY, *RESIZING]),
              "--out", str(tmp_path / "cli.png"), "--json"]
    )
    assert cli.exit_code == 0, cli.output
    assert json.loads(cli.stdout.splitlines()[-1])["phase_steps"] == [small, main]


def _sets(overrides: list[str]) -> list[str]:
    return [part for text in overrides for part in ("--set", text)]


def test_the_documented_progressive_resizing_recipe_loads(tmp_path):
    docs = (Path(__file__).resolve().parents[2] / "docs" / "recipes.md").read_text()
    section = docs.split("### Per-phase data", 1)[1]
    example = section.split("```yaml\n", 1)[1].split("```", 1)[0]
    path = tmp_path / "progressive.yaml"
    path.write_text(example)
    config = load_config(path)
    assert [p.get("data") for p in config.phases] == ["small", "medium", None]
    assert config.data_variants["small"].overlay() == {"image_size": 16, "batch_size": 1024}


def test_a_phase_that_changes_nothing_trains_on_the_main_loader(tiny_images):
    same = "phases=[{epochs: 1, data: {}}, {epochs: 1, data: {batch_size: 4}}]"  # TINY's batch size
    _, phases = build_learner(load_config("default", [*TINY, f"data.path={tiny_images}", same]), device="cpu")
    assert phases[0].data is None and phases[1].data is None
