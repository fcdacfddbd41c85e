"""Recipes with SWA and EMA: the SWA phase appended visibly, the cifar10-swa recipe, and a run that ends with
the averaged weights (what `epochal eval` then evaluates)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from epochal.callbacks.ema import EMA
from epochal.callbacks.swa import SWA, resolve_start
from epochal.config import ConfigError, load_config
from epochal.config.builders import build_callbacks, build_phases, load_matching_weights
from epochal.config.experiment import schedule_plot, train
from epochal.config.inference import evaluate
from epochal.models import create
from epochal.schedules import PhaseSchedule
from epochal.state import load_checkpoint

TINY = ["data.image_size=16", "data.batch_size=8", "model.widths=[8,16,16]", "callbacks.progress_bar=null"]
COLOURS = {"red": (200, 30, 30), "green": (30, 200, 30), "blue": (30, 30, 200)}


def colour_folder(root: Path, n: int = 12) -> Path:
    """Three colour classes of ``n`` noisy 16x16 PNG images each."""
    rng = np.random.default_rng(0)
    for name, colour in COLOURS.items():
        (root / name).mkdir(parents=True)
        for i in range(n):
            pixels = np.clip(np.array(colour) + rng.normal(0, 60, (16, 16, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(root / name / f"{i}.png")
    return root


def _swa(config) -> SWA:
    return next(cb for cb in build_callbacks(config.callbacks) if isinstance(cb, SWA))


def test_swa_lr_fits_the_recipes_schedule_before_start_and_appends_the_swa_phase():
    config = load_config("default", ["callbacks.swa={start: 0.75, lr: 0.05, anneal_epochs: 1}"])
    phases, freeze = build_phases(config)
    assert [p.name for p in phases] == ["warmup", "anneal", "swa", "swa"] and freeze == [None] * 4
    assert sum(p.epochs for p in phases[:2]) == pytest.approx(0.75 * 15)
    assert sum(p.epochs for p in phases) == pytest.approx(15)
    schedule = PhaseSchedule(phases, 20, default_lr=config.optimizer.lr)
    assert resolve_start(_swa(config).start, schedule) == schedule.boundaries[2]  # averaging starts with the phase
    assert schedule.values(schedule.boundaries[3])["lr"] == pytest.approx(0.05)
    assert schedule.values(schedule.boundaries[2])["lr"] < 1e-3  # annealed up from where one_cycle ended
    cyclic = load_config("default", ["callbacks.swa={start: 12, lr: 0.01, cycle_len: 1, lr_max: 0.05}"])
    assert [p.lr for p in build_phases(cyclic)[0][2:]] == [(0.05, 0.01)] * 3


def test_without_lr_the_schedule_is_left_alone_and_ema_builds_by_name():
    plain = build_phases(load_config("default"))[0]
    config = load_config("default", ["callbacks.swa={start: 0.5}", "callbacks.ema={decay: 0.99, final: false}"])
    assert build_phases(config)[0] == plain
    ema = next(cb for cb in build_callbacks(config.callbacks) if isinstance(cb, EMA))
    assert ema.rule.decay == 0.99 and not ema.final


@pytest.mark.parametrize(("overrides", "message"), [
    (["callbacks.swa={start: swa, lr: 0.05}"], "must be an epoch or a fraction"),
    (["callbacks.swa={start: 20, lr: 0.05}"], "inside the 15 epochs"),
    (["callbacks.swa={start: 0.5, lr: 0.05, cycle_len: 2}"], "both cycle_len and lr_max"),
    (["callbacks.swa={lr: 0.05}", "phases=[{epochs: 3, lr: 0.1}]"], "add the SWA phases to the list yourself"),
    (["callbacks.swa={lr: 0.05}", "phases.total_epochs=10"], "drop phases.total_epochs"),
])
def test_swa_recipe_errors_name_the_key_and_the_fix(overrides, message):
    config = load_config("default", overrides)
    with pytest.raises(ValueError, match=message):
        build_phases(config)


def test_a_misspelt_swa_argument_is_caught_when_the_recipe_loads():
    with pytest.raises(ConfigError, match="did you mean 'start'"):
        load_config("default", ["callbacks.swa={strat: 0.75}"])


def test_cifar10_swa_recipe_is_the_papers_schedule(tmp_path):
    config = load_config("cifar10-swa")
    assert (config.model.name, config.optimizer.name, config.optimizer.lr, config.epochs) == ("preresnet164", "sgd",
                                                                                               0.1, 150)
    phases, _ = build_phases(config)
    assert [p.name for p in phases] == ["flat", "decay", "final", "swa"]
    schedule = PhaseSchedule(phases, 10, default_lr=0.1)
    assert schedule.boundaries == (0, 563, 1013, 1125, 1500)  # 50% and 90% of the 112.5 pre-SWA epochs, then 75%
    assert [schedule.values(s)["lr"] for s in (0, 562, 1013, 1125, 1499)] == pytest.approx([0.1, 0.1, 0.05, 0.05, 0.05])
    assert resolve_start(_swa(config).start, schedule) == 1125
    plotted = schedule_plot(config, tmp_path / "schedule.png", steps_per_epoch=10)
    assert plotted["phases"] == 4 and Path(plotted["plot"]).stat().st_size > 5000


def test_a_recipe_with_swa_ends_with_the_averaged_model_and_eval_uses_it(tmp_path):
    folder = colour_folder(tmp_path / "rgb")
    config = load_config("default", [*TINY, f"data.path={folder}", "epochs=4",
                                     "callbacks.swa={start: 0.5, lr: 0.05}",
                                     "callbacks.model_checkpoint.monitor=valid_swa/accuracy"])
    result = train(config, out=tmp_path / "runs", progress=False)
    run = Path(result["run_dir"])
    summary = json.loads((run / "summary.json").read_text())
    assert summary["final_weights"] == {"source": "swa", "checkpoint": "checkpoints/swa.pt", "updates": 2}
    assert (run / "plots" / "schedule.png").is_file()
    assert result["final_weights"]["source"] == "swa"  # train reports the weights the run ends with
    assert result["metrics"]["loss"] == summary["final"]["valid_swa/loss"]
    evaluated = evaluate(run, device="cpu")
    assert evaluated["checkpoint"].endswith("swa.pt")
    assert evaluated["metrics"]["loss"] == pytest.approx(summary["final"]["valid_swa/loss"], rel=1e-5)
    averaged = load_checkpoint(run / "checkpoints" / "swa.pt")["model"]
    assert not torch.equal(averaged["head.fc.weight"], load_checkpoint(run / "checkpoints" / "last.pt")["model"][
        "head.fc.weight"])
    model = create("airbench", num_classes=3, widths=[8, 16, 16])
    load_matching_weights(model, run)  # model.weights: RUN starts from the run's final (averaged) weights
    assert all(torch.equal(model.state_dict()[k], v) for k, v in averaged.items())
