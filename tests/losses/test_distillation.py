"""The distillation loss against its closed form (Hinton et al. 2015): both terms, the T^2 factor, alpha's ends."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from epochal.losses import DistillationLoss, distillation_loss, soft_target_loss

STUDENT = [[2.0, -1.0, 0.5], [0.1, 0.2, 3.0]]
TEACHER = [[4.0, 0.0, 1.0], [-2.0, 1.0, 2.0]]
TARGET = [0, 2]


def double(values):
    return torch.tensor(values, dtype=torch.float64)


def _softmax(z):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def closed_form(student, teacher, target, temperature, alpha):
    """alpha * T^2 * mean_i KL(p_t || p_s) + (1 - alpha) * mean_i CE, in float64 numpy."""
    s, t = np.asarray(student, dtype=np.float64), np.asarray(teacher, dtype=np.float64)
    p_t, p_s = _softmax(t / temperature), _softmax(s / temperature)
    kl = (p_t * (np.log(p_t) - np.log(p_s))).sum(axis=1).mean()
    ce = -np.log(_softmax(s)[np.arange(len(target)), target]).mean()
    return alpha * temperature**2 * kl + (1 - alpha) * ce, kl, ce


@pytest.mark.parametrize(("temperature", "alpha"), [(1.0, 0.5), (4.0, 0.9), (2.5, 0.0), (4.0, 1.0), (20.0, 0.3)])
def test_the_loss_equals_the_closed_form(temperature, alpha):
    expected, _, _ = closed_form(STUDENT, TEACHER, TARGET, temperature, alpha)
    s, t, y = double(STUDENT), double(TEACHER), torch.tensor(TARGET)
    assert float(distillation_loss(s, t, y, temperature, alpha)) == pytest.approx(expected, rel=1e-12)
    assert float(distillation_loss(s.float(), t.float(), y, temperature, alpha)) == pytest.approx(expected, rel=1e-4)


def test_alpha_zero_is_the_hard_loss_and_alpha_one_the_soft_term_with_its_t_squared_factor():
    s, t, y = double(STUDENT), double(TEACHER), torch.tensor(TARGET)
    _, kl, ce = closed_form(STUDENT, TEACHER, TARGET, 4.0, 0.0)
    assert float(DistillationLoss(4.0, alpha=0.0)(s, t, y)) == pytest.approx(ce, rel=1e-12)
    assert float(DistillationLoss(4.0, alpha=1.0)(s, t, y)) == pytest.approx(16 * kl, rel=1e-12)
    assert float(soft_target_loss(s, t, 4.0)) == pytest.approx(16 * kl, rel=1e-12)
    assert float(soft_target_loss(t, t, 4.0)) == 0.0


def test_the_hard_term_is_the_given_loss():
    s, t, y = torch.tensor(STUDENT), torch.tensor(TEACHER), torch.tensor(TARGET)
    smooth = torch.nn.CrossEntropyLoss(label_smoothing=0.1)
    loss = DistillationLoss(3.0, 0.25, hard_loss=smooth)(s, t, y)
    assert float(loss) == pytest.approx(0.25 * float(soft_target_loss(s, t, 3.0)) + 0.75 * float(smooth(s, y)))


def test_the_soft_gradient_is_t_times_the_probability_gap():
    """d/ds of T^2 * KL(p_t || p_s) is T * (softmax(s/T) - softmax(t/T)) / N: the T^2 factor keeps the
    soft gradients at the scale of the hard ones whatever T is (Hinton et al., section 2)."""
    temperature = 5.0
    s = torch.tensor(STUDENT, requires_grad=True)
    t = torch.tensor(TEACHER)
    soft_target_loss(s, t, temperature).backward()
    expected = temperature * (F.softmax(s.detach() / temperature, 1) - F.softmax(t / temperature, 1)) / len(s)
    assert torch.allclose(s.grad, expected, atol=1e-6)


def test_low_precision_logits_give_the_float32_value():
    s, t = torch.tensor(STUDENT), torch.tensor(TEACHER)
    low = soft_target_loss(s.bfloat16(), t.bfloat16(), 4.0)
    assert low.dtype == torch.float32
    assert float(low) == pytest.approx(float(soft_target_loss(s.bfloat16().float(), t.bfloat16().float(), 4.0)))


def test_bad_settings_and_shapes_are_refused():
    with pytest.raises(ValueError, match="temperature must be > 0"):
        DistillationLoss(temperature=0)
    with pytest.raises(ValueError, match="alpha must be <= 1"):
        DistillationLoss(alpha=1.5)
    with pytest.raises(ValueError, match=r"teacher logits \(2, 4\) differ"):
        soft_target_loss(torch.zeros(2, 3), torch.zeros(2, 4), 2.0)
