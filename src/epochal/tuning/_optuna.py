"""The lazy import of Optuna (the optional extra ``tune``): importing epochal never needs it."""

from __future__ import annotations

from typing import Any

__all__ = ["require_optuna"]


def require_optuna() -> Any:
    """The ``optuna`` module, quiet at INFO level (epochal prints its own line per trial).

    Raises:
        ImportError: naming the extra that installs it.
    """
    try:
        import optuna
    except ImportError as exc:
        raise ImportError(
            "hyperparameter search needs Optuna: pip install 'epochal[tune]' "
            "(and 'epochal[postgres]' for a PostgreSQL storage)"
        ) from exc
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna
