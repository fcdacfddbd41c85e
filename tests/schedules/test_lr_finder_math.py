"""LR-finder schedule, smoothing and suggestions on synthetic curves."""

from __future__ import annotations

import itertools
import math

import pytest

from epochal.schedules import lr_finder_schedule, smooth_losses, suggest_lr


def test_exponential_and_linear_schedules():
    assert lr_finder_schedule(1e-4, 1e-1, 4) == pytest.approx([1e-4, 1e-3, 1e-2, 1e-1])
    assert lr_finder_schedule(0.0, 1.0, 5, mode="linear") == [0.0, 0.25, 0.5, 0.75, 1.0]
    lrs = lr_finder_schedule(1e-7, 10, 100)
    assert lrs[0] == 1e-7 and lrs[-1] == pytest.approx(10)
    ratios = {round(b / a, 9) for a, b in itertools.pairwise(lrs)}
    assert len(ratios) == 1


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"start": 1e-3, "end": 1e-4}, "start < end"),
        ({"start": 0.0, "end": 1.0}, "start > 0"),
        ({"num": 1}, "num must be an int >= 2"),
        ({"mode": "log"}, "mode must be"),
    ],
)
def test_schedule_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        lr_finder_schedule(**{"start": 1e-5, "end": 1.0, "num": 10, **kwargs})


def test_smoothing_is_debiased():
    assert smooth_losses([3.0] * 5) == pytest.approx([3.0] * 5)
    beta = 0.5
    smoothed = smooth_losses([1.0, 3.0], beta)
    # avg_1 = 0.5 * 1 = 0.5 -> 0.5 / (1 - 0.5); avg_2 = 0.5 * 0.5 + 0.5 * 3 = 1.75 -> 1.75 / (1 - 0.25)
    assert smoothed == pytest.approx([1.0, 1.75 / 0.75])
    assert math.isnan(smooth_losses([1.0, float("nan"), 1.0])[-1])


def _synthetic(num=200):
    """Loss falls fastest at lr=1e-3 (tanh in log10 lr), bottoms out, then diverges to inf/NaN."""
    lrs = lr_finder_schedule(1e-6, 10, num)
    losses = []
    for lr in lrs:
        x = math.log10(lr)
        loss = 2.0 - math.tanh(2 * (x + 3)) + (0.0 if x < -1 else 3 * (x + 1) ** 2)
        losses.append(loss)
    losses[-10:] = [float("inf")] * 5 + [float("nan")] * 5
    return lrs, losses


def test_suggestions_on_a_synthetic_curve():
    lrs, losses = _synthetic()
    result = suggest_lr(lrs, losses)
    assert set(result) == {"valley", "steep", "min_div10"}
    assert result["steep"] == pytest.approx(1e-3, rel=0.1)
    finite = [(loss, lr) for lr, loss in zip(lrs, losses) if math.isfinite(loss)]
    assert result["min_div10"] == pytest.approx(min(finite)[1] / 10)
    # the valley is the long descent from the start to the minimum; its middle lies inside it
    assert 1e-4 < result["valley"] < min(finite)[1]


def test_suggestions_ignore_nan_and_inf_in_the_middle():
    lrs, losses = _synthetic()
    clean = suggest_lr(lrs, losses)
    losses[100] = float("nan")
    losses[101] = float("inf")
    noisy = suggest_lr(lrs, losses)
    assert noisy["steep"] == pytest.approx(clean["steep"], rel=0.2)
    assert noisy["min_div10"] == clean["min_div10"]


def test_valley_picks_the_longest_descent():
    lrs = lr_finder_schedule(1e-5, 1.0, 11)
    losses = [5, 4, 6, 5, 4, 3, 2, 1, 0.5, 3, 9]  # longest strictly decreasing run: indices 2..8
    assert suggest_lr(lrs, losses, skip_start=0, skip_end=0)["valley"] == lrs[5]


def test_suggestion_errors():
    with pytest.raises(ValueError, match="differ in length"):
        suggest_lr([1e-3, 1e-2], [1.0])
    with pytest.raises(ValueError, match="at least 3 finite"):
        suggest_lr([1e-3, 1e-2, 1e-1], [1.0, float("nan"), float("inf")])
