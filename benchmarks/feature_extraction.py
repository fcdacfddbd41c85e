"""Feature extraction against fine-tuning: time to train a head on cached features vs the whole network.

Trains a source run (the default recipe's airbench on the bundled ``cifar10-mini``), then from its
run folder, on the same data, the same machine and the same number of epochs:

* ``finetune``: the whole network trained (``model.weights=RUN``, default augmentation);
* ``features_first``: ``model.freeze=backbone`` with ``data.cache_features=true``, the cache empty
  (its time includes computing the features once);
* ``features_cached``: the same again, reading the cache (the time of training the head).

``ratio`` is ``features_cached_s / finetune_s`` (target below 0.1), ``ratio_first`` the same for
the first feature run. Times are whole ``train`` calls (building data and model, computing or
reading the features, fitting, checkpoints); ``*_fit_s`` are the runs' own fit times. The images
are packed once, by the source run, into a cache folder the others reuse. Prints one JSON object
as the last line of stdout::

    python benchmarks/feature_extraction.py --epochs 5
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

import torch

from epochal.config import load_config
from epochal.config.experiment import train


def _recipe(args, cache: Path, extra: list[str]) -> list[str]:
    common = [
        f"data.path={args.data}",
        f"data.batch_size={args.batch_size}",
        f"data.options.cache_dir={cache}",
        "data.options.progress=false",
        f"epochs={args.epochs}",
        f"trainer.device={args.device}",
        "trainer.plots=false",
        "callbacks.progress_bar=null",
    ]
    if args.widths:
        common.append(f"model.widths={args.widths}")
    return [*common, *extra]


def _run(args, cache: Path, out: Path, extra: list[str]) -> dict:
    config = load_config("default", _recipe(args, cache, extra))
    start = time.perf_counter()
    result = train(config, out=out, progress=False)
    total = time.perf_counter() - start
    return {"total_s": total, "fit_s": result["wall_s"], "accuracy": result["metrics"].get("accuracy"),
            "run_dir": result["run_dir"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default="cifar10-mini", help="an image folder or bundled data set name")
    parser.add_argument("--epochs", type=int, default=5, help="epochs of each compared run")
    parser.add_argument("--source-epochs", type=int, default=5, help="epochs of the source run")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--widths", default=None, help="airbench widths, e.g. [16,32,32] (default: the recipe's)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory(prefix="epochal-feature-bench-") as tmp:
        cache, out = Path(tmp) / "cache", Path(tmp) / "runs"
        epochs = args.epochs
        args.epochs = args.source_epochs
        source = _run(args, cache, out, [])
        args.epochs = epochs
        weights = f"model.weights={source['run_dir']}"
        finetune = _run(args, cache, out, [weights])
        feature_keys = [weights, "model.freeze=backbone", "data.cache_features=true", "data.augment=null"]
        first = _run(args, cache, out, feature_keys)
        cached = _run(args, cache, out, feature_keys)
    print(json.dumps({
        "benchmark": "feature_extraction",
        "device": args.device,
        "torch_threads": torch.get_num_threads(),
        "machine": platform.processor() or platform.machine(),
        "data": args.data,
        "epochs": args.epochs,
        "source_accuracy": source["accuracy"],
        "finetune_s": finetune["total_s"],
        "finetune_fit_s": finetune["fit_s"],
        "finetune_accuracy": finetune["accuracy"],
        "features_first_s": first["total_s"],
        "features_cached_s": cached["total_s"],
        "features_cached_fit_s": cached["fit_s"],
        "features_accuracy": cached["accuracy"],
        "ratio": cached["total_s"] / finetune["total_s"],
        "ratio_first": first["total_s"] / finetune["total_s"],
        "target_ratio": 0.1,
    }))


if __name__ == "__main__":
    main()
