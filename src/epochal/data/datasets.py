"""The data set registry: named data sets prepared once into image folders in a cache directory.

``get_dataset(name, split=...)`` returns a ``<class>/<image>`` folder ready for
:func:`~epochal.data.images.image_folder_loaders`. Downloads are checksum-verified and resumable
and archives are extracted safely (:mod:`~epochal.data.download`); preparation writes into a
temporary folder renamed into place at the end, so a half-prepared data set is never used.

- CIFAR-10 / CIFAR-100: Krizhevsky, *Learning Multiple Layers of Features from Tiny Images*,
  2009 (the official python archives, written out as lossless PNG folders).
- Imagenette: Howard, <https://github.com/fastai/imagenette>, 10 easy ImageNet classes.
- ``cifar10-mini``: the bundled 2,000-image subset (no download).
"""

from __future__ import annotations

import os
import pickle
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import numpy as np
from PIL import Image

from epochal.data.download import download_file, safe_extract

__all__ = ["BUNDLED_DIR", "DATASETS", "DatasetSpec", "default_cache_dir", "get_dataset", "register_dataset"]

#: Where the bundled data sets live inside the package.
BUNDLED_DIR = Path(__file__).resolve().parent / "bundled"
_COMPLETE = ".epochal-complete"


def default_cache_dir() -> Path:
    """``~/.cache/epochal`` (pass ``cache_dir`` to use another place)."""
    return Path("~/.cache/epochal").expanduser()


@dataclass(frozen=True)
class DatasetSpec:
    """How to obtain one data set.

    Attributes:
        name: registry name.
        url: archive address (None for bundled data).
        checksum: ``'md5:<hex>'`` or ``'sha256:<hex>'`` of the archive.
        prepare: ``f(archive, out_dir)`` writing the split folders into ``out_dir``.
        splits: split name -> folder relative to the prepared data set.
        description: one line for listings.
        class_names: optional display names for folder names (e.g. WordNet ids).
        bundled: a folder inside the package instead of a download.
    """

    name: str
    url: str | None
    checksum: str | None
    prepare: Callable[[Path, Path], None] | None
    splits: dict[str, str]
    description: str = ""
    class_names: dict[str, str] = field(default_factory=dict)
    bundled: str | None = None


class _RestrictedUnpickler(pickle.Unpickler):
    """Unpickles only what the CIFAR archives hold: builtins containers and numpy arrays."""

    _ALLOWED: ClassVar[set[tuple[str, str]]] = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"),
        ("_codecs", "encode"),
    }

    def find_class(self, module, name):
        if (module, name) in self._ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a data set archive")


def _load_batch(path: Path) -> dict:
    with open(path, "rb") as handle:
        data = _RestrictedUnpickler(handle, encoding="bytes").load()
    return {k.decode() if isinstance(k, bytes) else k: v for k, v in data.items()}


def _write_pngs(images: np.ndarray, labels: list[int], names: list[str], out: Path) -> None:
    """Rows of 3072 bytes (CIFAR layout: R plane, G plane, B plane) -> ``out/<class>/<n>.png``."""
    for name in names:
        (out / name).mkdir(parents=True, exist_ok=True)
    pixels = images.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    for index, (image, label) in enumerate(zip(pixels, labels)):
        Image.fromarray(np.ascontiguousarray(image)).save(
            out / names[label] / f"{index:05d}.png", optimize=False
        )


def _names(meta: dict, key: str) -> list[str]:
    return [n.decode() if isinstance(n, bytes) else str(n) for n in meta[key]]


def _prepare_cifar10(archive: Path, out: Path) -> None:
    extracted = safe_extract(archive, out / "_extract")
    folder = extracted / "cifar-10-batches-py"
    names = _names(_load_batch(folder / "batches.meta"), "label_names")
    batches = [_load_batch(folder / f"data_batch_{i}") for i in range(1, 6)]
    labels = [label for batch in batches for label in batch["labels"]]
    _write_pngs(np.concatenate([b["data"] for b in batches]), labels, names, out / "train")
    test = _load_batch(folder / "test_batch")
    _write_pngs(np.asarray(test["data"]), list(test["labels"]), names, out / "test")
    shutil.rmtree(out / "_extract")


def _prepare_cifar100(archive: Path, out: Path) -> None:
    extracted = safe_extract(archive, out / "_extract")
    folder = extracted / "cifar-100-python"
    names = _names(_load_batch(folder / "meta"), "fine_label_names")
    for split in ("train", "test"):
        batch = _load_batch(folder / split)
        _write_pngs(np.asarray(batch["data"]), list(batch["fine_labels"]), names, out / split)
    shutil.rmtree(out / "_extract")


def _prepare_imagenette(top: str) -> Callable[[Path, Path], None]:
    def prepare(archive: Path, out: Path) -> None:
        extracted = safe_extract(archive, out / "_extract")
        for split in ("train", "val"):
            os.replace(extracted / top / split, out / split)
        shutil.rmtree(out / "_extract")

    return prepare


_IMAGENETTE_NAMES = {
    "n01440764": "tench",
    "n02102040": "English springer",
    "n02979186": "cassette player",
    "n03000684": "chain saw",
    "n03028079": "church",
    "n03394916": "French horn",
    "n03417042": "garbage truck",
    "n03425413": "gas pump",
    "n03445777": "golf ball",
    "n03888605": "parachute",
}

#: Registry name -> :class:`DatasetSpec`.
DATASETS: dict[str, DatasetSpec] = {}


def register_dataset(spec: DatasetSpec, overwrite: bool = False) -> DatasetSpec:
    """Add ``spec`` to :data:`DATASETS` (``overwrite`` to replace an entry)."""
    if spec.name in DATASETS and not overwrite:
        raise ValueError(f"a data set named {spec.name!r} is already registered (pass overwrite=True)")
    DATASETS[spec.name] = spec
    return spec


register_dataset(
    DatasetSpec(
        "cifar10-mini",
        None,
        None,
        None,
        {"train": "."},
        "bundled CIFAR-10 subset: 10 classes x 200 JPEG images",
        bundled="cifar10-mini",
    )
)
register_dataset(
    DatasetSpec(
        "cifar10",
        "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
        "md5:c58f30108f718f92721af3b95e74349a",
        _prepare_cifar10,
        {"train": "train", "test": "test"},
        "CIFAR-10: 50,000 + 10,000 32x32 images, 10 classes",
    )
)
register_dataset(
    DatasetSpec(
        "cifar100",
        "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",
        "md5:eb9058c3a382ffc7106e4002c42a8d85",
        _prepare_cifar100,
        {"train": "train", "test": "test"},
        "CIFAR-100: 50,000 + 10,000 32x32 images, 100 classes",
    )
)
for _size, _md5 in (("160", "e793b78cc4c9e9a4ccc0c1155377a412"), ("320", "3df6f0d01a2c9592104656642f5e78a3")):
    register_dataset(
        DatasetSpec(
            f"imagenette-{_size}",
            f"https://s3.amazonaws.com/fast-ai-imageclas/imagenette2-{_size}.tgz",
            f"md5:{_md5}",
            _prepare_imagenette(f"imagenette2-{_size}"),
            {"train": "train", "valid": "val"},
            f"Imagenette v2, shorter side {_size} px: 10 ImageNet classes",
            _IMAGENETTE_NAMES,
        )
    )
register_dataset(
    DatasetSpec(
        "imagenette",
        "https://s3.amazonaws.com/fast-ai-imageclas/imagenette2.tgz",
        "md5:fe2fc210e6bb7c5664d602c3cd71e612",
        _prepare_imagenette("imagenette2"),
        {"train": "train", "valid": "val"},
        "Imagenette v2, full size: 10 ImageNet classes",
        _IMAGENETTE_NAMES,
    )
)


def _spec(name: str) -> DatasetSpec:
    if name not in DATASETS:
        raise ValueError(f"unknown data set {name!r}; registered: {sorted(DATASETS)}")
    return DATASETS[name]


def get_dataset(
    name: str,
    split: str = "train",
    cache_dir: str | os.PathLike | None = None,
    download: bool = True,
    opener: Callable | None = None,
) -> Path:
    """The image folder of one split of a registered data set, downloading and preparing it once.

    Args:
        name: a key of :data:`DATASETS` (``cifar10-mini``, ``cifar10``, ``cifar100``,
            ``imagenette``, ``imagenette-160``, ``imagenette-320``).
        split: a key of the spec's ``splits`` (``train``; ``test`` for CIFAR; ``valid`` for Imagenette).
        cache_dir: where archives and prepared data live (default :func:`default_cache_dir`).
        download: fetch the archive when it is missing; False raises instead.
        opener: ``f(request, timeout=...)`` used for the download (tests pass a fake).

    Returns:
        The split's folder, laid out as ``<class>/<image>``.
    """
    spec = _spec(name)
    if split not in spec.splits:
        raise ValueError(f"data set {name!r} has no split {split!r}; splits: {sorted(spec.splits)}")
    if spec.bundled is not None:
        return (BUNDLED_DIR / spec.bundled / spec.splits[split]).resolve()
    base = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    home = base / name
    prepared = home / "data"
    if not (prepared / _COMPLETE).exists():
        archive = home / Path(spec.url).name
        if not archive.exists() and not download:
            raise FileNotFoundError(f"data set {name!r} is not in {str(home)!r} and download=False")
        download_file(spec.url, archive, spec.checksum, opener=opener)
        staging = home / f".data.tmp-{os.getpid()}"
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        spec.prepare(archive, staging)
        (staging / _COMPLETE).write_text(spec.checksum or "")
        shutil.rmtree(prepared, ignore_errors=True)
        os.replace(staging, prepared)
    return prepared / spec.splits[split]
