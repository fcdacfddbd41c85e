"""Test-time augmentation views by name: what ``--tta flip,translate`` of ``eval`` and ``predict`` means.

The views are airbench's (Jordan, 2024; :func:`epochal.data.tta_views`): ``flip`` adds the
mirrored image, ``translate`` the image shifted by one pixel down-right and up-left (reflect
padding), and of the mirrored image too when ``flip`` is asked for. The model's logits are
averaged over the views with equal weights (:func:`epochal.data.predict_tta`), before any
softmax or sigmoid.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

from torch import nn

__all__ = ["TRANSLATE_PIXELS", "TTA_VIEWS", "TTASpec", "parse_tta", "tta_model"]

#: The view names ``--tta`` takes.
TTA_VIEWS = ("flip", "translate")
#: How far the ``translate`` views shift (airbench's one pixel each way).
TRANSLATE_PIXELS = 1


class TTASpec(NamedTuple):
    """Which views to average: the mirror image, and shifts of ``translate`` pixels (0: none)."""

    flip: bool
    translate: int


def parse_tta(value: bool | str | Sequence[str] | TTASpec | None) -> TTASpec | None:
    """The views of a ``tta`` argument: None/False for none, True for ``flip``, or view names.

    Args:
        value: ``True``/``False``, ``"flip,translate"``, ``["flip", "translate"]`` or a :class:`TTASpec`.

    Returns:
        The spec, or None when no views beyond the image itself are asked for.

    Raises:
        ValueError: for a name not in :data:`TTA_VIEWS`, naming the valid ones.

    Examples:
        >>> parse_tta("flip,translate")
        TTASpec(flip=True, translate=1)
    """
    if value is None or value is False:
        return None
    if value is True:
        return TTASpec(flip=True, translate=0)
    if isinstance(value, TTASpec):
        return value
    names = [n.strip() for n in (value.split(",") if isinstance(value, str) else value)]
    unknown = [n for n in names if n not in TTA_VIEWS]
    if unknown or not names:
        raise ValueError(
            f"--tta views {unknown or names} are not valid; use a comma-separated list of {list(TTA_VIEWS)}"
        )
    return TTASpec(flip="flip" in names, translate=TRANSLATE_PIXELS if "translate" in names else 0)


def tta_model(model: nn.Module, tta: bool | str | Sequence[str] | TTASpec | None) -> nn.Module:
    """``model`` wrapped to average its logits over the views of ``tta`` (itself when there are none)."""
    from epochal.config.inference import TTAModel

    spec = parse_tta(tta)
    return model if spec is None else TTAModel(model, flip=spec.flip, translate=spec.translate)
