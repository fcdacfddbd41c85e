"""``--tta`` of ``eval`` and ``predict``: a bare flag (the mirror image) or a list of view names.

``--tta`` alone means ``flip``, as it always did; ``--tta flip,translate`` (or ``--tta=translate``)
names the views (:mod:`epochal.config.tta`). A word after a bare ``--tta`` is taken as its views
when it is not an option and not an existing file or folder (so ``predict RUN --tta img.png``
keeps ``img.png`` an input, and ``--tta flop`` is refused with the valid names).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from typer.core import TyperCommand

__all__ = ["TTACommand", "TtaOpt"]

TtaOpt = Annotated[
    str | None,
    typer.Option(
        "--tta",
        help="Test-time augmentation: bare --tta averages each image and its mirror image; "
        "--tta flip,translate also one-pixel shifts of both (airbench's views).",
    ),
]


def _with_tta_values(args: list[str]) -> list[str]:
    """``args`` with each bare ``--tta`` given its value (``flip``) so the parser sees one form."""
    out: list[str] = []
    i = 0
    while i < len(args):
        if args[i] != "--tta":
            out.append(args[i])
            i += 1
            continue
        following = args[i + 1] if i + 1 < len(args) else None
        if following is not None and not following.startswith("-") and not Path(following).exists():
            out.append(f"--tta={following}")
            i += 2
        else:
            out.append("--tta=flip")
            i += 1
    return out


class TTACommand(TyperCommand):
    """A command whose ``--tta`` may be given without a value."""

    def parse_args(self, ctx, args: list[str]) -> list[str]:
        return super().parse_args(ctx, _with_tta_values(args))
