"""Ensembles of finished runs: ``epochal eval RUN1 RUN2 ...`` and ``epochal predict RUN1 RUN2 IMAGES``.

Members are run folders (their final weights: ``swa.pt``/``ema.pt`` when the run ended with
averaged weights, else ``best.pt``, else ``last.pt``), checkpoint files inside run folders, or, with
``snapshots=True``, every ``checkpoints/snapshot_<k>.pt`` a
:class:`~epochal.callbacks.snapshot_ensemble.SnapshotEnsemble` wrote. Each member is evaluated on
data prepared its own way (its recipe, its normalisation), and the members' outputs are combined
by :class:`~epochal.averaging.Ensemble`'s rule with equal, given or fitted weights. Fitted weights
minimise the log loss on the first member's own validation split (the split its recipe holds out);
when that is also the data being evaluated, the ensemble's figures are optimistic, and the
result says where the weights were fitted.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from epochal.config.errors import ConfigError

__all__ = ["ensemble_members", "evaluate_ensemble", "parse_weights", "restore_ensemble"]


def ensemble_members(targets: Sequence[str | Path], snapshots: bool = False) -> list[Path]:
    """The member checkpoints or run folders of ``targets`` (each run's snapshots with ``snapshots``)."""
    members: list[Path] = []
    for target in map(Path, targets):
        if not snapshots:
            members.append(target)
            continue
        found = sorted((target / "checkpoints").glob("snapshot_*.pt")) if target.is_dir() else []
        if not found:
            raise FileNotFoundError(f"--snapshots: {target} is not a run folder with checkpoints/snapshot_*.pt "
                                    "(written by the snapshot_ensemble callback)")
        members += found
    if not members:
        raise ValueError("an ensemble needs at least one run folder or checkpoint")
    return members


def parse_weights(spec: str | Sequence[float] | None) -> str | list[float] | None:
    """``None``/``"equal"`` (equal weights), ``"fit"``, or a comma-separated / sequence of numbers."""
    if spec is None or (isinstance(spec, str) and spec.strip() in ("", "equal")):
        return None
    if isinstance(spec, str) and spec.strip() == "fit":
        return "fit"
    values = spec.split(",") if isinstance(spec, str) else list(spec)
    try:
        return [float(v) for v in values]
    except (TypeError, ValueError):
        raise ValueError(f"--weights {spec!r}: give 'equal', 'fit' or one number per member, comma-separated "
                         "(e.g. 0.5,0.3,0.2)") from None


def _data_key(config, info: dict[str, Any]) -> str:
    return json.dumps([config.data.model_dump(mode="json"), config.seed, info.get("normalize"),
                       info.get("classes"), info.get("input_shape")], sort_keys=True, default=str)


class _Outputs:
    """Member outputs on one data set, the data prepared once per distinct recipe data section."""

    def __init__(self, data_path, device: str, batch_size: int | None, tta: bool, cache: str):
        self.data_path, self.device, self.batch_size, self.tta, self.cache = data_path, device, batch_size, tta, cache
        self.loaders: dict[str, Any] = {}
        self.source: str | None = None

    def _data(self, config, info):
        from epochal.config.inference import _labelled_data, _own_validation_data

        key = _data_key(config, info)
        if key not in self.loaders:
            if self.data_path is None:
                self.loaders[key] = _own_validation_data(config, self.device, self.batch_size)
                self.source = self.source or (f"validation split of {config.data.path} "
                                              f"(valid_pct={config.data.valid_pct}, seed={config.seed})")
            else:
                self.loaders[key] = _labelled_data(config, info, self.data_path, self.device, self.batch_size,
                                                   self.cache)
                self.source = str(self.data_path)
        return self.loaders[key]

    def __call__(self, model: nn.Module, config, info) -> tuple[torch.Tensor, torch.Tensor]:
        from epochal.config.tta import tta_model
        from epochal.learner import Learner

        data = self._data(config, info)
        learner = Learner(tta_model(model, self.tta), data, device=self.device,
                          precision=config.trainer.precision)
        return learner.predict(data.valid, with_targets=True)


def _restored(members: Sequence[Path]) -> list[tuple]:
    from epochal.config.inference import restore_model

    restored = [restore_model(member) for member in members]
    classes = [r[2].get("classes") for r in restored]
    if any(c != classes[0] for c in classes):
        raise ConfigError(f"ensemble members predict different classes: {[str(m) for m in members]} have {classes}")
    return restored


def _score(outputs: torch.Tensor, targets: torch.Tensor, config) -> dict[str, float]:
    from epochal.config.builders import build_loss
    from epochal.metrics import get_metric

    scores = {"loss": float(build_loss(config)(outputs, targets))}
    for name in config.metrics:
        metric = get_metric(name)
        metric.reset()
        metric.update(outputs, targets)
        scores[metric.name] = metric.compute()
    return scores


def _member_outputs(restored, outputs: _Outputs) -> tuple[list[torch.Tensor], torch.Tensor]:
    predictions, targets = [], None
    for model, config, info, checkpoint in restored:
        preds, member_targets = outputs(model, config, info)
        if targets is not None and not torch.equal(member_targets, targets):
            raise ConfigError(f"{checkpoint} was evaluated on other samples than the first member (its recipe "
                              "holds out another split); pass --data to evaluate every member on the same data")
        predictions.append(preds)
        targets = member_targets
    return predictions, targets


def _fitted_weights(restored, combine: str, device: str, batch_size: int | None, own: tuple | None):
    from epochal.averaging import fit_weights

    if own is None:
        with tempfile.TemporaryDirectory(prefix="epochal-ensemble-") as cache:
            holdout = _Outputs(None, device, batch_size, False, cache)
            own = (*_member_outputs(restored, holdout), holdout.source)
    predictions, targets, source = own
    return fit_weights(predictions, targets, combine).tolist(), source


def evaluate_ensemble(targets: Sequence[str | Path], data_path: str | Path | None = None,
                      weights: str | Sequence[float] | None = None, combine: str = "probs", tta: bool | str = False,
                      snapshots: bool = False, device: str | None = None,
                      batch_size: int | None = None) -> dict[str, Any]:
    """Loss and metrics of an ensemble of runs and of each member, on the same samples.

    Args:
        targets: run folders or checkpoints (with ``snapshots``: run folders whose snapshots are the members).
        data_path: labelled data (default: the first member's own validation split, rebuilt from its recipe).
        weights: ``None``/``"equal"``, ``"fit"`` (held-out log loss on the first member's own
            validation split) or one number per member.
        combine: ``"probs"``, ``"logits"`` or ``"sigmoid"`` (see :class:`~epochal.averaging.Ensemble`).
        tta: average each member's logits over test-time views: True (the mirror image) or view
            names (``"flip,translate"``, :mod:`epochal.config.tta`).
        snapshots: see above; evaluation batch size.
        device: as for ``snapshots``.
        batch_size: as for ``snapshots``.

    Returns:
        ``{"metrics", "n", "data", "combine", "weights", "weights_fitted_on", "members": [{"target",
        "checkpoint", "weight", "metrics"}]}``; metric names are the first member's recipe's.
    """
    from epochal.averaging import combine_outputs, normalise_weights
    from epochal.config.experiment import resolve_device

    members = ensemble_members(targets, snapshots)
    weights, device = parse_weights(weights), resolve_device(device)
    restored = _restored(members)
    config = restored[0][1]
    with tempfile.TemporaryDirectory(prefix="epochal-ensemble-") as cache:
        outputs = _Outputs(data_path, device, batch_size, tta, cache)
        predictions, labels = _member_outputs(restored, outputs)
        source = outputs.source
        fitted_on = None
        if weights == "fit":
            own = (predictions, labels, source) if data_path is None and not tta else None
            weights, fitted_on = _fitted_weights(restored, combine, device, batch_size, own)
        del outputs  # release the memory-mapped caches before their folder goes
    normalised = normalise_weights(weights, len(members))
    combined = combine_outputs(predictions, normalised, combine)
    rows = [{"target": str(member), "checkpoint": str(checkpoint), "weight": float(w),
             "metrics": _score(preds, labels, config)}
            for member, (_, _, _, checkpoint), preds, w in zip(members, restored, predictions, normalised.tolist())]
    return {"metrics": _score(combined, labels, config), "n": int(labels.shape[0]), "data": source,
            "combine": combine, "weights": normalised.tolist(), "weights_fitted_on": fitted_on, "members": rows}


class _Renormalized(nn.Module):
    """A member that expects other normalisation than the first member's: undo that one, apply its own."""

    def __init__(self, model: nn.Module, given: tuple | None, wanted: tuple | None):
        super().__init__()
        self.model = model
        identity = ((0.0, 0.0, 0.0), (1.0, 1.0, 1.0))
        given, wanted = given or identity, wanted or identity
        (given_mean, given_std), (wanted_mean, wanted_std) = (
            [torch.tensor(v, dtype=torch.float32).view(1, -1, 1, 1) for v in pair] for pair in (given, wanted))
        self.register_buffer("scale", given_std / wanted_std)
        self.register_buffer("shift", (given_mean - wanted_mean) / wanted_std)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.model(images * self.scale + self.shift)


def restore_ensemble(targets: Sequence[str | Path], weights: str | Sequence[float] | None = None,
                     combine: str = "probs", snapshots: bool = False, device: str | None = None):
    """An :class:`~epochal.averaging.Ensemble` of runs for prediction, taking the first member's inputs.

    Members normalised differently get their inputs re-normalised inside the ensemble, so the
    ensemble takes images prepared as the first member's ``data.json`` says.

    Returns:
        ``(ensemble, config, data_info, checkpoints)`` of the first member (eval mode, on the CPU).
    """
    from epochal.averaging import Ensemble
    from epochal.config.experiment import resolve_device
    from epochal.config.inference import _normalize

    members = ensemble_members(targets, snapshots)
    restored = _restored(members)
    first_info = restored[0][2]
    shapes = [r[2].get("input_shape") for r in restored]
    if any(s != shapes[0] for s in shapes):
        raise ConfigError(f"ensemble members take inputs of different shapes: {shapes}")
    modules = []
    for model, _, info, _ in restored:
        given, wanted = _normalize(first_info), _normalize(info)
        modules.append(model if given == wanted else _Renormalized(model, given, wanted))
    weights = parse_weights(weights)
    if weights == "fit":
        weights, _ = _fitted_weights(restored, combine, resolve_device(device), None, None)
    ensemble = Ensemble(modules, weights=weights, combine=combine).eval()
    return ensemble, restored[0][1], first_info, [r[3] for r in restored]
