"""The ``epochal`` command line: a thin shell over :mod:`epochal.config` and :mod:`epochal.runs`.

Every command takes ``--json`` (one JSON object on the last stdout line) and reports user errors
as one line on stderr with exit status 1. ``epochal --install-completion`` sets up shell completion.
"""

from __future__ import annotations

from typing import Annotated

import typer

from epochal.cli import cache, inspect, relabel, sanity, train, tune, use
from epochal.cli._output import DEBUG
from epochal.cli.tta import TTACommand

__all__ = ["app", "main"]

app = typer.Typer(
    name="epochal",
    help="Deep-learning training with the best practices built in: recipes, runs, exact resume.",
    add_completion=True,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


@app.callback()
def _root(debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks of errors.")] = False) -> None:
    """Deep-learning training with the best practices built in: recipes, runs, exact resume."""
    DEBUG["enabled"] = debug


app.command("train")(train.train)
app.command("eval", cls=TTACommand)(use.evaluate)
app.command("predict", cls=TTACommand)(use.predict)
app.command("lr-find")(train.lr_find)
app.command("plot-schedule")(train.plot_schedule)
app.command("sanity")(sanity.sanity)
app.command("tune")(tune.tune)
app.command("models")(inspect.models)
app.command("recipes")(inspect.recipes)
app.command("runs")(inspect.runs)
app.command("compare")(inspect.compare)
app.command("export")(use.export)
app.command("relabel")(relabel.relabel)
app.add_typer(cache.app, name="cache")


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    main()
