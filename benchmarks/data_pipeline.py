"""Data pipeline throughput: packing, each epochal loader, and a plain Pillow + DataLoader baseline.

Runs on the shared CIFAR-10 JPEG training images. The baseline decodes every JPEG with Pillow in
``torch.utils.data.DataLoader`` workers and applies the same augmentation per image (random flip,
reflect-padded translation by up to 2 pixels, normalisation); the epochal loaders serve the packed
uint8 cache with batched augmentation. With ``--device cuda`` it also measures the GPU-resident
loader with an inception-style random-resized crop to 224 px (images packed at 256 px).

Prints one JSON object as the last line of stdout. Example::

    python benchmarks/data_pipeline.py --limit 10000
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from epochal.data import ImageLoader, Normalize, image_folder_items, pack_image_cache

ROOT = Path(__file__).resolve().parents[1]
ARCHIVE = ROOT.parent / "shared" / "data" / "cifar10-jpeg-train.tar.gz"
MEAN, STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)


def extract_subset(archive: Path, out: Path, limit: int) -> Path:
    """Extract a class-balanced subset of ``limit`` images (the first files of each class)."""
    per_class = max(1, limit // 10)
    counts: dict[str, int] = {}
    with tarfile.open(archive) as tar:
        members = []
        for member in tar:
            parts = member.name.split("/")
            wanted = member.isfile() and len(parts) == 4 and parts[-1].endswith(".jpg")
            if wanted and counts.get(parts[2], 0) < per_class:
                counts[parts[2]] = counts.get(parts[2], 0) + 1
                members.append(member)
        tar.extractall(out, members=members, filter="data")
    return out / "cifar10" / "train"


class PlainDataset(torch.utils.data.Dataset):
    """The baseline: decode with Pillow and augment one image at a time."""

    def __init__(self, paths, targets):
        self.paths, self.targets = paths, targets
        self.mean = torch.tensor(MEAN).view(3, 1, 1)
        self.std = torch.tensor(STD).view(3, 1, 1)

    def __len__(self):
        return len(self.paths)

    def __getitem__(self, index):
        with Image.open(self.paths[index]) as image:
            pixels = np.asarray(image.convert("RGB"))
        x = torch.from_numpy(pixels.copy()).permute(2, 0, 1).float().div_(255)
        if torch.rand(()) < 0.5:
            x = x.flip(2)
        dy, dx = torch.randint(0, 5, (2,)).tolist()
        x = F.pad(x[None], (2, 2, 2, 2), mode="reflect")[0, :, dy : dy + 32, dx : dx + 32]
        return (x - self.mean) / self.std, int(self.targets[index])


def time_epochs(batches_of_epoch, epochs: int, device: torch.device) -> float:
    """Images per second over ``epochs`` epochs after one warm-up epoch."""
    for _ in batches_of_epoch(0):
        pass
    start, seen = time.perf_counter(), 0
    last = None
    for epoch in range(1, epochs + 1):
        for x, _ in batches_of_epoch(epoch):
            seen += len(x)
            last = x
    if device.type == "cuda" and last is not None:
        torch.cuda.synchronize(device)
    return seen / (time.perf_counter() - start)


def bench_plain(items, batch_size: int, workers: int, epochs: int) -> float:
    loader = torch.utils.data.DataLoader(
        PlainDataset(items.paths, items.targets),
        batch_size=batch_size,
        shuffle=True,
        num_workers=workers,
        persistent_workers=workers > 0,
    )
    return time_epochs(lambda epoch: loader, epochs, torch.device("cpu"))


def bench_loader(
    packed, residency: str, device: torch.device, batch_size: int, epochs: int, augment
) -> float:
    loader = ImageLoader(
        packed,
        packed.targets,
        batch_size=batch_size,
        augment=augment,
        normalize=Normalize(MEAN, STD),
        device=device,
        residency=residency,
        seed=0,
    )
    return time_epochs(loader.iter_epoch, epochs, device)


def bench_gpu_inception(
    items, cache: Path, device: torch.device, batch_size: int, epochs: int, workers: int, limit: int
) -> float:
    """GPU-resident cache at 256 px, inception crop to 224 px plus flip, normalised on the device."""
    items = items.select(np.linspace(0, len(items) - 1, min(limit, len(items))).astype(int))
    packed = pack_image_cache(items, cache / "inception-256", size=256, workers=workers, progress=False)
    return bench_loader(packed, "device", device, batch_size, epochs, ["random_resized_crop(224)", "flip"])


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--archive", type=Path, default=ARCHIVE)
    parser.add_argument("--limit", type=int, default=10_000, help="images used (class-balanced)")
    parser.add_argument("--batch-size", type=int, default=512)
    parser.add_argument("--epochs", type=int, default=2, help="timed epochs after one warm-up epoch")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="packing processes")
    parser.add_argument("--baseline-workers", type=int, default=min(4, os.cpu_count() or 1))
    parser.add_argument("--inception-limit", type=int, default=5_000, help="images for the GPU crop test")
    parser.add_argument(
        "--gpu-only", action="store_true", help="measure only the GPU loaders (skip the CPU ones and the baseline)"
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch intra-op threads of the main process (default: torch's choice)",
    )
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if not args.archive.exists():
        sys.exit(f"archive not found: {args.archive}")
    with tempfile.TemporaryDirectory(prefix="epochal-bench-") as tmp:
        root = extract_subset(args.archive, Path(tmp) / "images", args.limit)
        items = image_folder_items(root)
        start = time.perf_counter()
        packed = pack_image_cache(items, Path(tmp) / "cache", workers=args.workers, progress=False)
        pack_rate = len(items) / (time.perf_counter() - start)
        augment = ["flip", "translate(2)"]
        loaders = {}
        if not args.gpu_only:
            loaders["cpu"] = bench_loader(packed, "device", torch.device("cpu"), args.batch_size, args.epochs, augment)
            loaders["stream"] = bench_loader(packed, "stream", device, args.batch_size, args.epochs, augment)
        if device.type == "cuda":
            loaders["gpu"] = bench_loader(packed, "device", device, args.batch_size, args.epochs, augment)
        plain = None if args.gpu_only else bench_plain(items, args.batch_size, args.baseline_workers, args.epochs)
        inception = "not measured (needs --device cuda)"
        if device.type == "cuda":
            inception = round(
                bench_gpu_inception(
                    items, Path(tmp), device, 256, args.epochs, args.workers, args.inception_limit
                )
            )
    result = {
        "benchmark": "data_pipeline",
        "images": len(items),
        "batch_size": args.batch_size,
        "epochs": args.epochs,
        "machine": {
            "cpu_count": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "platform": platform.platform(),
            "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        },
        "pack_img_per_s": round(pack_rate),
        "pack_workers": args.workers,
        "loader_img_per_s": {k: round(v) for k, v in loaders.items()},
        "plain_pillow_dataloader_img_per_s": round(plain) if plain else "not measured (--gpu-only)",
        "plain_workers": args.baseline_workers,
        "speedup_vs_plain": {k: round(v / plain, 1) for k, v in loaders.items()} if plain else {},
        "gpu_inception_crop_224_img_per_s": inception,
        "targets": {"speedup_vs_plain": 10, "gpu_inception_crop_224_img_per_s": 20_000},
    }
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
