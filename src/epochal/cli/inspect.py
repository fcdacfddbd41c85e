"""``epochal models``, ``recipes``, ``runs`` and ``compare``: looking around without training."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from epochal.cli._output import JsonOpt, command, console, emit_json

__all__ = ["compare", "models", "recipes", "runs"]


def _table(title: str, columns: list[str], wrap: tuple[str, ...] = ()):
    """A table whose cells stay on one line, except in the free-text columns named in ``wrap``."""
    from rich.table import Table

    table = Table(title=title)
    for i, name in enumerate(columns):
        justify = "left" if i == 0 or name in wrap else "right"
        table.add_column(name, justify=justify, overflow="fold", no_wrap=name not in wrap)
    return table


def _fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:.4f}"
    return "-" if value is None else str(value)


@command
def models(
    pattern: Annotated[
        str | None, typer.Argument(help="Shell pattern or substring, e.g. 'regnety_*' or 'resnet'.")
    ] = None,
    family: Annotated[str | None, typer.Option(help="Only this family (regnet, resnet, ...).")] = None,
    json_output: JsonOpt = False,
) -> None:
    """List the registered models with their parameters and multiply-accumulates per sample."""
    from epochal.models import model_summaries

    rows = [{k: r[k] for k in ("name", "family", "params", "macs")} for r in model_summaries(pattern, family)]
    if json_output:
        emit_json({"models": rows})
        return
    table = _table("models", ["name", "family", "params (M)", "GMACs"])
    for r in rows:
        table.add_row(r["name"], r["family"], f"{r['params'] / 1e6:.2f}", f"{r['macs'] / 1e9:.3f}")
    console().print(table)


@command
def recipes(json_output: JsonOpt = False) -> None:
    """List the recipes shipped with epochal."""
    from epochal.config import recipe_descriptions

    rows = recipe_descriptions()
    if json_output:
        emit_json({"recipes": rows})
        return
    table = _table("recipes", ["name", "extends", "description"], wrap=("description",))
    for r in rows:
        table.add_row(r["name"], r["extends"] or "", r["description"])
    console().print(table)


@command
def runs(
    root: Annotated[Path, typer.Option("--root", help="Folder holding the run folders.")] = Path("runs"),
    sort: Annotated[str | None, typer.Option(help="Sort by a validation metric (best first), e.g. accuracy.")] = None,
    recipe: Annotated[str | None, typer.Option(help="Only runs of this recipe.")] = None,
    tag: Annotated[str | None, typer.Option(help="Only runs with this tag.")] = None,
    reverse: Annotated[bool, typer.Option(help="Reverse the order.")] = False,
    study: Annotated[str | None, typer.Option(help="Only the trials of this study (epochal tune).")] = None,
    json_output: JsonOpt = False,
) -> None:
    """Table of the runs under a root folder with their key metrics (a search's trials with their study)."""
    from epochal.runs.registry import list_runs, run_row

    rows = [run_row(r) for r in list_runs(root, sort=sort, recipe=recipe, tag=tag, reverse=reverse, study=study)]
    if json_output:
        emit_json({"runs": rows})
        return
    metric_names = sorted({k for r in rows for k in r["metrics"]})
    trials = any(r["study"] is not None for r in rows)
    columns = ["run", *(["study", "trial"] if trials else []), "recipe", "status", "epochs", "wall s"]
    table = _table(f"runs in {root}", [*columns, *metric_names])
    for r in rows:
        table.add_row(
            r["name"],
            *([r["study"] or "-", _trial_cell(r)] if trials else []),
            r["recipe"] or "-",
            r["status"],
            _fmt(r["epochs"]),
            "-" if r["wall_s"] is None else f"{r['wall_s']:.1f}",
            *[_fmt(r["metrics"].get(m)) for m in metric_names],
        )
    console().print(table)


def _trial_cell(row) -> str:
    return "-" if row["trial"] is None else f"{row['trial']} {row['trial_state'] or ''}".strip()


@command
def compare(
    run_dirs: Annotated[list[Path], typer.Argument(help="Two or more run folders.")],
    json_output: JsonOpt = False,
) -> None:
    """Side by side: the config keys that differ between runs, and their metrics."""
    from epochal.runs.registry import compare_runs

    result = compare_runs(run_dirs)
    if json_output:
        emit_json(result)
        return
    console().print(_compare_table(result))


def _compare_table(result):
    """Keys whole in the first column (never narrower than the longest), long values wrapped in theirs.

    ``epochs`` is the recipe's setting; ``epochs run`` (from the summaries) is shown only where a
    run did not run them all (stopped early, interrupted), so the same number is not listed twice.
    """
    from rich.table import Table

    rows = [(key, [_fmt(v) for v in values]) for key, values in result["config"].items()]
    metrics = [(f"valid/{name}", [_fmt(v) for v in values]) for name, values in result["metrics"].items()]
    if [_fmt(v) for v in result["epochs"]] != [_fmt(v) for v in result["planned_epochs"]]:
        metrics.append(("epochs run", [_fmt(v) for v in result["epochs"]]))
    metrics.append(("wall s", ["-" if v is None else f"{v:.1f}" for v in result["wall_s"]]))
    width = max(len(key) for key, _ in rows + metrics)
    table = Table(title="comparison")
    table.add_column("key", no_wrap=True, min_width=width, overflow="ellipsis")
    for name in result["runs"]:
        table.add_column(name, overflow="fold", ratio=1)  # wraps: the key column keeps its width
    for key, values in rows:
        table.add_row(key, *values)
    table.add_section()
    for key, values in metrics:
        table.add_row(key, *values)
    return table

