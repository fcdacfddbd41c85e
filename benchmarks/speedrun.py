"""CIFAR-10 speed run: the ``cifar10-speedrun`` recipe (airbench94_muon) run by the Learner, N times,
against a plain PyTorch loop that trains the same network with the same schedule in the same run.

The images are decoded and made resident once (on the GPU when it is the device); each run then
builds a fresh model (whitening initialised from 5000 training images), trains it and evaluates it
on the held-out images with test-time augmentation. As in airbench, which resets its one compiled
model in place, each loop keeps one model object and copies each run's fresh weights into it
(:class:`ModelSlot`; ``--fresh-models`` trains the new object instead, with the same numbers).
Each run reports two times (CUDA events on a GPU, wall time on the CPU): ``seconds``, the whole run
from building the model to the TTA evaluation's last batch, and ``airbench_s``, the spans
airbench94_muon's own timer covers, the accounting of its 1.69 s: the whitening, each epoch's
training, the TTA evaluation (the host's work between them left out; building the model and
optimizer, outside airbench's timer, stays in the whitening's span here). One warm-up run per loop
(``--warmup-epochs``) comes first and is reported apart, so ``torch.compile`` and kernel selection
stay out of the timed runs; Learner and plain runs alternate, so load on the machine hits both
alike.

The plain loop is written here without epochal's Learner, loaders, augmentations, schedules,
parameter groups or TTA: airbench-style whole-epoch flip and crop on a resident float tensor, a
hand-written linear decay and hand-made parameter groups; it shares only the network
(:class:`~epochal.models.AirbenchNet`) and the optimizer (:class:`~epochal.optim.Muon`).

What the accuracy is measured on (``"evaluated_on"`` in the JSON):

* ``held_out`` (default): ``--valid`` of the ``--images`` training images are held out, the rest train;
* ``test``: ``--test`` names a labelled image folder (or a ``.tar``/``.tar.gz`` of one), such as the
  official 10,000 test images; every one of the ``--images`` trains, as in airbench's protocol;
* ``training_images``: ``--valid 0`` without ``--test`` trains on every image and evaluates on
  ``--eval-images`` of them (10,000, the official test split's size, so the timed evaluation is
  airbench's work): the times count, the accuracies are not held-out figures.

Prints one JSON object after every finished run (Learner or plain loop: the figures of all the
runs done so far), the last one complete (``"complete": true``), so a time limit that stops it
early still leaves the runs done. Examples::

    python benchmarks/speedrun.py --runs 2                           # CPU: 45,000 images, 5,000 held out
    python benchmarks/speedrun.py --archive .device/cifar10-jpeg-train.tar.gz --device cuda --runs 3
    python benchmarks/speedrun.py --device cuda --valid 0 --runs 5   # all 50,000 train: the GPU time target
    python benchmarks/speedrun.py --test cifar10/test --valid 0      # airbench's protocol, official test images
    python benchmarks/speedrun.py --images 400 --valid 100 --epochs 1 --runs 1 --no-plain   # smoke test
    python benchmarks/speedrun.py ... --set trainer.compile=eager    # any recipe key, as `epochal train --set`
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from data_pipeline import ARCHIVE, extract_subset  # noqa: E402

import epochal  # noqa: E402
from epochal.callbacks.base import Callback  # noqa: E402
from epochal.config import load_config  # noqa: E402
from epochal.config.builders import build_data  # noqa: E402
from epochal.config.experiment import build_learner, resolve_auto  # noqa: E402
from epochal.data import IMAGE_EXTENSIONS, DataLoaders, predict_tta  # noqa: E402
from epochal.learner.host_memory import retain_freed_memory  # noqa: E402
from epochal.models import AirbenchNet  # noqa: E402
from epochal.optim import Muon  # noqa: E402
from epochal.runs.folder import cpu_info  # noqa: E402
from epochal.utils import compile_options  # noqa: E402

RECIPE = "cifar10-speedrun"
#: airbench94_muon's numbers as the plain loop uses them (a test checks they are the recipe's).
PLAIN = {
    "batch_size": 2000, "widths": (64, 256, 256), "scale": 1 / 256, "head_std": 1.0, "whiten_images": 5000,
    "label_smoothing": 0.2, "filter_lr": 0.24, "filter_momentum": 0.6, "ns_steps": 3,
    "bias_lr": 106.0, "head_lr": 1340.0, "sgd_momentum": 0.85, "bias_wd": 2.5157e-4, "head_wd": 1.9900e-5,
    "whiten_bias_epochs": 3, "translate": 2, "tta_translate": 1,
}
#: gpu_median_s is airbench's median in its own accounting: compare median_airbench_s with it.
TARGETS = {"learner_over_plain": 1.05, "gpu_median_s": 1.69, "tta_accuracy": round(0.9069 - 0.0013, 4),
           "cpu_epoch_s_at_50000_images": 215}


class Timer:
    """Seconds of device work between ``start`` and ``stop`` (CUDA events, else wall time), summed."""

    def __init__(self, device: torch.device):
        self.cuda = device.type == "cuda"
        self.spans: list = []

    def start(self) -> None:
        if self.cuda:
            event = torch.cuda.Event(enable_timing=True)
            event.record()
            self._begin = event
        else:
            self._begin = time.perf_counter()

    def stop(self) -> None:
        if self.cuda:
            event = torch.cuda.Event(enable_timing=True)
            event.record()
            self.spans.append((self._begin, event))
        else:
            self.spans.append(time.perf_counter() - self._begin)

    def seconds(self) -> list[float]:
        """Each span's seconds (synchronises once, at the end)."""
        if self.cuda:
            torch.cuda.synchronize()
            return [begin.elapsed_time(end) / 1000 for begin, end in self.spans]
        return list(self.spans)


class ModelSlot:
    """One model object per loop for all its runs, reset in place from each run's freshly built one
    (airbench's ``model.reset()`` on the one compiled model): the parameters keep their addresses,
    so CUDA graphs recorded in the warm-up replay instead of being recorded again in every timed run.
    Each run still starts from its own fresh initialisation and whitening (a test checks the numbers
    equal those of fresh models: ``--fresh-models``)."""

    def __init__(self, reuse: bool = True):
        self.reuse, self.model = reuse, None

    def take(self, fresh: torch.nn.Module) -> torch.nn.Module:
        if self.model is None or not self.reuse:
            self.model = fresh
            return fresh
        self.model.load_state_dict(fresh.state_dict())  # copies into the kept tensors
        for kept, new in zip(self.model.parameters(), fresh.parameters(), strict=True):
            kept.requires_grad_(new.requires_grad)
        return self.model


class EpochTimer(Callback):
    """Times each epoch's training pass (no host sync: CUDA events are read after the run)."""

    def __init__(self, timer: Timer):
        self.timer = timer

    def before_train(self) -> None:
        self.timer.start()

    def after_train(self) -> None:
        self.timer.stop()


# ------------------------------------------------------------------------------------- the Learner
def learner_run(config, data: DataLoaders, device: torch.device, seed: int, slot: ModelSlot) -> dict:
    """One run of the recipe through epochal: build (whitening included), fit, TTA-evaluate."""
    config = config.model_copy(update={"seed": seed})
    train = data.train.with_rows(data.train.rows, seed=seed)
    epochs, total, spans = Timer(device), Timer(device), Timer(device)
    total.start()
    spans.start()
    loaders = DataLoaders(train, None, data.classes, data.info)
    learner, phases = build_learner(config, device=str(device), progress=False, data=loaders)
    learner.model = slot.take(learner.model)  # the optimizer is built from it when the fit starts
    spans.stop()
    learner.add_callback(EpochTimer(epochs))
    learner.fit(phases)
    model = learner.model_call
    learner.model.eval()

    def tta(images):
        with learner.autocast():
            return predict_tta(_channels_last(model), images, flip=True, translate=PLAIN["tta_translate"],
                               translate_weight=0.5)

    spans.start()
    logits, labels = _evaluate(tta, data.valid)
    spans.stop()
    total.stop()
    plain_logits, _ = _evaluate(lambda x: _channels_last(model)(x), data.valid, learner.autocast)
    return _record(total, epochs, spans, logits, plain_logits, labels)


def _channels_last(model):
    return lambda x: model(x.contiguous(memory_format=torch.channels_last))


@torch.no_grad()
def _evaluate(predict, loader, context=None) -> tuple[torch.Tensor, torch.Tensor]:
    outputs, labels = [], []
    for images, targets in loader.iter_epoch(0):
        with context() if context else contextlib.nullcontext():
            outputs.append(predict(images).to(torch.float32, copy=True))  # a CUDA graph reuses its output
        labels.append(targets)
    return torch.cat(outputs), torch.cat(labels)


def _record(total: Timer, epochs: Timer, spans: Timer, logits, plain_logits, labels) -> dict:
    """A run's figures; ``spans`` times the set-up (with the whitening) and the TTA evaluation."""
    epoch_s = epochs.seconds()
    return {
        "seconds": total.seconds()[0],
        "airbench_s": sum(spans.seconds()) + sum(epoch_s),
        "epoch_s": epoch_s,
        "tta_accuracy": float((logits.argmax(1) == labels).float().mean()),
        "accuracy": float((plain_logits.argmax(1) == labels).float().mean()),
    }


# ------------------------------------------------------------------------------------- the plain loop
def plain_run(tensors: dict, device: torch.device, seed: int, epochs: int, precision: str, compile_model,
              compile_mode: str | None = None, slot: ModelSlot | None = None) -> dict:
    """The same algorithm as a hand-written PyTorch loop (see the module docstring)."""
    torch.manual_seed(seed)
    images, labels = tensors["train_images"], tensors["train_labels"]
    n, batch = len(images), PLAIN["batch_size"]
    steps_per_epoch = max(n // batch, 1)
    total_steps = epochs * steps_per_epoch
    autocast = torch.autocast(device.type, torch.bfloat16) if precision == "bf16" else contextlib.nullcontext()
    epoch_timer, total, spans = Timer(device), Timer(device), Timer(device)
    total.start()
    spans.start()
    model = AirbenchNet(widths=PLAIN["widths"], scale=PLAIN["scale"], head_std=PLAIN["head_std"])
    model = model.to(device, memory_format=torch.channels_last)
    pick = torch.randperm(n, device=device)[: PLAIN["whiten_images"]]
    model.init_whitening(images[pick])
    if slot is not None:
        model = slot.take(model)
    optimizer = Muon(_plain_groups(model), nesterov=True, ns_steps=PLAIN["ns_steps"], normalize_weights=True)
    lr0 = [group["lr"] for group in optimizer.param_groups]
    whiten_horizon = PLAIN["whiten_bias_epochs"] * steps_per_epoch
    horizons = [total_steps if g["name"] != "whiten_bias" else whiten_horizon for g in optimizer.param_groups]
    options = compile_options(compile_model, compile_mode)  # as the Learner's compile= and compile_mode=
    call = torch.compile(model, **options) if options else model
    spans.stop()
    flip_bits = torch.rand(n, device=device) < 0.5
    padded = F.pad(images, (PLAIN["translate"],) * 4, mode="reflect")
    step = 0
    for epoch in range(epochs):
        epoch_timer.start()
        model.train()
        epoch_images = _flip_and_crop(padded, flip_bits ^ bool(epoch % 2), PLAIN["translate"])
        order = torch.randperm(n, device=device)
        for i in range(steps_per_epoch):
            if step == whiten_horizon:  # airbench stops the whitening bias's gradient once its rate is 0
                model.stem.whiten.bias.requires_grad_(False)
            index = order[i * batch : (i + 1) * batch]
            with autocast:
                loss = F.cross_entropy(call(epoch_images[index]), labels[index],
                                       label_smoothing=PLAIN["label_smoothing"])
            loss.backward()
            for group, peak, horizon in zip(optimizer.param_groups, lr0, horizons, strict=True):
                group["lr"] = peak * max(0.0, 1 - step / horizon)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
        epoch_timer.stop()
    model.eval()
    spans.start()
    logits, targets = _plain_tta(call, tensors["valid_images"], tensors["valid_labels"], autocast)
    spans.stop()
    total.stop()
    with torch.no_grad(), autocast:
        plain_logits = torch.cat([call(x).to(torch.float32, copy=True) for x in tensors["valid_images"].split(batch)])
    return _record(total, epoch_timer, spans, logits, plain_logits, targets)


def _plain_groups(model: AirbenchNet) -> list[dict]:
    named = dict(model.named_parameters())
    sgd = {"muon": False, "momentum": PLAIN["sgd_momentum"]}
    return [
        {"name": "filters", "params": [p for p in named.values() if p.ndim == 4 and p.requires_grad],
         "lr": PLAIN["filter_lr"], "momentum": PLAIN["filter_momentum"], "muon": True},
        {"name": "whiten_bias", "params": [model.stem.whiten.bias], "lr": PLAIN["bias_lr"],
         "weight_decay": PLAIN["bias_wd"], **sgd},
        {"name": "norm_biases", "params": [p for k, p in named.items() if "norm" in k and k.endswith("bias")],
         "lr": PLAIN["bias_lr"], "weight_decay": PLAIN["bias_wd"], **sgd},
        {"name": "head", "params": [model.head.fc.weight], "lr": PLAIN["head_lr"], "weight_decay": PLAIN["head_wd"],
         **sgd},
    ]


def _flip_and_crop(padded: torch.Tensor, flip: torch.Tensor, pad: int) -> torch.Tensor:
    """Every image flipped where ``flip`` and cut at a random shift in [-pad, pad] per axis."""
    n, size = len(padded), padded.shape[-1] - 2 * pad
    dy = torch.randint(0, 2 * pad + 1, (n,), device=padded.device)
    dx = torch.randint(0, 2 * pad + 1, (n,), device=padded.device)
    rows = torch.empty(n, padded.shape[1], size, padded.shape[-1], device=padded.device, dtype=padded.dtype)
    for shift in range(2 * pad + 1):
        chosen = dy == shift
        rows[chosen] = padded[chosen, :, shift : shift + size]
    out = torch.empty(n, padded.shape[1], size, size, device=padded.device, dtype=padded.dtype)
    for shift in range(2 * pad + 1):
        chosen = dx == shift
        out[chosen] = rows[chosen, :, :, shift : shift + size]
    out = torch.where(flip[:, None, None, None], out.flip(-1), out)
    return out.contiguous(memory_format=torch.channels_last)


@torch.no_grad()
def _plain_tta(call, images, labels, autocast) -> tuple[torch.Tensor, torch.Tensor]:
    """airbench's TTA: the image and its mirror 1/4 each, both shifted one pixel either way 1/8 each."""
    out = []
    for x in images.split(PLAIN["batch_size"]):
        p = PLAIN["tta_translate"]
        padded = F.pad(x, (p,) * 4, mode="reflect")
        views = [x, padded[:, :, : -2 * p, : -2 * p], padded[:, :, 2 * p :, 2 * p :]]
        mirrored = []
        with autocast:
            for v in views:  # each output used before the next call: a CUDA graph reuses its output
                both = 0.5 * call(v.contiguous(memory_format=torch.channels_last)).float()
                mirrored.append(both + 0.5 * call(v.flip(-1).contiguous(memory_format=torch.channels_last)).float())
        out.append(0.5 * mirrored[0] + 0.25 * (mirrored[1] + mirrored[2]))
    return torch.cat(out), labels


def plain_tensors(data: DataLoaders) -> dict:
    """The normalised images and labels as resident tensors (the plain loop's whole data pipeline)."""
    train, valid = data.train, data.valid
    return {
        "train_images": train.sample_images(len(train.rows)), "train_labels": train.targets,
        "valid_images": valid.sample_images(len(valid.rows)), "valid_labels": valid.targets,
    }


# ------------------------------------------------------------------------------------- evaluation images
def class_root(folder: Path) -> Path:
    """The folder whose sub-folders are the classes: ``folder`` itself, or the one below it that a
    chain of single sub-folders leads to (``cifar10/test/<class>/...`` in an archive)."""
    while True:
        subdirs = [d for d in folder.iterdir() if d.is_dir()]
        has_images = any(f.suffix.lower() in IMAGE_EXTENSIONS for f in folder.iterdir() if f.is_file())
        if len(subdirs) != 1 or has_images:
            break
        folder = subdirs[0]
    if not any(f.suffix.lower() in IMAGE_EXTENSIONS for d in subdirs for f in d.iterdir()):
        raise SystemExit(f"--test: no class folders of images found in {folder}")
    return folder


def test_root(path: Path, work: Path) -> Path:
    """The labelled image folder of ``--test``: a folder, or a tar archive of one (extracted into ``work``)."""
    if not path.exists():
        raise SystemExit(f"--test: not found: {path}")
    if path.is_dir():
        return class_root(path)
    if not tarfile.is_tarfile(path):
        raise SystemExit(f"--test {path}: neither a folder nor a tar archive of a labelled image folder")
    with tarfile.open(path) as tar:
        tar.extractall(work, filter="data")
    return class_root(work)


# ------------------------------------------------------------------------------------- driver
def _summary(runs: list[dict], warmup: dict) -> dict:
    def stats(key):
        values = [r[key] for r in runs]
        return {"values": [round(v, 4) for v in values], "mean": round(statistics.fmean(values), 4),
                "std": round(statistics.stdev(values), 4) if len(values) > 1 else 0.0}

    seconds, airbench_s = [r["seconds"] for r in runs], [r["airbench_s"] for r in runs]
    epoch_s = [s for r in runs for s in r["epoch_s"]]
    return {"tta_accuracy": stats("tta_accuracy"), "accuracy": stats("accuracy"),
            "seconds": [round(s, 3) for s in seconds], "median_s": round(statistics.median(seconds), 3),
            # airbench94_muon's accounting (the module docstring): what its 1.69 s median counts
            "airbench_s": [round(s, 3) for s in airbench_s],
            "median_airbench_s": round(statistics.median(airbench_s), 3),
            "median_epoch_s": round(statistics.median(epoch_s), 3),
            # every epoch of every run: one slowed by another job on a shared machine shows here
            "epoch_s": [[round(s, 3) for s in r["epoch_s"]] for r in runs],
            "warmup_s": round(warmup["seconds"], 3) if warmup is not None else None}


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--archive", type=Path, default=ARCHIVE, help="the CIFAR-10 JPEG training archive")
    parser.add_argument("--images", type=int, default=50_000, help="images used, class-balanced")
    parser.add_argument("--valid", type=int, default=5_000,
                        help="of those, held out for the accuracy (0: all train; see --test, --eval-images)")
    parser.add_argument("--test", type=Path, default=None,
                        help="a labelled image folder (or a tar of one) to evaluate on; then all --images train")
    parser.add_argument("--eval-images", type=int, default=10_000,
                        help="with --valid 0 and no --test: training images evaluated (timing only)")
    parser.add_argument("--epochs", type=int, default=None, help="default: the recipe's (8)")
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--first-seed", type=int, default=0, help="the runs' seeds are first-seed, first-seed + 1, ...")
    parser.add_argument("--warmup-epochs", type=int, default=1, help="epochs of the untimed warm-up runs (0: none)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch-size", type=int, default=PLAIN["batch_size"])
    parser.add_argument("--no-plain", action="store_true", help="skip the plain loop")
    parser.add_argument("--fresh-models", action="store_true",
                        help="a new model object every run (default: one per loop, reset in place, as airbench)")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="a recipe override, as `epochal train --set` (repeatable)")
    return parser.parse_args(argv)


def main(argv=None) -> dict:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if not args.archive.exists():
        sys.exit(f"archive not found: {args.archive}")
    if args.test is None and not 0 <= args.valid < args.images:
        sys.exit(f"--valid {args.valid} must be in [0, --images {args.images})")
    if args.test is None and args.valid == 0 and not 0 < args.eval_images <= args.images:
        sys.exit(f"--eval-images {args.eval_images} must be in (0, --images {args.images}]")
    if args.runs < 1:
        sys.exit(f"--runs {args.runs} must be >= 1")
    if not 0 <= args.first_seed < 10_000:
        sys.exit(f"--first-seed {args.first_seed} must be in [0, 10000) (seed 10000 is the warm-up's)")
    device = torch.device(args.device)
    PLAIN["batch_size"] = args.batch_size
    # the Learner keeps freed host memory on the CPU (process-wide): both loops run with it from the start
    retained = device.type == "cpu" and retain_freed_memory()
    load, start = os.getloadavg(), time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="epochal-speedrun-") as tmp:
        root = extract_subset(args.archive, Path(tmp) / "images", args.images)
        overrides = [f"data.path={root}", f"data.batch_size={args.batch_size}", "callbacks.progress_bar=null",
                     f"trainer.device={device}"]
        if args.test is not None:
            evaluated_on, evaluation = "test", test_root(args.test, Path(tmp) / "test")
        elif args.valid == 0:
            # the first images of each class again, as the training set's own: timing only, no held-out figure
            evaluated_on, evaluation = "training_images", extract_subset(args.archive, Path(tmp) / "eval",
                                                                         args.eval_images)
        else:
            evaluated_on, evaluation = "held_out", None
            overrides.append(f"data.valid_pct={args.valid / args.images}")
        if evaluation is not None:  # every image trains; valid_pct is unused beside a valid_root
            overrides.append(f"data.options.valid_root={evaluation}")
        if args.epochs:
            overrides.append(f"epochs={args.epochs}")
        config = load_config(RECIPE, overrides + args.overrides)
        data = build_data(config, device)
        tensors = None if args.no_plain else plain_tensors(data)
        setting = {
            "benchmark": "speedrun", "recipe": RECIPE,
            "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
            "torch": torch.__version__, "cpu": cpu_info(), "epochal": epochal.__version__,
            "threads": torch.get_num_threads(),
            "load_average_before": [round(v, 2) for v in load], "train_images": len(data.train.rows),
            "valid_images": len(data.valid.rows), "evaluated_on": evaluated_on,
            "test": str(args.test) if args.test is not None else None, "overrides": args.overrides,
            "epochs": config.epochs, "steps_per_epoch": len(data.train),
            "runs": args.runs, "seeds": list(range(args.first_seed, args.first_seed + args.runs)),
            "precision": resolve_auto(config.trainer.precision, str(device), "bf16", "fp32"),
            "compile": resolve_auto(config.trainer.compile, str(device), True, False),
            "compile_mode": config.trainer.compile_mode, "fresh_models": args.fresh_models,
            "prepare_s": round(time.perf_counter() - start, 1), "host_memory_retained": retained,
        }
        slots = {"learner": ModelSlot(not args.fresh_models), "plain": ModelSlot(not args.fresh_models)}
        loops = {"learner": lambda seed, epochs: learner_run(config.model_copy(update={"epochs": epochs}), data,
                                                               device, seed, slots["learner"])}
        if tensors is not None:
            loops["plain"] = lambda seed, epochs: plain_run(tensors, device, seed, epochs, setting["precision"],
                                                            setting["compile"], config.trainer.compile_mode,
                                                            slots["plain"])
        # --warmup-epochs 0 skips the warm-up (on the CPU, without compile, there is little to warm)
        warm = {name: run(10_000, args.warmup_epochs) if args.warmup_epochs else None for name, run in loops.items()}
        results: dict[str, list] = {name: [] for name in loops}
        for seed in setting["seeds"]:
            for k, (name, run) in enumerate(loops.items()):
                results[name].append(run(seed, config.epochs))
                # a line per finished run: a limit that cuts the benchmark short still leaves figures
                last = seed == setting["seeds"][-1] and k == len(loops) - 1
                result = _report(setting, results, warm, complete=last)
                print(json.dumps(result), flush=True)
    return result


def _report(setting: dict, results: dict, warm: dict, complete: bool) -> dict:
    result = {**setting, "complete": complete, "load_average_after": [round(v, 2) for v in os.getloadavg()]}
    for name, runs in results.items():
        if runs:
            result[name] = _summary(runs, warm[name])
    if results.get("plain") and results.get("learner"):
        result["learner_over_plain"] = round(result["learner"]["median_s"] / result["plain"]["median_s"], 4)
        result["learner_over_plain_airbench"] = round(
            result["learner"]["median_airbench_s"] / result["plain"]["median_airbench_s"], 4)
        result["learner_over_plain_epoch"] = round(
            result["learner"]["median_epoch_s"] / result["plain"]["median_epoch_s"], 4)
    result["targets"] = TARGETS
    return result


if __name__ == "__main__":
    main()
