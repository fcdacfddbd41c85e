"""Training state, random-number-generator capture and checkpoint I/O.

A checkpoint is one dictionary of tensors and plain Python data (it loads with
``torch.load(weights_only=True)``, so a foreign file can never run code). Writes are atomic:
the bytes go to a temporary file in the same folder, are flushed and fsync'ed, then renamed
over the target, so an interrupted or failed write never damages the previous checkpoint.
"""

from __future__ import annotations

import os
import random
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from epochal.utils import atomic_write_bytes, unsafe_pickle_message, weights_only_detail

__all__ = [
    "CHECKPOINT_FORMAT",
    "CheckpointError",
    "TrainState",
    "atomic_write_bytes",
    "capture_rng",
    "convert_trusted_checkpoint",
    "export_safetensors",
    "load_checkpoint",
    "restore_rng",
    "save_checkpoint",
    "seed_everything",
    "seed_worker",
]

CHECKPOINT_FORMAT = "epochal-checkpoint"
#: 2: history records and the callbacks' epoch attributes number epochs from 1 (version 1: from 0).
CHECKPOINT_VERSION = 2


class CheckpointError(RuntimeError):
    """A checkpoint that is missing, truncated, corrupt or not written by epochal."""


@dataclass
class TrainState:
    """Where the loop stands; everything is counted so that resume needs no guessing.

    Epochs are counted two ways, and this class is the one place that maps them: ``epoch`` is the
    loop's 0-based counter (part of the checkpoint format, and what loaders are addressed by);
    :attr:`epoch_number` is the epoch as every user-facing record numbers it, from 1 ("epoch 3" is
    the third epoch): history records, ``metrics.jsonl``, CSV rows, TensorBoard's ``epoch`` scalar,
    plots, ``epoch_<n>.pt`` files, ``best.epoch`` in ``summary.json`` and the callbacks' epoch
    attributes (``best_epoch``, ``stopped_epoch``, ``reductions``).

    Attributes:
        epoch: the current epoch (0-based); after a finished fit, the number of epochs run.
        batch: the next batch index within the current epoch (the resume position).
        step: optimizer steps taken since the start of the run (schedules are functions of it).
        total_steps: optimizer steps the whole fit will take.
        phase: index of the current training phase.
        samples: training samples seen.
    """

    epoch: int = 0
    batch: int = 0
    step: int = 0
    total_steps: int = 0
    phase: int = 0
    samples: int = 0

    @property
    def epoch_number(self) -> int:
        """The current epoch as users see it: ``epoch + 1`` (the first epoch is epoch 1)."""
        return self.epoch + 1

    def state_dict(self) -> dict[str, int]:
        return asdict(self)

    def load_state_dict(self, state: dict[str, int]) -> None:
        for key, value in state.items():
            setattr(self, key, int(value))


def seed_everything(seed: int, deterministic: bool = False) -> int:
    """Seed Python, NumPy and torch (all devices) and ``PYTHONHASHSEED`` for child processes.

    Args:
        seed: the seed.
        deterministic: also ask torch for deterministic algorithms (``warn_only``: an op without
            a deterministic kernel warns instead of failing) and turn off cuDNN benchmarking.

    Returns:
        The seed, for logging.
    """
    if not 0 <= seed < 2**32:
        raise ValueError(f"seed must be in [0, 2**32), got {seed}")
    os.environ["PYTHONHASHSEED"] = str(seed)
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # also seeds every CUDA device
    if deterministic or torch.are_deterministic_algorithms_enabled():  # the call costs seconds: only when it changes
        torch.use_deterministic_algorithms(deterministic, warn_only=True)
    torch.backends.cudnn.benchmark = not deterministic
    torch.backends.cudnn.deterministic = deterministic
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    return seed


def seed_worker(worker_id: int, base_seed: int | None = None, rank: int = 0) -> int:
    """Seed Python and NumPy in a data-loader worker (``worker_init_fn``), distinct per rank and worker.

    torch already gives each worker ``base_seed + worker_id``; Python's and NumPy's generators
    are copied from the parent at fork and would repeat the same "random" augmentations in every
    worker without this. ``rank`` keeps DDP ranks apart when they share a base seed.

    Returns:
        The worker's seed.
    """
    if base_seed is None:
        base_seed = torch.initial_seed() - worker_id
    seed = (base_seed + 1_000_003 * rank + worker_id) % 2**32
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    return seed


def capture_rng() -> dict[str, Any]:
    """The state of every random generator, as tensors and plain data."""
    version, internal, gauss = random.getstate()
    np_state = np.random.get_state()
    state: dict[str, Any] = {
        "python": {"version": version, "state": list(internal), "gauss": gauss},
        "numpy": {
            "keys": torch.from_numpy(np_state[1].astype(np.int64)),
            "pos": int(np_state[2]),
            "has_gauss": int(np_state[3]),
            "cached_gaussian": float(np_state[4]),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict[str, Any]) -> None:
    """Restore what :func:`capture_rng` returned."""
    py = state["python"]
    random.setstate((py["version"], tuple(py["state"]), py["gauss"]))
    npy = state["numpy"]
    np.random.set_state(("MT19937", npy["keys"].numpy().astype(np.uint32), npy["pos"],
                         npy["has_gauss"], npy["cached_gaussian"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(path: str | Path, payload: dict[str, Any]) -> Path:
    """Atomically write a checkpoint dictionary (tensors and plain data only)."""
    payload = {"format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION, **payload}
    return atomic_write_bytes(path, lambda handle: torch.save(payload, handle))


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint written by :func:`save_checkpoint`, with a clear error for anything else.

    Raises:
        CheckpointError: the file is missing, truncated, corrupt, holds code, or is no epochal checkpoint.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # the unpickler raises many types for damaged or hostile bytes
        raise _read_error(path, exc) from exc
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(
            f"{path} is not an epochal checkpoint (expected a dict with format={CHECKPOINT_FORMAT!r}); "
            "to load bare weights use epochal.models.convert or model.load_state_dict"
        )
    if payload.get("version", 0) > CHECKPOINT_VERSION:
        raise CheckpointError(f"{path} has checkpoint version {payload['version']}, newer than this epochal reads")
    return payload


def _read_error(path: Path, exc: Exception) -> CheckpointError:
    """The reason a checkpoint could not be loaded, in words (torch's messages may be empty)."""
    unsafe = unsafe_pickle_message(path, exc)
    if unsafe is not None:
        return CheckpointError(unsafe)
    if path.stat().st_size == 0:
        return CheckpointError(
            f"checkpoint {path} is empty (0 bytes): it was never completely written (a full disk or a killed "
            "writer); use another checkpoint of the run (best.pt, epoch_<n>.pt) or start the run again"
        )
    return CheckpointError(
        f"checkpoint {path} could not be read ({type(exc).__name__}: {weights_only_detail(exc)[:200]}); "
        "it is truncated, corrupt, or holds objects other than tensors and plain data"
    )


def convert_trusted_checkpoint(path: str | Path, out: str | Path, key: str | None = None) -> Path:
    """Unpickle a checkpoint you trust and save its weights as a ``.safetensors`` file.

    epochal itself never unpickles code: :func:`load_checkpoint` refuses files that hold Python
    objects other than tensors and plain data. A file from elsewhere (a full pickled model, a
    training script's checkpoint with custom classes) can be converted once with this function,
    which calls ``torch.load(weights_only=False)``: **that runs whatever code the file holds, so
    use it only on files from a source you trust.** The result loads everywhere epochal takes
    weights (``learner.load_weights``, ``model.weights`` in a recipe, ``load_pretrained``).

    Args:
        path: the trusted pickle (``.pt``, ``.pth``, ``.ckpt``).
        out: the ``.safetensors`` file to write (atomically).
        key: the entry holding the weights; default: the object itself when it is a module or a
            dict of tensors, else the first of ``state_dict``, ``model_state_dict``, ``model``,
            ``model_state``, ``module``.

    Returns:
        ``out``.

    Examples:
        >>> convert_trusted_checkpoint("downloaded.pth", "weights.safetensors")  # doctest: +SKIP
    """
    obj = torch.load(path, map_location="cpu", weights_only=False)
    if key is not None:
        if not isinstance(obj, dict) or key not in obj:
            keys = sorted(map(str, obj)) if isinstance(obj, dict) else type(obj).__name__
            raise KeyError(f"{path} has no entry {key!r}; it holds {keys}")
        obj = obj[key]
    else:
        obj = _weights_entry(obj)
    state = obj.state_dict() if isinstance(obj, torch.nn.Module) else obj
    tensors = {str(k): v for k, v in state.items() if isinstance(v, torch.Tensor)} if isinstance(state, dict) else {}
    if not tensors:
        raise ValueError(f"{path} holds no tensors to convert (found {type(state).__name__}); pass key=")
    return export_safetensors(tensors, out, metadata={"converted_from": Path(path).name})


def _weights_entry(obj: Any) -> Any:
    if isinstance(obj, torch.nn.Module) or not isinstance(obj, dict):
        return obj
    if obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
        return obj
    for name in ("state_dict", "model_state_dict", "model", "model_state", "module"):
        if isinstance(obj.get(name), dict | torch.nn.Module):
            return obj[name]
    return obj


def export_safetensors(state_dict: dict[str, torch.Tensor], path: str | Path,
                       metadata: dict[str, str] | None = None) -> Path:
    """Write model weights to a ``.safetensors`` file (atomically; shared tensors are cloned)."""
    from safetensors.torch import save

    tensors = {k: v.detach().cpu().contiguous().clone() for k, v in state_dict.items()}
    blob = save(tensors, metadata=metadata)
    return atomic_write_bytes(path, lambda handle: handle.write(blob))
