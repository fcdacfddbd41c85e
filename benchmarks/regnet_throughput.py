"""Training throughput of epochal's RegNetY-400MF against timm's ``regnety_004`` in the same run.

On a GPU (the default): batch 256 at 224 px, bf16 autocast, channels-last, SGD with momentum,
eager and ``torch.compile``; both models are measured back to back on the same random batch and
the ratio epochal/timm is reported (1.0 means equal speed, above 1 means epochal is faster). The two
models are timed in alternating rounds (``--repeats``, best round counts) so that clock or load
drift affects both alike.

Without CUDA, or without timm, it prints a JSON object with a "skipped" reason. ``--device cpu``
measures epochal alone (and timm too if it is importable), so the script can be exercised on any
machine, e.g. ``--device cpu --batch-size 8 --image-size 64 --steps 3``.

The last line of stdout is always one JSON object.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

MODEL = "regnety_004"


def _parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", default="cuda", choices=("cuda", "cpu"))
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--image-size", type=int, default=224)
    p.add_argument("--steps", type=int, default=30, help="timed optimizer steps per measurement")
    p.add_argument("--warmup", type=int, default=None, help="untimed steps first (default: 5 on GPU, 1 on CPU)")
    p.add_argument("--repeats", type=int, default=3, help="timed rounds per model; the best one counts")
    p.add_argument("--modes", default=None, help="comma list of eager,compiled (default: both on GPU, eager on CPU)")
    p.add_argument("--no-channels-last", action="store_true", help="keep NCHW memory format")
    args = p.parse_args(argv)
    args.warmup = args.warmup if args.warmup is not None else (5 if args.device == "cuda" else 1)
    args.modes = (args.modes or ("eager,compiled" if args.device == "cuda" else "eager")).split(",")
    bad = [m for m in args.modes if m not in ("eager", "compiled")]
    if bad:
        p.error(f"unknown mode(s) {bad}; valid: eager, compiled")
    if min(args.batch_size, args.image_size, args.steps, args.repeats) < 1:
        p.error("--batch-size, --image-size, --steps and --repeats must be >= 1")
    return args


def _timm_problem() -> str | None:
    """Why timm cannot serve as the baseline, or None when it can."""
    try:
        import timm  # noqa: F401
    except Exception as error:  # noqa: BLE001  (ImportError, or a broken torchvision under timm)
        return f"timm is not importable ({type(error).__name__}: {error}); pip install timm"
    return None


def _timm_model() -> nn.Module:
    import timm

    return timm.create_model(MODEL, num_classes=1000)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _make_step(model: nn.Module, args: argparse.Namespace, device: torch.device, compiled: bool) -> Callable[[], None]:
    """One full training step (forward, loss, backward, SGD step) on a fixed random batch."""
    fmt = torch.preserve_format if args.no_channels_last else torch.channels_last
    model = model.to(device, memory_format=fmt).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-5)
    generator = torch.Generator(device=device).manual_seed(0)
    x = torch.randn(args.batch_size, 3, args.image_size, args.image_size, device=device, generator=generator)
    x = x.contiguous(memory_format=fmt)
    y = torch.randint(0, 1000, (args.batch_size,), device=device, generator=generator)
    forward = torch.compile(model) if compiled else model

    def step() -> None:
        with torch.autocast(device.type, dtype=torch.bfloat16):
            loss = F.cross_entropy(forward(x), y)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return step


def _images_per_second(step: Callable[[], None], args: argparse.Namespace, device: torch.device) -> float:
    _sync(device)
    start = time.perf_counter()
    for _ in range(args.steps):
        step()
    _sync(device)
    return args.batch_size * args.steps / (time.perf_counter() - start)


def _measure(steps: dict[str, Callable[[], None]], args: argparse.Namespace, device: torch.device) -> dict[str, float]:
    """Best-of-``repeats`` images/s per model, the models timed in alternation so drift hits both alike."""
    for step in steps.values():
        for _ in range(args.warmup):
            step()
    best = dict.fromkeys(steps, 0.0)
    for _ in range(args.repeats):
        for name, step in steps.items():
            best[name] = max(best[name], _images_per_second(step, args, device))
    return best


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Measure and return the result object."""
    from epochal.models import create

    result: dict[str, Any] = {
        "benchmark": "regnet_throughput",
        "model": MODEL,
        "device": args.device,
        "batch_size": args.batch_size,
        "image_size": args.image_size,
        "dtype": "bfloat16",
        "channels_last": not args.no_channels_last,
        "steps": args.steps,
        "repeats": args.repeats,
        "torch": torch.__version__,
        "target_ratio": 1.0,
    }
    if args.device == "cuda" and not torch.cuda.is_available():
        skipped = "CUDA is not available; run on a GPU, or pass --device cpu to measure epochal alone"
        return {**result, "skipped": skipped}
    timm_problem = _timm_problem()
    if args.device == "cuda" and timm_problem:
        return {**result, "skipped": timm_problem}
    device = torch.device(args.device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        result["gpu"] = torch.cuda.get_device_name(device)
    results: dict[str, Any] = {}
    for mode in args.modes:
        compiled = mode == "compiled"
        torch.manual_seed(0)
        steps = {"epochal": _make_step(create(MODEL), args, device, compiled)}
        if timm_problem is None:
            steps["timm"] = _make_step(_timm_model(), args, device, compiled)
        best = _measure(steps, args, device)
        row: dict[str, Any] = {"epochal_img_s": round(best["epochal"], 2), "timm_img_s": None, "ratio": None}
        if "timm" in best:
            row.update(timm_img_s=round(best["timm"], 2), ratio=round(best["epochal"] / best["timm"], 4))
        results[mode] = row
    result["results"] = results
    if timm_problem:
        result["baseline"] = timm_problem
    return result


def main(argv: list[str] | None = None) -> int:
    print(json.dumps(run(_parse(argv))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
