"""Knowledge distillation on real CIFAR-10 images: a small student distilled from a larger teacher
against the same student trained alone (Hinton, Vinyals & Dean, *Distilling the Knowledge in a
Neural Network*, 2015).

Three runs of the ``default`` recipe (airbench network, one-cycle SGD with Nesterov momentum,
flip + translate, label smoothing 0.1) on a class-balanced subset of the shared CIFAR-10 JPEG
training images, with the same seeded held-out split (``data.valid_pct``) that no run trains on:

* the teacher, a wide network;
* the student alone, a narrow network;
* the same student, same budget (epochs, batches, initialisation), distilled from the teacher run
  through the recipe key ``distillation: {teacher: RUN, temperature: T, alpha: A}``.

Prints one JSON object: each run's held-out accuracy and loss, parameters, training time, and the
``epochal train`` command that repeats it.

    python benchmarks/distillation_cifar.py [--images 5000] [--epochs 8] [--teacher 64,128,256] [--student 16,32,64]
"""

from __future__ import annotations

import argparse
import json
import platform
import shlex
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from data_pipeline import ARCHIVE, extract_subset  # noqa: E402  (the benchmarks folder is not a package)

from epochal.config import load_config  # noqa: E402
from epochal.config.experiment import train  # noqa: E402


def parse(argv) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--archive", type=Path, default=ARCHIVE)
    parser.add_argument("--images", type=int, default=5_000, help="class-balanced subset (train + held out)")
    parser.add_argument("--valid-pct", type=float, default=0.2, help="held-out share of the subset")
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--teacher", default="64,128,256", help="airbench widths of the teacher")
    parser.add_argument("--student", default="16,32,64", help="airbench widths of the student")
    parser.add_argument("--temperature", type=float, default=4.0)
    parser.add_argument("--alpha", type=float, default=0.9)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None, help="folder for the data and runs (default: temporary)")
    return parser.parse_args(argv)


def _overrides(args, data: Path, cache: Path, widths: str, name: str, extra: list[str]) -> list[str]:
    return [
        f"name={name}",
        f"data.path={data}",
        f"data.valid_pct={args.valid_pct}",
        f"data.options.cache_dir={cache}",
        f"epochs={args.epochs}",
        f"seed={args.seed}",
        f"model.widths=[{widths}]",
        "trainer.plots=false",
        *extra,
    ]


def _run(args, overrides: list[str], runs: Path) -> dict:
    config = load_config("default", overrides)
    start = time.perf_counter()
    result = train(config, out=runs, progress=False)
    summary = json.loads((Path(result["run_dir"]) / "summary.json").read_text())
    command = "epochal train default " + " ".join(f"--set {shlex.quote(o)}" for o in overrides)
    return {
        "accuracy": result["metrics"]["accuracy"],
        "loss": result["metrics"]["loss"],
        "best_accuracy": result["best"].get("accuracy"),
        "params": sum(p.numel() for p in _model_params(result["run_dir"])),
        "train_s": result["wall_s"],
        "command_s": time.perf_counter() - start,
        "epochs": result["epochs"],
        "status": summary.get("status"),
        "run_dir": result["run_dir"],
        "command": command + f" --out {runs}",
    }


def _model_params(run_dir: str):
    from epochal.config.inference import restore_model

    return restore_model(run_dir)[0].parameters()


def main(argv=None) -> dict:
    args = parse(argv)
    if not args.archive.is_file():
        raise SystemExit(f"CIFAR-10 archive not found: {args.archive} (pass --archive)")
    with tempfile.TemporaryDirectory(prefix="epochal-kd-") as scratch:
        out = args.out or Path(scratch)
        data = extract_subset(args.archive, out / "data", args.images)
        cache, runs = out / "cache", out / "runs"
        teacher = _run(args, _overrides(args, data, cache, args.teacher, "kd-teacher", []), runs)
        alone = _run(args, _overrides(args, data, cache, args.student, "kd-student-alone", []), runs)
        spec = f"{{teacher: {teacher['run_dir']}, temperature: {args.temperature}, alpha: {args.alpha}}}"
        distil = _overrides(args, data, cache, args.student, "kd-student-distilled", [f"distillation={spec}"])
        distilled = _run(args, distil, runs)
    result = {
        "benchmark": "distillation_cifar",
        "images": args.images,
        "valid_pct": args.valid_pct,
        "epochs": args.epochs,
        "temperature": args.temperature,
        "alpha": args.alpha,
        "seed": args.seed,
        "teacher": teacher,
        "student_alone": alone,
        "student_distilled": distilled,
        "gain": distilled["accuracy"] - alone["accuracy"],
        "machine": {"cpus": torch.get_num_threads(), "platform": platform.platform(), "torch": torch.__version__},
    }
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
