"""Learning-rate finder math: the probe schedule, loss smoothing, suggestions and the plot.

The range test of Smith, *Cyclical Learning Rates for Training Neural Networks* (2017): train for a
few hundred steps while the rate grows exponentially (or linearly), record the loss, and read a
good rate off the curve. The loss is smoothed with a debiased exponential moving average (as in
Adam's bias correction). The suggestions are fastai's (``fastai/callback/schedule.py``), on the
smoothed curve cut as fastai cuts it: the first ``num // 10`` points and the last 5 are skipped,
then everything from the first non-finite loss on (fastai cuts at the first NaN; an infinite loss
marks the same divergence). With ``n`` points left:

* ``valley``: ``lds[i]``, the length of the longest strictly decreasing subsequence ending at
  ``i``; ``max_end`` the first index of its maximum, ``max_start = max_end - lds[max_end]``,
  ``sections = (max_end - max_start) / 3`` and the rate at
  ``max_start + int(sections) + int(sections / 2)``, about half-way down the longest valley;
* ``steep``: the lower rate of the segment where the loss falls fastest against ``log(lr)``;
* ``min_div10`` (fastai's ``minimum``): the rate of the (first) minimum loss divided by ten.

Where fastai would fail or wrap around, epochal does not: the skips shrink to nothing when fewer
than 3 points would remain, and a valley index of -1 (a curve whose only descent is its first
step) is taken as 0 instead of wrapping to the last rate. The Learner runs the probe loop; this
module is pure.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = ["lr_finder_schedule", "plot_lr_find", "smooth_losses", "suggest_lr"]


def lr_finder_schedule(
    start: float = 1e-7, end: float = 10.0, num: int = 100, mode: str = "exp"
) -> list[float]:
    """``num`` rates from ``start`` to ``end`` inclusive, geometric (``"exp"``) or evenly spaced.

    Examples:
        >>> [f"{lr:.0e}" for lr in lr_finder_schedule(1e-4, 1e-1, 4)]
        ['1e-04', '1e-03', '1e-02', '1e-01']
    """
    if mode not in ("exp", "linear"):
        raise ValueError(f"mode must be 'exp' or 'linear', got {mode!r}")
    if not isinstance(num, int) or isinstance(num, bool) or num < 2:
        raise ValueError(f"num must be an int >= 2, got {num!r}")
    if not (math.isfinite(start) and math.isfinite(end) and 0 <= start < end):
        raise ValueError(f"need finite 0 <= start < end, got start={start}, end={end}")
    if mode == "exp":
        if start <= 0:
            raise ValueError(f"exponential mode needs start > 0, got {start}")
        return [start * (end / start) ** (i / (num - 1)) for i in range(num)]
    return [start + (end - start) * i / (num - 1) for i in range(num)]


def smooth_losses(losses: Sequence[float], beta: float = 0.98) -> list[float]:
    """Debiased exponential moving average: ``avg_i / (1 - beta**(i+1))``.

    A non-finite loss makes the rest of the curve non-finite, as it marks divergence.
    """
    if not 0 <= beta < 1:
        raise ValueError(f"beta must be in [0, 1), got {beta}")
    average, smoothed = 0.0, []
    for i, loss in enumerate(losses):
        average = beta * average + (1 - beta) * float(loss)
        smoothed.append(average / (1 - beta ** (i + 1)))
    return smoothed


def suggest_lr(
    lrs: Sequence[float], losses: Sequence[float], skip_start: int | None = None, skip_end: int = 5
) -> dict[str, float]:
    """Suggested learning rates from a (smoothed) range-test curve, by fastai's rules.

    Args:
        lrs: the rates probed, increasing.
        losses: the loss at each rate (smoothed, see :func:`smooth_losses`).
        skip_start: leading points to ignore (warming up); None means a tenth of the curve.
            fastai skips a tenth of the *requested* steps, which is what ``Learner.lr_find``
            passes, also when the probe stopped early.
        skip_end: trailing points to ignore (divergence). Both skips become 0 when fewer than 3
            points would remain.

    Returns:
        ``{"valley": ..., "steep": ..., "min_div10": ...}`` (see the module docstring).

    Raises:
        ValueError: with fewer than 3 points before the first non-finite one, or lengths that differ.

    Examples:
        >>> suggest_lr([1e-4, 1e-3, 1e-2, 1e-1], [2.0, 1.0, 0.5, 3.0], skip_start=0, skip_end=0)["min_div10"]
        0.001
    """
    if len(lrs) != len(losses):
        raise ValueError(f"lrs and losses differ in length: {len(lrs)} vs {len(losses)}")
    skip_start = len(lrs) // 10 if skip_start is None else skip_start
    if len(lrs) - skip_start - skip_end < 3:
        skip_start, skip_end = 0, 0
    rates, values = [], []
    for rate, value in zip(lrs[skip_start : len(lrs) - skip_end], losses[skip_start : len(lrs) - skip_end]):
        if not (math.isfinite(rate) and math.isfinite(value)):
            break  # divergence: nothing after it says anything about good rates
        if rate > 0:  # a linear probe may start at 0, which has no logarithm
            rates.append(float(rate))
            values.append(float(value))
    if len(values) < 3:
        raise ValueError(
            f"need at least 3 finite (lr, loss) points before the first non-finite one to suggest a rate, "
            f"got {len(values)}"
        )
    minimum = min(range(len(values)), key=values.__getitem__)
    return {
        "valley": rates[_valley_index(values)],
        "steep": rates[_steepest_index(rates, values)],
        "min_div10": rates[minimum] / 10,
    }


def _valley_index(values: list[float]) -> int:
    """fastai's ``valley``: about half-way along the longest decreasing stretch (see the module)."""
    decreasing = _decreasing_lengths(values)
    max_end = decreasing.index(max(decreasing))
    max_start = max_end - decreasing[max_end]
    sections = (max_end - max_start) / 3
    return max(0, max_start + int(sections) + int(sections / 2))


def _decreasing_lengths(values: list[float]) -> list[int]:
    """``lds[i]``: the longest strictly decreasing subsequence ending at ``i`` (fastai's O(n^2) DP).

    Patience sorting gives the same lengths in O(n log n): ``tails[k]`` is the largest negated
    value that ends a decreasing subsequence of length ``k + 1``.
    """
    tails: list[float] = []
    lengths = []
    for value in values:
        k = bisect.bisect_left(tails, -value)
        if k == len(tails):
            tails.append(-value)
        else:
            tails[k] = -value
        lengths.append(k + 1)
    return lengths


def _steepest_index(rates: list[float], values: list[float]) -> int:
    """fastai's ``steep``: the start of the segment with the most negative d(loss)/d(log lr)."""
    best, best_slope = 0, math.inf
    for i in range(len(rates) - 1):
        run = math.log(rates[i + 1]) - math.log(rates[i])
        if run > 0:
            slope = (values[i + 1] - values[i]) / run
            if slope < best_slope:
                best, best_slope = i, slope
    return best


def plot_lr_find(
    lrs: Sequence[float],
    losses: Sequence[float],
    suggestions: Mapping[str, float] | None = None,
    path: str | Path | None = None,
    log_x: bool = True,
) -> Any:
    """Plot loss against learning rate with the suggestions marked.

    Returns:
        ``path`` as a :class:`~pathlib.Path` when given (a PNG), else the matplotlib ``Figure``.
    """
    from epochal.schedules.plots import new_figure, save_figure

    figure, (axis,) = new_figure(1, (7.0, 4.5))
    finite = [
        (r, v) for r, v in zip(lrs, losses) if math.isfinite(r) and math.isfinite(v) and (r > 0 or not log_x)
    ]
    axis.plot([p[0] for p in finite], [p[1] for p in finite], color="tab:blue")
    if log_x:
        axis.set_xscale("log")
    axis.set_xlabel("learning rate")
    axis.set_ylabel("loss")
    markers = ("o", "s", "^", "D", "v")
    for (name, rate), marker in zip((suggestions or {}).items(), markers * 4):
        if finite:
            nearest = min(finite, key=lambda p: abs(math.log(p[0] / rate)) if log_x else abs(p[0] - rate))
            axis.plot(
                [rate],
                [nearest[1]],
                marker=marker,
                linestyle="none",
                markersize=8,
                label=f"{name}: {rate:.2e}",
            )
    if suggestions:
        axis.legend()
    return save_figure(figure, path)
