"""Schedule and LR-finder plots are written as valid PNG files."""

from __future__ import annotations

import math

from PIL import Image

from epochal.schedules import (
    PhaseSchedule,
    TrainingPhase,
    lr_finder_schedule,
    one_cycle,
    plot_lr_find,
    plot_schedule,
    sgdr,
    suggest_lr,
)

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _assert_png(path, min_size=(600, 300)):
    assert path.read_bytes()[:8] == PNG_SIGNATURE
    with Image.open(path) as image:
        image.verify()
    with Image.open(path) as image:
        assert image.size[0] >= min_size[0] and image.size[1] >= min_size[1]


def test_plot_schedule_writes_pngs(tmp_path):
    for name, phases in {"one_cycle": one_cycle(5, 0.1), "sgdr": sgdr(0.1, 1, 2, 3)}.items():
        path = plot_schedule(phases, 40, tmp_path / "plots" / f"{name}.png")
        assert path == tmp_path / "plots" / f"{name}.png"
        _assert_png(path)


def test_plot_schedule_returns_figure_with_lr_and_momentum_panels():
    figure = plot_schedule(one_cycle(2, 0.1), 10)
    lr_axis, mom_axis = figure.axes
    x, y = lr_axis.lines[0].get_data()
    assert list(x) == list(range(20)) and max(y) == 0.1  # the 20 steps that run
    assert min(mom_axis.lines[0].get_ydata()) == 0.85
    assert [t.get_text() for t in lr_axis.texts] == ["warmup", "anneal"]


def test_plot_schedule_annotation_switch_and_optimizer_labels():
    phases = [
        TrainingPhase(1, optimizer="sgd", lr=0.1, name="warm"),
        TrainingPhase(1, optimizer="sgd", lr=0.05),
        TrainingPhase(1, optimizer="adam", lr=0.01),
    ]
    figure = plot_schedule(phases, 10)
    assert [t.get_text() for t in figure.axes[0].texts] == ["warm [sgd]", "[adam]"]
    assert len(plot_schedule(phases, 10, annotate=False).axes[0].texts) == 0
    dashed = [line for line in figure.axes[0].lines if line.get_linestyle() == "--"]
    assert [line.get_xdata()[0] for line in dashed] == [10, 20]
    assert plot_schedule(PhaseSchedule(phases, 5)).axes[0].get_xlim() == (0, 15)


def test_plot_lr_find_writes_png(tmp_path):
    lrs = lr_finder_schedule(1e-6, 1.0, 60)
    losses = [2.0 - math.tanh(math.log10(lr) + 3) for lr in lrs[:-5]] + [float("nan")] * 5
    path = plot_lr_find(lrs, losses, suggest_lr(lrs, losses), tmp_path / "lr_find.png")
    _assert_png(path, (500, 300))
    figure = plot_lr_find(lrs, losses, {"steep": 1e-3})
    assert figure.axes[0].get_xscale() == "log"
    assert figure.axes[0].get_legend().get_texts()[0].get_text() == "steep: 1.00e-03"
