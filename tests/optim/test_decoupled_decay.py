"""Decoupled weight decay: closed forms for SGD and AdamW, and the same meaning for every optimizer."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from epochal.optim import OPTIMIZERS, SGDW, RMSpropW, build_optimizer, decoupled, is_decoupled

LR, WD = 0.1, 0.05


def _param(values):
    return nn.Parameter(torch.tensor(values, dtype=torch.float64))


def _hooked_step(optimizer: torch.optim.Optimizer, param: nn.Parameter) -> list[str]:
    """One step with a unit gradient; returns the calls of the step pre- and post-hooks in order."""
    calls = []
    optimizer.register_step_pre_hook(lambda *args: calls.append("pre"))
    optimizer.register_step_post_hook(lambda *args: calls.append("post"))
    param.grad = torch.ones_like(param)
    optimizer.step()
    return calls


def test_sgdw_matches_closed_form_with_and_without_momentum():
    w0, g = (
        torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64),
        torch.tensor([0.3, 0.1, -0.2], dtype=torch.float64),
    )
    plain = _param(w0.tolist())
    optimizer = SGDW([plain], lr=LR, weight_decay=WD)
    plain.grad = g.clone()
    optimizer.step()
    torch.testing.assert_close(plain.detach(), w0 * (1 - LR * WD) - LR * g)
    heavy = _param(w0.tolist())
    optimizer = SGDW([heavy], lr=LR, momentum=0.9, weight_decay=WD)
    for _ in range(2):
        heavy.grad = g.clone()
        optimizer.step()
    w1 = w0 * (1 - LR * WD) - LR * g
    w2 = w1 * (1 - LR * WD) - LR * (0.9 * g + g)
    torch.testing.assert_close(heavy.detach(), w2)
    assert optimizer.param_groups[0]["weight_decay"] == WD  # restored after the step


def test_adam_is_adamw_and_matches_closed_form():
    w0, g = torch.tensor([1.0, -2.0], dtype=torch.float64), torch.tensor([0.3, -0.1], dtype=torch.float64)
    param = _param(w0.tolist())
    optimizer = build_optimizer("adam", [param], lr=LR, weight_decay=WD, eps=1e-8)
    assert isinstance(optimizer, torch.optim.AdamW)
    param.grad = g.clone()
    optimizer.step()
    # first bias-corrected step: m_hat = g, v_hat = g^2
    torch.testing.assert_close(param.detach(), w0 * (1 - LR * WD) - LR * g / (g.abs() + 1e-8))


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_zero_gradient_steps_shrink_by_one_minus_lr_wd_for_every_optimizer(name):
    decayed, kept = _param([1.0, -3.0, 2.0]), _param([0.5, 0.25])
    groups = [
        {"params": [decayed], "wd_scale": 1.0},
        {"params": [kept], "wd_scale": 0.0, "norm_or_bias": True},
    ]
    optimizer = build_optimizer(name, groups, lr=LR, weight_decay=WD)
    assert optimizer.param_groups[1]["weight_decay"] == 0.0
    for _ in range(3):
        decayed.grad, kept.grad = torch.zeros_like(decayed), torch.zeros_like(kept)
        optimizer.step()
    torch.testing.assert_close(
        decayed.detach(), torch.tensor([1.0, -3.0, 2.0], dtype=torch.float64) * (1 - LR * WD) ** 3
    )
    torch.testing.assert_close(kept.detach(), torch.tensor([0.5, 0.25], dtype=torch.float64))


def test_parameters_without_gradients_are_not_decayed():
    param = _param([1.0, 2.0])
    optimizer = SGDW([param], lr=LR, weight_decay=WD)
    optimizer.step()
    torch.testing.assert_close(param.detach(), torch.tensor([1.0, 2.0], dtype=torch.float64))


def test_decoupled_wraps_any_optimizer_class():
    adagrad_w = decoupled(torch.optim.Adagrad)
    assert adagrad_w is decoupled(torch.optim.Adagrad) and adagrad_w.__name__ == "AdagradW"
    assert decoupled(torch.optim.Adam) is torch.optim.AdamW and decoupled(SGDW) is SGDW
    assert is_decoupled(adagrad_w) and not is_decoupled(torch.optim.SGD)
    param = _param([2.0])
    optimizer = build_optimizer(torch.optim.Adagrad, [param], lr=LR, weight_decay=WD)
    assert isinstance(optimizer, adagrad_w)
    param.grad = torch.zeros_like(param)
    optimizer.step()
    torch.testing.assert_close(param.detach(), torch.tensor([2.0 * (1 - LR * WD)], dtype=torch.float64))
    with pytest.raises(TypeError, match="needs a torch.optim.Optimizer subclass"):
        decoupled(dict)


def test_rmspropw_momentum_can_be_switched_on_later():
    param = _param([1.0, 1.0])
    optimizer = RMSpropW([param], lr=0.01, momentum=0.0)
    param.grad = torch.ones_like(param)
    optimizer.step()
    optimizer.param_groups[0]["momentum"] = 0.9  # what a phase schedule does
    param.grad = torch.ones_like(param)
    optimizer.step()
    assert "momentum_buffer" in optimizer.state[param]
    assert torch.isfinite(param).all()


@pytest.mark.parametrize(
    ("cls", "parent"),
    [
        (SGDW, torch.optim.SGD),
        (RMSpropW, torch.optim.RMSprop),
        (decoupled(torch.optim.Adagrad), torch.optim.Adagrad),
    ],
)
def test_step_hooks_run_once(cls, parent):
    parent([_param([1.0])], lr=LR)  # torch now wraps the parent's step with its hook runner too
    param = _param([1.0])
    assert _hooked_step(cls([param], lr=LR, weight_decay=WD), param) == ["pre", "post"]


def test_state_dict_survives_the_mixin():
    param = _param([1.0])
    optimizer = SGDW([param], lr=LR, momentum=0.9, weight_decay=WD)
    assert _hooked_step(optimizer, param) == ["pre", "post"]
    clone = SGDW([_param([1.0])], lr=LR, momentum=0.9, weight_decay=WD)
    clone.load_state_dict(optimizer.state_dict())
    assert clone.state_dict()["state"][0]["momentum_buffer"].tolist() == [1.0]


@pytest.mark.parametrize("found", [0.0, 1.0])
def test_fused_sgdw_skips_decay_when_gradients_overflowed(found):
    # GradScaler sets grad_scale and found_inf on optimizers with fused kernels, then calls step()
    param = nn.Parameter(torch.tensor([1.0, 2.0]))
    optimizer = SGDW([param], lr=LR, weight_decay=WD, fused=True)
    optimizer.grad_scale = torch.tensor(1.0)
    optimizer.found_inf = torch.tensor(found)
    param.grad = torch.zeros_like(param)
    optimizer.step()
    expected = torch.tensor([1.0, 2.0]) * (1 if found else 1 - LR * WD)
    torch.testing.assert_close(param.detach(), expected)


def test_fused_sgdw_under_a_real_grad_scaler():
    param = nn.Parameter(torch.tensor([1.0, 2.0]))
    optimizer = SGDW([param], lr=LR, weight_decay=WD, fused=True)
    scaler = torch.amp.GradScaler("cpu", init_scale=4.0)
    scaler.scale((param * torch.tensor([float("inf"), 1.0])).sum()).backward()
    scaler.step(optimizer)  # overflow: neither the update nor the decay happens
    scaler.update()
    torch.testing.assert_close(param.detach(), torch.tensor([1.0, 2.0]))
    optimizer.zero_grad()
    scaler.scale(param.sum()).backward()
    scaler.step(optimizer)
    scaler.update()
    torch.testing.assert_close(param.detach(), torch.tensor([1.0, 2.0]) * (1 - LR * WD) - LR)
