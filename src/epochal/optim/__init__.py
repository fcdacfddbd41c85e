"""Optimizers and parameter groups: no-decay split, layer groups, discriminative learning rates,
decoupled weight decay for every optimizer, LARS/LAMB, Muon, group rules, optimizer switching and freezing."""

from epochal.optim.decoupled import SGDW, DecoupledWeightDecay, RMSpropW, decoupled, is_decoupled
from epochal.optim.factory import (
    OPTIMIZERS,
    OptimizerEntry,
    OptimizerSpec,
    build_optimizer,
    optimizer_family,
    register_optimizer,
    resolve_optimizer,
    same_optimizer,
    switch_optimizer,
)
from epochal.optim.freeze import FreezeRecord, freeze, freeze_to, frozen, set_frozen_norm_eval, unfreeze
from epochal.optim.groups import (
    NORM_TYPES,
    GroupRule,
    LrSpec,
    get_layer_groups,
    is_norm_or_bias,
    lr_scales,
    lr_top,
    param_groups,
    split_by_rules,
    unwrap_model,
)
from epochal.optim.lamb import LAMB
from epochal.optim.lars import LARS
from epochal.optim.muon import Muon, zeropower_via_newtonschulz

__all__ = [
    "LAMB",
    "LARS",
    "NORM_TYPES",
    "OPTIMIZERS",
    "SGDW",
    "DecoupledWeightDecay",
    "FreezeRecord",
    "GroupRule",
    "LrSpec",
    "Muon",
    "OptimizerEntry",
    "OptimizerSpec",
    "RMSpropW",
    "build_optimizer",
    "decoupled",
    "freeze",
    "freeze_to",
    "frozen",
    "get_layer_groups",
    "is_decoupled",
    "is_norm_or_bias",
    "lr_scales",
    "lr_top",
    "optimizer_family",
    "param_groups",
    "register_optimizer",
    "resolve_optimizer",
    "same_optimizer",
    "set_frozen_norm_eval",
    "split_by_rules",
    "switch_optimizer",
    "unfreeze",
    "unwrap_model",
    "zeropower_via_newtonschulz",
]
