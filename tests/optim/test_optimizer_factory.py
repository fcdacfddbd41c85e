"""build_optimizer and switch_optimizer: registry, arguments, state carried between phases."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from epochal.optim import (
    LAMB,
    LARS,
    OPTIMIZERS,
    SGDW,
    Muon,
    RMSpropW,
    build_optimizer,
    optimizer_family,
    param_groups,
    register_optimizer,
    same_optimizer,
    switch_optimizer,
)

EXPECTED_CLASSES = {
    "sgd": SGDW,
    "nesterov": SGDW,
    "adam": torch.optim.AdamW,
    "adamw": torch.optim.AdamW,
    "rmsprop": RMSpropW,
    "lars": LARS,
    "lamb": LAMB,
    "muon": Muon,
}


def _model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 4), nn.LayerNorm(4), nn.Linear(4, 1))


def _train(optimizer, model, steps=2):
    for _ in range(steps):
        optimizer.zero_grad()
        model(torch.randn(5, 3)).pow(2).mean().backward()
        optimizer.step()


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_registry_builds_decoupled_optimizers_that_train(name):
    model = _model()
    optimizer = build_optimizer(
        name, param_groups(model, lr=slice(1e-3, 1e-2)), lr=0.01, momentum=0.8, weight_decay=0.01
    )
    assert type(optimizer) is EXPECTED_CLASSES[name]
    for group in optimizer.param_groups:
        assert group["lr"] == pytest.approx(0.01 * group["lr_scale"])
        assert group["weight_decay"] == pytest.approx(0.01 * group["wd_scale"])
        assert (group["betas"][0] if "betas" in group else group["momentum"]) == 0.8
    before = [p.detach().clone() for p in model.parameters()]
    _train(optimizer, model)
    assert all(not torch.equal(a, b) for a, b in zip(before, model.parameters()))


def test_defaults_aliases_and_groups_forms():
    model = _model()
    sgd = build_optimizer("SGDW", model)
    assert sgd.param_groups[0]["momentum"] == 0.9 and sgd.param_groups[0]["lr"] == 1e-3
    nesterov = build_optimizer("nesterov", model.parameters(), lr=0.1)
    assert nesterov.param_groups[0]["nesterov"] and nesterov.param_groups[0]["name"] == "group0"
    assert build_optimizer("adam", model, betas=(0.8, 0.99), momentum=0.7).param_groups[0]["betas"] == (
        0.7,
        0.99,
    )
    kept = build_optimizer("sgd", [{"params": list(model.parameters()), "lr": 0.5, "weight_decay": 0.2}])
    assert (kept.param_groups[0]["lr"], kept.param_groups[0]["weight_decay"]) == (0.5, 0.2)


def test_factories_and_classes():
    model = _model()
    made = build_optimizer(lambda groups, **kw: torch.optim.SGD(groups, **kw), model, lr=0.3, momentum=0.5)
    assert type(made) is torch.optim.SGD and made.param_groups[0]["lr"] == 0.3
    rms = build_optimizer(torch.optim.RMSprop, model, lr=0.01, momentum=0.5)
    assert type(rms).__name__ == "RMSpropW" and rms.param_groups[0]["momentum"] == 0.5


@pytest.mark.parametrize(
    ("spec", "kwargs", "error", "message"),
    [
        ("adamm", {}, ValueError, r"unknown optimizer 'adamm' \(did you mean 'adam'\?\)"),
        ("sgd", {"betas": (0.9, 0.99)}, ValueError, "optimizer 'sgd' takes no argument 'betas'"),
        ("adam", {"epsilon": 1e-8}, ValueError, r"takes no argument 'epsilon' \(did you mean 'eps'\?\)"),
        (42, {}, TypeError, "optimizer must be a name"),
    ],
)
def test_build_errors(spec, kwargs, error, message):
    with pytest.raises(error, match=message):
        build_optimizer(spec, _model(), **kwargs)


def test_fused_and_foreach_are_left_to_torch_on_cpu_and_can_be_forced():
    model = _model()
    assert not build_optimizer("adamw", model).param_groups[0]["fused"]
    # torch's CPU default said once, so no step searches for it per group
    assert build_optimizer("sgd", model).param_groups[0]["foreach"] is False
    assert build_optimizer("adamw", model, fused=True).param_groups[0]["fused"]


def test_same_optimizer_and_families():
    assert same_optimizer("sgdw", "SGD") and not same_optimizer("sgd", "nesterov")
    assert same_optimizer(torch.optim.Adagrad, torch.optim.Adagrad)
    assert [optimizer_family(n) for n in ("sgd", "lars", "adam", "lamb", "rmsprop")] == [
        "sgd",
        "sgd",
        "adam",
        "adam",
        "rmsprop",
    ]
    assert optimizer_family(torch.optim.Adagrad) is None
    assert optimizer_family(torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=0.1)) == "sgd"


def test_switch_sgd_to_lars_carries_momentum_buffers():
    model = _model()
    old = build_optimizer(
        "sgd", param_groups(model, lr=slice(1e-3, 1e-2), weight_decay=0.1), lr=0.01, momentum=0.85
    )
    _train(old, model)
    buffers = {p: old.state[p]["momentum_buffer"] for p in model.parameters()}
    new = switch_optimizer(old, "lars")
    assert type(new) is LARS
    assert all(new.state[p]["momentum_buffer"] is buffers[p] for p in model.parameters())
    assert [g["lr"] for g in new.param_groups] == [g["lr"] for g in old.param_groups]
    assert [g["weight_decay"] for g in new.param_groups] == [g["weight_decay"] for g in old.param_groups]
    assert [g["name"] for g in new.param_groups] == [g["name"] for g in old.param_groups]
    assert {g["momentum"] for g in new.param_groups} == {0.85}
    assert "dampening" not in new.param_groups[0]  # SGD's own hyperparameters are not carried
    _train(new, model)


def test_switch_rmsprop_to_sgd_starts_fresh_and_keeps_momentum_value():
    model = _model()
    old = build_optimizer("rmsprop", model, lr=0.01, momentum=0.7)
    _train(old, model)
    new = switch_optimizer(old, "sgd", lr=0.05)
    assert len(new.state) == 0
    assert {g["lr"] for g in new.param_groups} == {0.05}
    assert {g["momentum"] for g in new.param_groups} == {0.7}


def test_switch_sgd_to_adam_gives_beta1_from_momentum_and_fresh_state():
    model = _model()
    old = build_optimizer("sgd", model, lr=0.01, momentum=0.9)
    _train(old, model)
    new = switch_optimizer(old, "adam")
    assert len(new.state) == 0 and new.param_groups[0]["betas"] == (0.9, 0.999)
    plain = build_optimizer("sgd", model, lr=0.01, momentum=0.0)
    assert switch_optimizer(plain, "adam").param_groups[0]["betas"] == (0.9, 0.999)


def test_switch_adam_to_lamb_carries_moments_and_step():
    model = _model()
    old = build_optimizer("adam", model, lr=0.01)
    _train(old, model, steps=3)
    first = next(iter(model.parameters()))
    exp_avg = old.state[first]["exp_avg"]
    new = switch_optimizer(old, "lamb")
    assert new.state[first]["exp_avg"] is exp_avg
    assert new.state[first]["step"].item() == 3 and new.state[first]["step"].device.type == "cpu"
    _train(new, model)
    assert new.state[first]["step"].item() == 5
    fresh = switch_optimizer(old, "lamb", carry_state=False)
    assert len(fresh.state) == 0


def test_switch_keeps_extra_group_keys_and_state_dict_works():
    model = _model()
    groups = param_groups(model)
    groups[0]["tag"] = "backbone"
    new = switch_optimizer(build_optimizer("adamw", groups), "sgd")
    assert new.param_groups[0]["tag"] == "backbone"
    _train(new, model)
    again = build_optimizer("sgd", param_groups(model))
    again.load_state_dict(new.state_dict())
    assert again.param_groups[0]["tag"] == "backbone"


def test_register_optimizer():
    try:
        entry = register_optimizer("adagrad", torch.optim.Adagrad)
        assert entry.momentum_key is None and entry.cls.__name__ == "AdagradW"
        assert type(build_optimizer("adagrad", _model(), momentum=0.9)).__name__ == "AdagradW"
        with pytest.raises(ValueError, match="family must be one of"):
            register_optimizer("bad", torch.optim.Adagrad, family="adagrad")
    finally:
        OPTIMIZERS.pop("adagrad", None)


@pytest.mark.parametrize(
    ("first", "second", "kwargs"),
    [("adamw", "adam", {"amsgrad": True}), ("rmsprop", "rmsprop", {"centered": True, "momentum": 0.9})],
)
def test_switch_fills_state_the_new_variant_needs(first, second, kwargs):
    model = _model()
    old = build_optimizer(first, model, lr=0.01)
    _train(old, model)
    new = switch_optimizer(old, second, **kwargs)
    _train(new, model)
    assert all(torch.isfinite(p).all() for p in model.parameters())
