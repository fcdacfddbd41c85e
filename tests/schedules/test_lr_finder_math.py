"""LR-finder schedule, smoothing and suggestions on synthetic curves."""

from __future__ import annotations

import itertools
import math
import random

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


def test_suggestions_stop_at_the_first_non_finite_loss():
    # fastai cuts the curve at its first NaN; epochal at the first NaN or infinity
    lrs, losses = _synthetic()
    clean = suggest_lr(lrs[:100], losses[:100], skip_start=20, skip_end=0)
    for bad in (float("nan"), float("inf")):
        cut = list(losses)
        cut[100] = bad
        assert suggest_lr(lrs, cut, skip_start=20) == clean  # the minimum after index 100 is ignored


def _longest_decreasing_by_dp(values):
    """fastai's O(n^2) dynamic programme, written out as fastai's valley does it."""
    lds = [1] * len(values)
    for i in range(1, len(values)):
        for j in range(i):
            if values[i] < values[j] and lds[i] < lds[j] + 1:
                lds[i] = lds[j] + 1
    return lds


def test_decreasing_lengths_equal_fastais_dp_with_ties():
    from epochal.schedules.lr_finder import _decreasing_lengths

    rng = random.Random(0)
    for trial in range(300):
        size = rng.randint(1, 60)
        values = [rng.choice((0.5, 1.0, 2.0, 3.0)) if trial % 2 else rng.random() for _ in range(size)]
        assert _decreasing_lengths(values) == _longest_decreasing_by_dp(values)


def _valley(losses):
    lrs = [10.0 ** (i - len(losses)) for i in range(len(losses))]
    return lrs.index(suggest_lr(lrs, losses, skip_start=0, skip_end=0)["valley"])


def test_valley_is_fastais_rule():
    # lds = [1, 2, 1, 2, 3, 4, 5, 6, 7, 4, 1] (6, 5, 4, 3, 2, 1, 0.5 is the longest run); max_end = 8,
    # max_start = 8 - 7 = 1, sections = 7 / 3 -> idx = 1 + int(2.33) + int(1.17) = 4
    assert _valley([5, 4, 6, 5, 4, 3, 2, 1, 0.5, 3, 9]) == 4
    # A noisy plateau: the spikes (9) never continue a descent, the dips 3 > 2.9 > 2.8 > 2.7 then 1, 0.
    # lds = [1, 1, 1, 2, 1, 1, 3, 1, 1, 4, 5, 6, 1]; max_end = 11, max_start = 11 - 6 = 5,
    # sections = 2 -> idx = 5 + 2 + 1 = 8 (the middle of the whole descent, index 5 or 6, is a plateau)
    assert _valley([3, 9, 9, 2.9, 9, 9, 2.8, 9, 9, 2.7, 1, 0, 9]) == 8
    # Straight descent over 9 points: lds = 1..9, max_end = 8, max_start = -1, sections = 3 -> idx = 3
    assert _valley([9, 8, 7, 6, 5, 4, 3, 2, 1]) == 3
    # Ties do not continue a descent: lds = [1, 1, 2, 2, 3]; max_end = 4, max_start = 1,
    # sections = 1 -> idx = 1 + 1 + 0 = 2
    assert _valley([2, 2, 1, 1, 0]) == 2


def test_valley_never_wraps_to_the_last_rate():
    # lds = [1, 2, 1, 1, 1]: max_end = 1, max_start = -1, sections = 2/3 -> idx = -1, which fastai
    # would read as lrs[-1] (the largest rate); epochal takes the first rate
    assert _valley([2, 1, 3, 4, 5]) == 0
    assert _valley([1, 2, 3, 4]) == 0  # never decreasing: lds are all 1, max_end = 0 -> idx = 0


def test_steep_and_min_div10_are_fastais_rules():
    lrs = [1e-4, 1e-3, 1e-2, 1e-1, 1.0]
    # equal steps in log(lr): the slopes are proportional to -0.5, -1.5, -0.2, +1.2; the steepest
    # segment is 1e-3 -> 1e-2 and fastai suggests its lower rate
    result = suggest_lr(lrs, [3.0, 2.5, 1.0, 0.8, 2.0], skip_start=0, skip_end=0)
    assert result["steep"] == 1e-3
    assert result["min_div10"] == pytest.approx(1e-2)  # minimum 0.8 at 1e-1, divided by ten
    # the first of equal minima, as torch's argmin
    assert suggest_lr(lrs, [3.0, 1.0, 2.0, 1.0, 4.0], skip_start=0, skip_end=0)["min_div10"] == pytest.approx(1e-4)


def test_skips_are_fastais_slice():
    # fastai reads recorder.losses[num_it // 10 : -5]: here num_it = 30, so points 0-2 and 25-29 are
    # out, and the lowest losses planted there are ignored
    lrs = lr_finder_schedule(1e-5, 1.0, 30)
    losses = [2.0 - 0.01 * i for i in range(30)]
    losses[1], losses[27] = 0.0, -1.0
    result = suggest_lr(lrs, losses)
    assert result["min_div10"] == pytest.approx(lrs[24] / 10)
    assert suggest_lr(lrs, losses, skip_start=0)["min_div10"] == pytest.approx(lrs[1] / 10)


def test_suggestion_errors():
    with pytest.raises(ValueError, match="differ in length"):
        suggest_lr([1e-3, 1e-2], [1.0])
    with pytest.raises(ValueError, match="at least 3 finite"):
        suggest_lr([1e-3, 1e-2, 1e-1], [1.0, float("nan"), float("inf")])
    with pytest.raises(ValueError, match="at least 3 finite"):
        suggest_lr([1e-4, 1e-3, 1e-2, 1e-1], [1.0, 0.5, float("nan"), 0.1])
