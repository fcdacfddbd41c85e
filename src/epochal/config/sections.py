"""The two kinds of recipe section every schema class builds on (see :mod:`epochal.config.schema`).

Both are *strict* (pydantic's strict mode): a value must already have the key's type, so
``lr: '0.1'``, ``epochs: '3'``, ``deterministic: 'yes'`` and ``grad_accum: true`` are errors naming
the key instead of being converted. What YAML itself reads as a number or a boolean is accepted
(``1e-3`` and ``5.0e-4`` are floats, an int is a valid float, unquoted ``yes`` is true), and
non-finite numbers (``.inf``, ``.nan``) are refused.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, model_validator

from epochal.config.errors import unknown_key_message

__all__ = ["OpenSection", "Section"]


class Section(BaseModel):
    """A closed section: unknown keys are errors with a suggestion."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, strict=True, allow_inf_nan=False)

    @model_validator(mode="before")
    @classmethod
    def _known_keys(cls, data: Any) -> Any:
        if isinstance(data, dict) and cls.model_config.get("extra") == "forbid":
            for key in data:
                if key not in cls.model_fields:
                    raise ValueError(unknown_key_message(str(key), cls.model_fields))
        return data


class OpenSection(Section):
    """A section whose keys beyond the declared ones are keyword arguments of a registry entry."""

    model_config = ConfigDict(extra="allow", validate_assignment=True)

    @property
    def kwargs(self) -> dict[str, Any]:
        """The extra keys: keyword arguments for the registry entry."""
        return dict(self.model_extra or {})
