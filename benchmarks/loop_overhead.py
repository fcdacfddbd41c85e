"""Loop overhead: the same small CNN trained by a plain PyTorch loop and by the Learner.

The Learner runs with its progress bar and CSV logging on. Both loops see the same data (already
on the device, as in airbench), the same model, optimizer and number of steps, alternately
repeated; the JSON reports the median times, the median ratio of the runs done back to back
(target <= 1.05) and the Learner's extra microseconds per step. On the CPU it also
reports the ratio of process CPU time (``cpu_ratio``), which the other jobs of a shared machine
distort much less than wall time: waiting for a core is not counted.

    python benchmarks/loop_overhead.py [--device cuda] [--epochs 2] [--repeats 9] [--model mlp] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time

import torch
from torch import nn

from epochal.callbacks.csv_logger import CSVLogger
from epochal.callbacks.progress_bar import ProgressBar
from epochal.data.base import ArrayLoader
from epochal.learner import Learner
from epochal.runs.folder import cpu_info
from epochal.schedules import TrainingPhase


def small_cnn() -> nn.Module:
    def block(cin, cout):
        return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.GELU(),
                             nn.MaxPool2d(2))

    return nn.Sequential(block(3, 32), block(32, 64), block(64, 128), nn.AdaptiveMaxPool2d(1), nn.Flatten(),
                         nn.Linear(128, 10))


def tiny_mlp() -> nn.Module:
    """Per-step compute so small that the loop's own overhead dominates (the worst case)."""
    return nn.Sequential(nn.Flatten(), nn.Linear(3 * 32 * 32, 64), nn.ReLU(), nn.Linear(64, 10))


MODELS = {"cnn": small_cnn, "mlp": tiny_mlp}


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _clocks() -> tuple[float, float]:
    return time.perf_counter(), time.process_time()


def _since(start: tuple[float, float]) -> tuple[float, float]:
    wall, cpu = _clocks()
    return wall - start[0], cpu - start[1]


def plain_loop(model, loader, device, epochs: int) -> tuple[float, float]:
    """(wall seconds, process CPU seconds) of the plain loop."""
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    loss_fn = nn.CrossEntropyLoss()
    synchronize(device)
    start = _clocks()
    for epoch in range(epochs):
        model.train()
        total = torch.zeros((), device=device)
        for x, y in loader.iter_epoch(epoch):
            loss = loss_fn(model(x), y)
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            total += loss.detach()
        float(total)  # one read per epoch, like the Learner's epoch log
    synchronize(device)
    return _since(start)


def learner_loop(model, loader, device, epochs: int, run_dir) -> tuple[float, float]:
    """(wall seconds, process CPU seconds) of the Learner."""
    learner = Learner(model, (loader, None), optimizer="sgd", lr=0.05, device=device,
                      callbacks=[ProgressBar(), CSVLogger(path=f"{run_dir}/metrics.csv")])
    synchronize(device)
    start = _clocks()
    learner.fit(TrainingPhase(epochs, lr=0.05, momentum=0.9))
    synchronize(device)
    return _since(start)


def _paired_ratio(plain: list, ours: list, clock: int) -> float:
    """The median over repeats of Learner time / plain time, each pair run back to back."""
    return statistics.median(o[clock] / p[clock] for p, o in zip(plain, ours))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--samples", type=int, default=2048)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--model", choices=sorted(MODELS), default="cnn")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(args.samples, 3, 32, 32, generator=gen).to(device)
    y = torch.randint(0, 10, (args.samples,), generator=gen).to(device)
    loader = ArrayLoader(x, y, batch_size=args.batch_size, shuffle=False)
    plain, ours = [], []
    with tempfile.TemporaryDirectory() as tmp:
        torch.manual_seed(0)  # warm-up of both loops (kernels, allocator, the Learner's lazy imports)
        plain_loop(MODELS[args.model]().to(device), loader, device, 1)
        learner_loop(MODELS[args.model]().to(device), loader, device, 1, tmp)
        for _ in range(args.repeats):
            torch.manual_seed(0)
            plain.append(plain_loop(MODELS[args.model]().to(device), loader, device, args.epochs))
            torch.manual_seed(0)
            ours.append(learner_loop(MODELS[args.model]().to(device), loader, device, args.epochs, tmp))
    steps = args.epochs * len(loader)
    wall = [statistics.median(t[0] for t in runs) for runs in (plain, ours)]
    result = {
        "benchmark": "loop_overhead",
        "device": str(device),
        "model": args.model,
        "torch": torch.__version__,
        "cpu": cpu_info(),
        "steps": steps,
        "repeats": args.repeats,
        "threads": torch.get_num_threads(),
        "load_average": [round(v, 2) for v in os.getloadavg()],
        "plain_s": round(wall[0], 4),
        "learner_s": round(wall[1], 4),
        # the median of the ratios of runs done back to back: load that comes and goes hits a pair alike
        "ratio": round(_paired_ratio(plain, ours, 0), 4),
        "overhead_us_per_step": round(statistics.median(o[0] - p[0] for p, o in zip(plain, ours)) / steps * 1e6, 1),
        "target_ratio": 1.05,
    }
    if device.type == "cpu":  # CPU time means nothing for asynchronous CUDA work
        cpu = [statistics.median(t[1] for t in runs) for runs in (plain, ours)]
        result.update(plain_cpu_s=round(cpu[0], 4), learner_cpu_s=round(cpu[1], 4),
                      cpu_ratio=round(_paired_ratio(plain, ours, 1), 4))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
