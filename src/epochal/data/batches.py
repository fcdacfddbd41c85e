"""Batches as users' loaders yield them, turned into the ``(inputs, targets)`` pairs the Learner reads.

A loader of one's own may yield ``(inputs, targets)``, ``[input_1, input_2, targets]`` (the last
element is the target, the others are passed to the model in order), or a dict such as
``{"image": ..., "label": ...}`` (Hugging Face ``datasets`` with the torch format, most
``collate_fn`` of text pipelines). Dict keys are guessed from the usual names, or named with
``inputs=`` / ``targets=``; when they cannot be guessed, the error lists the batch's keys.
NumPy arrays become tensors (float64 as the default float dtype, integers as int64, as Keras does).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

__all__ = ["INPUT_KEYS", "TARGET_KEYS", "BatchFormat", "as_tensor"]

#: Dict keys taken as the inputs when ``inputs=`` is not given (the first one present that is unique).
INPUT_KEYS: tuple[str, ...] = (
    "inputs", "input", "x", "image", "images", "img", "pixel_values", "input_ids", "features", "data",
)
#: Dict keys taken as the targets when ``targets=`` is not given.
TARGET_KEYS: tuple[str, ...] = ("targets", "target", "y", "labels", "label")


def as_tensor(array: Any, what: str = "array") -> Any:
    """``array`` as a tensor when it is a NumPy array (float64 -> default float dtype, ints -> int64).

    Tensors and other objects are returned unchanged; tuples and lists are converted element-wise.

    Raises:
        TypeError: naming ``what`` when a NumPy array has no tensor dtype (strings, objects).
    """
    if isinstance(array, torch.Tensor):
        return array
    if isinstance(array, tuple | list):
        return type(array)(as_tensor(a, what) for a in array)
    if not isinstance(array, np.ndarray):
        return array
    if array.dtype.kind in "OUSVMm":
        raise TypeError(f"{what} is a NumPy array of {array.dtype} values; convert it to numbers first "
                        "(e.g. class names to indices)")
    tensor = torch.from_numpy(np.ascontiguousarray(array))
    if array.dtype == np.float64:
        return tensor.to(torch.get_default_dtype())
    if array.dtype.kind in "iu" and array.dtype != np.uint8:
        return tensor.long()
    return tensor


def _keys_text(keys: Sequence) -> str:
    return "[" + ", ".join(repr(k) for k in keys) + "]"


def _guess(keys: Sequence, candidates: tuple[str, ...]) -> Any:
    """The one key of ``keys`` that is a candidate name, or None (none or several)."""
    found = [k for k in keys if k in candidates]
    return found[0] if len(found) == 1 else None


class BatchFormat:
    """Turns a batch as a loader yields it into ``(inputs, targets)``.

    Args:
        inputs: for dict batches, the key of the inputs, or a tuple of keys (the model gets them
            as positional arguments in that order); default: guessed from :data:`INPUT_KEYS`, or
            the only key besides the targets.
        targets: for dict batches, the key of the targets; default: guessed from :data:`TARGET_KEYS`.

    Examples:
        >>> fmt = BatchFormat(inputs="features", targets="category")
        >>> x, y = fmt({"features": torch.zeros(4, 3), "category": torch.arange(4), "id": torch.arange(4)})
        >>> tuple(x.shape), y.tolist()
        ((4, 3), [0, 1, 2, 3])
    """

    def __init__(self, inputs: str | Sequence[str] | None = None, targets: str | None = None):
        if inputs is not None and not isinstance(inputs, str):
            inputs = tuple(inputs)
            if not inputs:
                raise ValueError("inputs=() names no key; give a key or a tuple of keys")
        self.inputs, self.targets = inputs, targets
        self._keys: tuple[Any, Any] | None = None
        self._checked = False

    @property
    def names_keys(self) -> bool:
        """True when keys were given (the batches must then be dicts)."""
        return self.inputs is not None or self.targets is not None

    def __call__(self, batch: Any) -> tuple[Any, Any]:
        if isinstance(batch, Mapping):
            pair = self._from_mapping(batch)
        elif isinstance(batch, tuple | list) and len(batch) >= 2 and not self.names_keys:
            inputs = batch[0] if len(batch) == 2 else tuple(batch[:-1])
            pair = as_tensor(inputs, "the batch's inputs"), as_tensor(batch[-1], "the batch's targets")
        elif self.names_keys:
            raise TypeError(f"inputs={self.inputs!r}, targets={self.targets!r} name keys of dict batches, "
                            f"but the loader yields {type(batch).__name__} batches; drop inputs= and targets=")
        else:
            raise TypeError(f"a batch must be (inputs, targets), [input_1, ..., targets] or a dict of tensors; "
                            f"the loader yields {type(batch).__name__}"
                            + (f" of length {len(batch)}" if isinstance(batch, tuple | list) else ""))
        if not self._checked:
            self._check_first(pair)
        return pair

    def _check_first(self, pair: tuple[Any, Any]) -> None:
        targets = pair[1]
        if isinstance(targets, torch.Tensor) and targets.ndim == 0:
            raise ValueError("the loader yields single samples (0-d targets), not batches: wrap the "
                             "dataset in torch.utils.data.DataLoader(dataset, batch_size=..., shuffle=True)")
        self._checked = True

    def _from_mapping(self, batch: Mapping) -> tuple[Any, Any]:
        if self._keys is None:
            self._keys = self._resolve(list(batch.keys()))
        inputs, targets = self._keys
        try:
            x = batch[inputs] if not isinstance(inputs, tuple) else tuple(batch[k] for k in inputs)
            y = batch[targets]
        except KeyError as exc:
            raise KeyError(f"a dict batch has no key {exc.args[0]!r}; its keys are {_keys_text(list(batch))}") from None
        return as_tensor(x, f"batch[{inputs!r}]"), as_tensor(y, f"batch[{targets!r}]")

    def _resolve(self, keys: list) -> tuple[Any, Any]:
        """The (inputs, targets) keys of dict batches with ``keys``; a clear error when unclear."""
        targets = self.targets if self.targets is not None else _guess(keys, TARGET_KEYS)
        inputs = self.inputs
        if inputs is None:
            rest = [k for k in keys if k != targets]
            inputs = rest[0] if len(rest) == 1 and targets is not None else _guess(rest, INPUT_KEYS)
        named = [*(inputs if isinstance(inputs, tuple) else (inputs,)), targets]
        missing = [k for k in named if k is not None and k not in keys]
        if missing:
            raise KeyError(f"dict batches have keys {_keys_text(keys)}; {_keys_text(missing)} "
                           f"{'is' if len(missing) == 1 else 'are'} not among them")
        if inputs is None or targets is None:
            unclear = " and ".join(w for w, k in (("inputs", inputs), ("targets", targets)) if k is None)
            example_i = inputs if inputs is not None else next(k for k in keys if k != targets)
            example_t = targets if targets is not None else next((k for k in keys if k != example_i), keys[0])
            raise ValueError(
                f"dict batches with keys {_keys_text(keys)}: cannot tell which key holds the {unclear}; "
                f"name them, e.g. epochal.data.from_loader(loader, inputs={example_i!r}, targets={example_t!r}) "
                "(inputs=('a', 'b') passes several keys to the model in that order)"
            )
        return inputs, targets
