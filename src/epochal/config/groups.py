"""``optimizer.groups``: parameter-group rules from a recipe (see :class:`epochal.optim.GroupRule`).

A recipe states a group's rate and decay the way its author knows them, in absolute numbers
(airbench: "the head trains at 1340, the filters at 0.24"); the rules store them relative to
``optimizer.lr`` and ``optimizer.weight_decay``, as every other epochal group does, so a schedule
that anneals the top rate anneals them with it.
"""

from __future__ import annotations

from collections.abc import Mapping

from epochal.config.errors import unknown_key_message

__all__ = ["RULE_KEYS", "build_group_rules"]

#: Keys of an ``optimizer.groups`` entry: GroupRule's fields, plus absolute ``lr`` and ``weight_decay``.
RULE_KEYS = ("params", "lr", "lr_scale", "weight_decay", "wd_scale", "momentum", "muon", "train_epochs", "name")


def build_group_rules(optimizer) -> list:
    """The :class:`~epochal.optim.GroupRule` s of ``optimizer.groups`` (an OptimizerConfig).

    An entry's ``lr`` is the group's rate at the schedule's peak ``optimizer.lr`` (stored as
    ``lr_scale = lr / optimizer.lr``), its ``weight_decay`` a multiple of ``optimizer.weight_decay``
    (``wd_scale``); or give the scales directly.
    """
    from epochal.optim import GroupRule

    rules = []
    for i, entry in enumerate(optimizer.groups or ()):
        where = f"optimizer.groups.{i}"
        if not isinstance(entry, Mapping):
            raise ValueError(f"{where} must be a mapping such as {{params: 'head.*', lr: 0.1}}, got {entry!r}")  # noqa: TRY004
        for key in entry:
            if key not in RULE_KEYS:
                raise ValueError(f"{where}: " + unknown_key_message(str(key), RULE_KEYS))
        if "params" not in entry:
            raise ValueError(f"{where} needs 'params': a glob over parameter names such as 'head.*'")
        kwargs = {k: v for k, v in entry.items() if k not in ("lr", "weight_decay")}
        bases = (("lr", "lr_scale", optimizer.lr), ("weight_decay", "wd_scale", optimizer.weight_decay))
        for absolute, scale, base in bases:
            if absolute in entry:
                if scale in entry:
                    raise ValueError(f"{where} gives both {absolute} and {scale}; give one")
                if not base > 0:
                    raise ValueError(
                        f"{where}.{absolute} is relative to optimizer.{absolute}, which is 0; "
                        f"set optimizer.{absolute} > 0 or give {scale}"
                    )
                kwargs[scale] = float(entry[absolute]) / base
        if isinstance(kwargs["params"], list):
            kwargs["params"] = tuple(kwargs["params"])
        try:
            rules.append(GroupRule(**kwargs))
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{where}: {exc}") from None
    return rules
