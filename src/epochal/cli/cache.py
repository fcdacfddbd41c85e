"""``epochal cache verify DIR``: check a packed image cache against its manifest."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from epochal.cli._output import JsonOpt, command, emit_json

__all__ = ["app", "verify"]

app = typer.Typer(help="Packed image caches: check them.", no_args_is_help=True)


@command
def verify(
    cache_dir: Annotated[Path, typer.Argument(help="A packed cache folder (the one holding manifest.json).")],
    json_output: JsonOpt = False,
) -> None:
    """Check every shard's size and checksum; exit 1 naming the bad shards."""
    from epochal.data import verify_image_cache

    check = verify_image_cache(cache_dir)
    if json_output:
        emit_json(check.to_dict())
    else:
        for shard in check.shards:
            detail = f"  {shard.detail}" if shard.detail else ""
            print(f"{shard.file}  {shard.rows} rows  {shard.status}{detail}")
        print(f"{check.cache}: {len(check.shards) - len(check.bad)} of {len(check.shards)} shard(s) good")
    if not check.ok:
        named = "; ".join(f"{s.file} {s.detail}" for s in check.bad)
        print(f"error: {check.cache}: {len(check.bad)} bad shard(s): {named}; repack them by running the "
              "same pack or training again (bad shards are repacked), or delete the folder",
              file=sys.stderr, flush=True)
        raise typer.Exit(1)


app.command("verify")(verify)
