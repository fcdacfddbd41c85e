"""SWA on real CIFAR-10 images: against SGD, against torch.optim.swa_utils driven by hand, and a snapshot ensemble.

The experiment of Izmailov et al. (*Averaging Weights Leads to Wider Optima and Better
Generalization*, 2018, table 1) at CPU scale: one network and data set, a training budget of B
epochs, and held-out accuracy of

* SGD for 1.0B with the paper's schedule (constant for half the budget, linear decay to 0.01x of
  the rate by 90%, constant after);
* SWA for 1.0B, 1.25B and 1.5B: the same schedule shape over the first 0.75B ending at the SWA
  rate, then a constant SWA rate with the weights averaged at the end of every epoch, BatchNorm
  recalibrated for the average (epochal's ``SWA`` callback and ``swa_phase``);
* ``torch.optim.swa_utils`` driven by hand at 1.25B: ``AveragedModel`` updated at the end of the
  same epochs, ``update_bn`` on the same training loader, in a plain PyTorch loop over the same
  network, batches, optimizer and per-step rates (the reference implementation epochal's SWA must
  match);
* a 3-snapshot ensemble at 1.0B: three SGDR cosine cycles of B/3 epochs, the model at the end of each
  cycle (``SnapshotEnsemble``), probabilities averaged with equal weights.

Every run starts from the same seeded initialisation and sees the same batches. The images are a
class-balanced subset of the shared CIFAR-10 JPEG training images; the held-out split is a seeded,
stratified share of it that no run trains on. Prints one JSON object.

    python benchmarks/swa_cifar.py [--train 4000] [--valid 2000] [--budget 12] [--widths 32,64,128]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel, update_bn

sys.path.insert(0, str(Path(__file__).resolve().parent))

from data_pipeline import ARCHIVE, extract_subset  # noqa: E402  (the benchmarks folder is not a package)

from epochal.averaging import Ensemble  # noqa: E402
from epochal.callbacks import SWA, SnapshotEnsemble  # noqa: E402
from epochal.data import image_folder_loaders  # noqa: E402
from epochal.learner import Learner  # noqa: E402
from epochal.models import create  # noqa: E402
from epochal.optim import build_optimizer, param_groups  # noqa: E402
from epochal.schedules import PhaseSchedule, flat_linear, sgdr, swa_phase  # noqa: E402
from epochal.state import load_checkpoint, seed_everything  # noqa: E402

AUGMENT = ["flip", "translate(pad=4)"]


def parse(argv) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--archive", type=Path, default=ARCHIVE)
    parser.add_argument("--train", type=int, default=4000, help="training images (class-balanced)")
    parser.add_argument("--valid", type=int, default=2000, help="held-out images (class-balanced share)")
    parser.add_argument("--budget", type=int, default=12, help="B: the SGD budget in epochs (a multiple of 4 and 3)")
    parser.add_argument("--widths", default="32,64,128", help="airbench stage widths")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=0.1, help="the initial rate")
    parser.add_argument("--swa-lr", type=float, default=0.05, help="the SWA rate")
    parser.add_argument("--weight-decay", type=float, default=5e-4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--runs", default="sgd,swa,torch,snapshots", help="which runs (comma-separated)")
    parser.add_argument("--swa-budgets", default="1.0,1.25,1.5", help="SWA run lengths, in budgets")
    parser.add_argument("--torch-budget", type=float, default=1.25, help="length of the torch.optim.swa_utils run")
    return parser.parse_args(argv)


class Setup:
    """Data, model and optimizer shared by every run, each run from the same seeded initialisation."""

    def __init__(self, args, data):
        self.args, self.data = args, data
        self.widths = [int(w) for w in args.widths.split(",")]
        self.steps_per_epoch = len(data.train)

    def model(self) -> nn.Module:
        seed_everything(self.args.seed)
        return create("airbench", num_classes=len(self.data.classes), widths=self.widths)

    def learner(self, callbacks=(), run_dir=None) -> Learner:
        return Learner(self.model(), self.data, optimizer="sgd", lr=self.args.lr, weight_decay=self.args.weight_decay,
                       metrics=["accuracy"], callbacks=list(callbacks), device="cpu", run_dir=run_dir,
                       seed=self.args.seed, log_every=10_000)

    def swa_phases(self, budgets: float) -> list:
        """The paper's SWA schedule for ``budgets`` x B epochs: its SGD shape to the SWA rate by 0.75B, then SWA."""
        budget, args = self.args.budget, self.args
        start = 0.75 * budget
        return [*flat_linear(start, args.lr, final_ratio=args.swa_lr / args.lr, momentum=0.9),
                *swa_phase(budgets * budget - start, lr=args.swa_lr, momentum=0.9)]


def evaluate(model: nn.Module, data) -> dict[str, float]:
    metrics = Learner(model, data, metrics=["accuracy"], device="cpu").validate()
    return {"accuracy": metrics["valid/accuracy"], "loss": metrics["valid/loss"]}


def run_sgd(setup: Setup) -> dict:
    learner, start = setup.learner(), time.perf_counter()
    learner.fit(flat_linear(setup.args.budget, setup.args.lr, final_ratio=0.01, momentum=0.9))
    return {"epochs": setup.args.budget, "wall_s": round(time.perf_counter() - start, 1), **evaluate(learner.model,
                                                                                                    setup.data)}


def run_swa(setup: Setup, budgets: float) -> dict:
    swa = SWA(start="swa", lr=setup.args.swa_lr)
    learner, start = setup.learner([swa]), time.perf_counter()
    learner.fit(setup.swa_phases(budgets))
    last = learner.history[-1]
    return {"epochs": budgets * setup.args.budget, "wall_s": round(time.perf_counter() - start, 1),
            **evaluate(learner.model, setup.data), "averaged": swa.averaged.n_averaged,
            "sgd_at_end": {"accuracy": last["valid/accuracy"], "loss": last["valid/loss"]},
            "weights": {k: v.clone() for k, v in learner.model.state_dict().items()}}


def run_torch_swa(setup: Setup, budgets: float) -> dict:
    """A plain PyTorch loop: the same batches, optimizer and per-step rates; torch's AveragedModel and update_bn."""
    args, data = setup.args, setup.data
    phases = setup.swa_phases(budgets)
    schedule = PhaseSchedule(phases, setup.steps_per_epoch, default_lr=args.lr)
    model = setup.model()
    optimizer = build_optimizer("sgd", param_groups(model, weight_decay=args.weight_decay, lr=args.lr))
    swa_start = schedule.boundaries[[p.name for p in phases].index("swa")]
    averaged, loss_fn, step, start = None, nn.CrossEntropyLoss(), 0, time.perf_counter()
    for epoch in range(round(budgets * args.budget)):
        model.train()
        for images, targets in data.train.iter_epoch(epoch):
            loss = loss_fn(model(images), targets)
            loss.backward()
            schedule.apply(optimizer, step)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
        if step > swa_start:
            averaged = averaged or AveragedModel(model)
            averaged.update_parameters(model)
    update_bn(data.train, averaged)
    return {"epochs": budgets * args.budget, "wall_s": round(time.perf_counter() - start, 1),
            **evaluate(averaged.module, data), "averaged": int(averaged.n_averaged),
            "weights": {k: v.clone() for k, v in averaged.module.state_dict().items()}}


def run_snapshots(setup: Setup, run_dir: Path) -> dict:
    args = setup.args
    snapshots = SnapshotEnsemble()
    learner, start = setup.learner([snapshots], run_dir=run_dir), time.perf_counter()
    learner.fit(sgdr(args.lr, cycle_len=args.budget / 3, n_cycles=3, warmup=0, momentum=0.9))
    members = []
    for record in snapshots.snapshots:
        member = setup.model()
        member.load_state_dict(load_checkpoint(run_dir / record["path"])["model"])
        members.append(member.eval())
    ensemble = evaluate(Ensemble(members), setup.data)
    return {"epochs": args.budget, "wall_s": round(time.perf_counter() - start, 1), **ensemble,
            "members": [evaluate(m, setup.data) for m in members]}


def max_difference(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    return max(float((a[k].double() - b[k].double()).abs().max()) for k in a if a[k].is_floating_point())


def main(argv=None) -> dict:
    args = parse(argv)
    if not args.archive.exists():
        sys.exit(f"archive not found: {args.archive}")
    if args.budget % 12:
        sys.exit(f"--budget {args.budget}: use a multiple of 12 (0.75B, 1.25B and B/3 are whole epochs)")
    torch.set_num_threads(args.threads)
    wanted = set(args.runs.split(","))
    began = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="swa-cifar-") as tmp:
        root = extract_subset(args.archive, Path(tmp) / "images", args.train + args.valid)
        data = image_folder_loaders(root, valid_pct=args.valid / (args.train + args.valid), seed=args.seed,
                                    batch_size=args.batch_size, augment=AUGMENT, loader="cpu", progress=False)
        setup = Setup(args, data)
        runs: dict[str, dict] = {}
        if "sgd" in wanted:
            runs["sgd_1.0B"] = run_sgd(setup)
        if "swa" in wanted:
            for budgets in (float(b) for b in args.swa_budgets.split(",")):
                runs[f"swa_{budgets}B"] = run_swa(setup, budgets)
        torch_key = f"torch_swa_{args.torch_budget}B"
        if "torch" in wanted:
            runs[torch_key] = run_torch_swa(setup, args.torch_budget)
        if "snapshots" in wanted:
            runs["snapshot_ensemble_1.0B"] = run_snapshots(setup, Path(tmp) / "snapshots")
        result = {
            "benchmark": "swa_cifar",
            "images": {"train": int(data.info.get("train_size") or len(data.train) * args.batch_size),
                       "held_out": int(data.info.get("valid_size") or 0)},
            "budget_epochs": args.budget, "steps_per_epoch": setup.steps_per_epoch, "model": f"airbench{setup.widths}",
            "lr": args.lr, "swa_lr": args.swa_lr, "seed": args.seed, "threads": args.threads,
        }
        if f"swa_{args.torch_budget}B" in runs and torch_key in runs:  # parameters and recalibrated BatchNorm
            result["max_abs_weight_difference_epochal_vs_torch"] = max_difference(
                runs[f"swa_{args.torch_budget}B"]["weights"], runs[torch_key]["weights"])
        for run in runs.values():
            run.pop("weights", None)
        result["runs"] = runs
        result["wall_s"] = round(time.perf_counter() - began, 1)
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
