"""Muon: the Newton-Schulz iteration against a reference, torch.optim.Muon, conv filters, the SGD part."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from torch import nn

from epochal.optim import SGDW, Muon, zeropower_via_newtonschulz
from epochal.optim.muon import NS_COEFFICIENTS


def _reference_newtonschulz(g: torch.Tensor, steps: int) -> torch.Tensor:
    """The iteration as written in the Muon post: X <- aX + bAX + cA^2X, A = XX^T, on the wide side."""
    a, b, c = NS_COEFFICIENTS
    x = g.double()
    tall = x.shape[0] > x.shape[1]
    x = x.T if tall else x
    x = x / x.norm()
    for _ in range(steps):
        gram = x @ x.T
        x = a * x + b * gram @ x + c * gram @ gram @ x
    return x.T if tall else x


@pytest.mark.parametrize("shape", [(8, 20), (20, 8), (16, 16)])
@pytest.mark.parametrize("steps", [3, 5])
def test_newtonschulz_is_the_reference_iteration(shape, steps):
    g = torch.randn(shape, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    ours = zeropower_via_newtonschulz(g, steps, dtype=torch.float64)
    assert ours.shape == shape and ours.dtype == torch.float64
    torch.testing.assert_close(ours, _reference_newtonschulz(g, steps), rtol=1e-9, atol=1e-12)


def test_newtonschulz_approximates_the_polar_factor():
    g = torch.randn(32, 64, generator=torch.Generator().manual_seed(1))
    u, _, vh = torch.linalg.svd(g, full_matrices=False)
    ortho = zeropower_via_newtonschulz(g, 5, dtype=torch.float32)
    singular = torch.linalg.svdvals(ortho)
    assert 0.5 < singular.min() and singular.max() < 1.3  # "US'V^T with S' near 1", not exactly 1
    cosine = (ortho * (u @ vh)).sum() / (ortho.norm() * (u @ vh).norm())
    assert cosine > 0.97
    # scale-free: only the direction of the input matters
    torch.testing.assert_close(zeropower_via_newtonschulz(g * 1e3, 5, dtype=torch.float32), ortho)


def test_newtonschulz_rejects_non_matrices():
    for shape in [(3,), (2, 3, 4, 5)]:
        with pytest.raises(ValueError, match="needs a 2-D matrix or a 3-D batch"):
            zeropower_via_newtonschulz(torch.randn(shape))


@pytest.mark.parametrize("shape", [(3, 8, 20), (3, 20, 8)])
def test_a_batch_of_matrices_is_each_matrix_on_its_own(shape):
    scales = torch.tensor([1.0, 10.0, 0.1])[:, None, None]  # each matrix is normalised on its own
    batch = torch.randn(shape, generator=torch.Generator().manual_seed(6)) * scales
    together = zeropower_via_newtonschulz(batch, 3, dtype=torch.float64)
    for matrix, result in zip(batch, together, strict=True):
        torch.testing.assert_close(result, zeropower_via_newtonschulz(matrix, 3, dtype=torch.float64))


def test_same_shaped_filters_of_different_groups_step_as_if_alone():
    torch.manual_seed(0)
    weights = [nn.Parameter(torch.randn(6, 4, 3, 3)) for _ in range(3)] + [nn.Parameter(torch.randn(6, 2, 3, 3))]
    alone = [nn.Parameter(w.detach().clone()) for w in weights]
    groups = [{"params": weights[:2]}, {"params": weights[2:], "lr": 0.05, "momentum": 0.5}]
    together = Muon(groups, lr=0.1, momentum=0.9, normalize_weights=True, weight_decay=0.1, ns_dtype="float64")
    settings = [{"lr": 0.1, "momentum": 0.9}] * 2 + [{"lr": 0.05, "momentum": 0.5}] * 2
    separate = [Muon([w], normalize_weights=True, weight_decay=0.1, ns_dtype="float64", **kw)
                for w, kw in zip(alone, settings)]
    gen = torch.Generator().manual_seed(8)
    for _ in range(3):
        grads = [torch.randn(w.shape, generator=gen) for w in weights]
        for w, v, g in zip(weights, alone, grads):
            w.grad, v.grad = g.clone(), g.clone()
        together.step()
        for opt in separate:
            opt.step()
    for w, v in zip(weights, alone, strict=True):
        torch.testing.assert_close(w, v)


@pytest.mark.skipif(not hasattr(torch.optim, "_muon"), reason="torch has no Muon")
def test_newtonschulz_matches_torch_in_bfloat16():
    from torch.optim._muon import _zeropower_via_newtonschulz

    g = torch.randn(24, 40, generator=torch.Generator().manual_seed(2))
    for matrix in (g, g.T):
        torch.testing.assert_close(
            zeropower_via_newtonschulz(matrix, 5), _zeropower_via_newtonschulz(matrix, NS_COEFFICIENTS, 5, 1e-7)
        )


def _losses(model, optimizer, steps=4, seed=3):
    gen = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        optimizer.zero_grad()
        x = torch.randn(16, 12, generator=gen)
        model(x).square().mean().backward()
        optimizer.step()


@pytest.mark.skipif(not hasattr(torch.optim, "Muon"), reason="torch has no torch.optim.Muon")
@pytest.mark.parametrize(("nesterov", "adjust"), [(True, None), (False, "match_rms_adamw")])
def test_two_dimensional_parameters_take_torch_muons_steps(nesterov, adjust):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(12, 30, bias=False), nn.Tanh(), nn.Linear(30, 5, bias=False))
    twin = copy.deepcopy(model)
    settings = {"lr": 0.05, "momentum": 0.9, "nesterov": nesterov, "weight_decay": 0.1, "adjust_lr_fn": adjust}
    _losses(model, Muon(model.parameters(), ns_dtype="bfloat16", **settings))
    _losses(twin, torch.optim.Muon(twin.parameters(), **settings))
    for ours, theirs in zip(model.parameters(), twin.parameters(), strict=True):
        torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-6)


def test_conv_filters_step_along_the_orthogonalised_flattened_momentum():
    conv = nn.Conv2d(3, 4, 3, bias=False)
    start = conv.weight.detach().clone()
    grad = torch.randn_like(start)
    conv.weight.grad = grad.clone()
    Muon([conv.weight], lr=0.1, momentum=0.6, nesterov=True, ns_steps=3, ns_dtype="float32").step()
    nesterov = grad.lerp((1 - 0.6) * grad, 0.6)  # first step: buffer = (1 - momentum) * grad
    ortho = zeropower_via_newtonschulz(nesterov.reshape(4, -1), 3, dtype=torch.float32)
    expected = start - 0.1 * ortho.view(4, 3, 3, 3)
    torch.testing.assert_close(conv.weight.detach(), expected)


def test_normalised_weights_have_norm_sqrt_out_and_ignore_weight_decay():
    torch.manual_seed(0)
    weights = [nn.Parameter(torch.randn(8, 3, 3, 3) * 5) for _ in range(2)]
    optimizers = [Muon([w], lr=0.0, normalize_weights=True, weight_decay=wd) for w, wd in zip(weights, (0.0, 0.5))]
    for _ in range(2):
        for w, opt in zip(weights, optimizers):
            w.grad = torch.ones_like(w)
            opt.step()
    assert weights[0].norm().item() == pytest.approx(math.sqrt(8), rel=1e-6)
    lr_weights = [nn.Parameter(torch.randn(8, 27, generator=torch.Generator().manual_seed(4))) for _ in range(2)]
    opts = [Muon([w], lr=0.1, normalize_weights=True, weight_decay=wd) for w, wd in zip(lr_weights, (0.0, 0.5))]
    for w, opt in zip(lr_weights, opts):
        w.grad = torch.ones_like(w)
        opt.step()
    torch.testing.assert_close(lr_weights[0], lr_weights[1])


def test_other_parameters_take_nesterov_sgd_with_decoupled_decay():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(12, 6), nn.LayerNorm(6), nn.Linear(6, 3))
    twin = copy.deepcopy(model)
    flat = [p for p in model.parameters() if p.ndim < 2]
    head = [model[2].weight]
    muon = Muon(
        [{"params": [model[0].weight]}, {"params": flat, "momentum": 0.85},
         {"params": head, "muon": False, "momentum": 0.85}],
        lr=0.05, momentum=0.6, weight_decay=0.01,
    )
    reference_flat = [p for p in twin.parameters() if p.ndim < 2]
    sgd = SGDW([{"params": reference_flat}, {"params": [twin[2].weight]}], lr=0.05, momentum=0.85, nesterov=True,
               weight_decay=0.01)
    twin_muon = Muon([twin[0].weight], lr=0.05, momentum=0.6, weight_decay=0.01)
    gen = torch.Generator().manual_seed(5)
    for _ in range(4):
        x = torch.randn(16, 12, generator=gen)
        for net, opts in ((model, [muon]), (twin, [sgd, twin_muon])):
            for opt in opts:
                opt.zero_grad()
            net(x).square().mean().backward()
            for opt in opts:
                opt.step()
    for ours, theirs in zip(model.parameters(), twin.parameters(), strict=True):
        torch.testing.assert_close(ours, theirs)


def test_state_dict_resumes_exactly():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(12, 8), nn.Linear(8, 3))
    resumed_model = copy.deepcopy(model)
    settings = {"lr": 0.05, "momentum": 0.8, "ns_steps": 3, "normalize_weights": True}
    optimizer = Muon(model.parameters(), **settings)
    _losses(model, optimizer, steps=2)
    state = copy.deepcopy(optimizer.state_dict())
    resumed_model.load_state_dict(model.state_dict())
    _losses(model, optimizer, steps=2, seed=7)
    resumed = Muon(resumed_model.parameters(), **settings)
    resumed.load_state_dict(state)
    _losses(resumed_model, resumed, steps=2, seed=7)
    for a, b in zip(model.parameters(), resumed_model.parameters(), strict=True):
        assert torch.equal(a, b)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"ns_dtype": "int8"}, "ns_dtype='int8' is not valid"),
        ({"adjust_lr_fn": "sqrt"}, "adjust_lr_fn='sqrt' is not valid"),
        ({"momentum": 1.0}, r"momentum must be in \[0, 1\)"),
    ],
)
def test_bad_settings_are_named(kwargs, message):
    with pytest.raises(ValueError, match=message):
        Muon([nn.Parameter(torch.ones(2, 2))], **kwargs)


def test_muon_true_on_a_vector_is_an_error():
    with pytest.raises(ValueError, match="muon=True but holds parameters with fewer than 2 dimensions"):
        Muon([{"params": [nn.Parameter(torch.ones(3))], "muon": True, "name": "biases"}])
