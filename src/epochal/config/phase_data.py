"""Per-phase data: a training phase that batches, sizes or augments the recipe's data its own way.

Progressive resizing trains on small images in large batches first and on full-size images at
the end (Howard's fast.ai DAWNBench ImageNet entry, 2018; Touvron et al., "Fixing the train-test
resolution discrepancy", NeurIPS 2019, on why ending at the test size matters). In a recipe a
phase's ``data:`` names an entry of ``data_variants`` or gives a mapping of its own; either is a
:class:`~epochal.config.schema.PhaseDataConfig` laid key by key over the ``data`` section and
validated like it.

A phase's loader is built from the run's main training loader without packing or preprocessing
anything again (:func:`~epochal.data.images.image_loader_variant`,
:func:`~epochal.data.tabular_loaders.tensor_loader_variant`); phases that ask for the same
settings share one loader, so the Learner ends an epoch only where the data really changes.
Validation always uses the main validation loader, so every epoch's metrics are comparable.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field, SerializerFunctionWrapHandler, ValidationError, model_serializer, model_validator

from epochal.config.errors import format_validation_error, unknown_key_message
from epochal.config.sections import Section
from epochal.utils import did_you_mean

if TYPE_CHECKING:
    from epochal.config.schema import DataConfig

__all__ = ["PHASE_DATA_REFUSED", "PhaseDataConfig", "merged_data", "phase_loaders", "phase_overlay"]

#: Keys of ``data`` a phase may not change, and why.
PHASE_DATA_REFUSED: dict[str, str] = {
    "kind": "it would change the data source",
    "path": "it would change the data source",
    "target": "it would change what is predicted",
    "valid_pct": "it would change the validation split",
    "options": "the loader options (packing, normalisation, preprocessing) are shared by every phase",
}


class PhaseDataConfig(Section):
    """How one training phase batches and augments the recipe's data (``phases[i].data``, ``data_variants``).

    Each key given replaces that key of the recipe's ``data`` section for the phase; keys left out
    keep its value. The phase trains on the same images or rows, split and preprocessing (nothing
    is packed or fitted again), so the keys that would change those are refused.

    Example (progressive resizing: small images in large batches first)::

        data_variants:
          small: {image_size: 16, batch_size: 256}
        phases:
          - {epochs: 4, lr: 0.4, data: small}
          - {epochs: 2, lr: 0.04}
    """

    batch_size: int | None = Field(None, ge=1)
    image_size: int | None = Field(None, ge=1)
    augment: list[Any] | None = None
    balance: Literal["oversample", "undersample", "weighted"] | None = None

    @model_validator(mode="before")
    @classmethod
    def _known_keys(cls, data: Any) -> Any:
        if isinstance(data, dict):
            for key in data:
                if key in PHASE_DATA_REFUSED:
                    raise ValueError(
                        f"{key!r} cannot change in a phase: {PHASE_DATA_REFUSED[key]}; "
                        f"a phase may set {sorted(cls.model_fields)}"
                    )
                if key not in cls.model_fields:
                    raise ValueError(unknown_key_message(str(key), cls.model_fields))
        return data

    @model_serializer(mode="wrap")
    def _given_only(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        # a key left out means "as in data", which a saved default would silently replace
        return {k: v for k, v in handler(self).items() if k in self.model_fields_set}

    def overlay(self) -> dict[str, Any]:
        """The ``data`` keys this phase sets (an explicit null included)."""
        return self.model_dump()


def _nested_error(exc: ValidationError, where: str) -> ValueError:
    """One ValueError whose message names each problem's key below ``where``."""
    lines = format_validation_error(exc).splitlines()
    located = [
        f"{where}.{line}" if _loc(error) else f"{where}: {line}" for error, line in zip(exc.errors(), lines)
    ]
    return ValueError("; ".join(located))


def _loc(error: Mapping[str, Any]) -> str:
    return ".".join(str(p) for p in error.get("loc", ()))


def phase_overlay(value: Any, variants: Mapping[str, PhaseDataConfig], where: str) -> dict[str, Any] | None:
    """The ``data`` keys a phase sets: its variant's or its own mapping's (None: no ``data``).

    Raises:
        ValueError: naming ``where`` for an unknown variant, a refused or unknown key or a bad value.
    """
    if value is None:
        return None
    if isinstance(value, str):
        if value not in variants:
            defined = sorted(variants)
            raise ValueError(
                f"{where}: unknown data variant {value!r}; data_variants defines {defined}"
                + did_you_mean(value, defined)
            )
        return variants[value].overlay()
    if isinstance(value, Mapping):
        try:
            return PhaseDataConfig.model_validate(dict(value)).overlay()
        except ValidationError as exc:
            raise _nested_error(exc, where) from None
    raise ValueError(  # noqa: TRY004 (pydantic reports ValueErrors with the key)
        f"{where} must be the name of a data_variants entry or a mapping of data keys, got {value!r}"
    )


def merged_data(data: DataConfig, overlay: Mapping[str, Any] | None, where: str) -> DataConfig:
    """The recipe's ``data`` section with a phase's keys laid over it, validated like ``data``."""
    from epochal.config.schema import DataConfig

    if not overlay:
        return data
    try:
        return DataConfig.model_validate({**data.model_dump(), **overlay})
    except ValidationError as exc:
        raise _nested_error(exc, where) from None


def _phase_data_settings(config) -> list[DataConfig | None]:
    """Each phase's data settings; None where they are the recipe's own (the main loader serves it)."""
    settings = []
    for i, entry in enumerate(config.phases):
        where = f"phases.{i}.data"
        merged = merged_data(config.data, phase_overlay(entry.get("data"), config.data_variants, where), where)
        settings.append(None if merged == config.data else merged)
    return settings


def phase_loaders(config, data) -> list:
    """Per explicit phase of ``config``, its own training loader, or None to train on ``data.train``.

    Args:
        config: the recipe (its ``phases`` a list).
        data: the run's :class:`~epochal.data.DataLoaders`.
    """
    built: dict[str, Any] = {}
    loaders = []
    for settings in _phase_data_settings(config):
        if settings is None:
            loaders.append(None)
            continue
        key = json.dumps(settings.model_dump(mode="json"), sort_keys=True)
        if key not in built:
            built[key] = _variant_loader(config, data.train, settings)
        loaders.append(built[key])
    return loaders


def _variant_loader(config, train, settings: DataConfig):
    if settings.kind == "tabular":
        from epochal.data.tabular_loaders import tensor_loader_variant

        return tensor_loader_variant(train, settings.batch_size, settings.balance)
    from epochal.config.data_builders import _resolve_augment
    from epochal.data.images import image_loader_variant

    augment = _resolve_augment(settings.augment, config.model.name) if settings.augment else None
    return image_loader_variant(train, settings.batch_size, settings.image_size, augment, settings.balance)
