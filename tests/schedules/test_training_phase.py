"""TrainingPhase: validation, learning-rate forms, plain-data round trips."""

from __future__ import annotations

import pytest
import yaml

from epochal.schedules import (
    Cosine,
    Linear,
    NoDecay,
    Polynomial,
    TrainingPhase,
    phase_from_dict,
    phase_to_dict,
)


def test_single_value_is_constant_without_decay():
    phase = TrainingPhase(1, lr=0.1)
    assert (phase.lr_start, phase.lr_end, phase.lr_annealer) == (0.1, 0.1, NoDecay())


def test_pair_defaults_to_linear_and_decaying_value_goes_to_zero():
    assert TrainingPhase(1, lr=(0.1, 0.01)).lr_annealer == Linear()
    phase = TrainingPhase(1, lr=0.1, lr_decay="cosine")
    assert (phase.lr_start, phase.lr_end, phase.lr_annealer) == (0.1, 0.0, Cosine())


def test_fractional_epochs_and_int_epochs_become_float():
    assert TrainingPhase(0.25).epochs == 0.25
    assert isinstance(TrainingPhase(3).epochs, float)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"epochs": 0}, "epochs must be > 0"),
        ({"epochs": -1}, "epochs must be > 0"),
        ({"epochs": float("inf")}, "epochs must be a finite number"),
        ({"epochs": "2"}, "epochs must be a finite number"),
        ({"epochs": 1, "lr": -0.1}, "lr must be >= 0"),
        ({"epochs": 1, "lr": (0.1, 0.01, 0.001)}, r"lr tuple must be \(start, end\)"),
        ({"epochs": 1, "lr": (0.1, 0.01), "lr_decay": "none"}, "keeps it constant"),
        ({"epochs": 1, "lr": 0.1, "lr_decay": "exp"}, "exponential decay of lr needs a start and an end > 0"),
        ({"epochs": 1, "lr": 0.1, "lr_decay": "cosin"}, "did you mean 'cosine'"),
        ({"epochs": 1, "momentum": 1.5}, "momentum must be <= 1"),
        ({"epochs": 1, "momentum_decay": "linear"}, "momentum_decay is set but momentum is None"),
        ({"epochs": 1, "weight_decay": -1e-4}, "weight_decay must be >= 0"),
        ({"epochs": 1, "optimizer": "adamm"}, "did you mean 'adam'"),
        ({"epochs": 1, "image_size": 0}, "image_size must be a positive int"),
        ({"epochs": 1, "lr": slice(1e-5, 1e-3, 2)}, "slice takes no step"),
        ({"epochs": 1, "lr": [1e-3, 0.0]}, "last \\(top\\) value > 0"),
        ({"epochs": 1, "lr": (slice(1e-5, 1e-3), slice(1e-5, 1e-4))}, "equal ratios"),
        ({"epochs": 1, "optimizer_kwargs": [1]}, "optimizer_kwargs must be a dict"),
    ],
)
def test_validation_errors_name_the_argument(kwargs, message):
    with pytest.raises(ValueError, match=message):
        TrainingPhase(**kwargs)


def test_optimizer_of_wrong_type_is_a_type_error():
    with pytest.raises(TypeError, match="optimizer must be a name, an optimizer class or a factory, got 3"):
        TrainingPhase(1, optimizer=3)


def test_discriminative_forms():
    phase = TrainingPhase(1, lr=slice(1e-4, 1e-2))
    assert phase.lr_start == 1e-2
    assert phase.lr_scales(3) == pytest.approx((1e-2, 1e-1, 1.0))
    per_group = TrainingPhase(1, lr=[1e-4, 1e-3, 4e-3])
    assert per_group.lr_start == 4e-3
    assert per_group.lr_scales(3) == pytest.approx((0.025, 0.25, 1.0))
    with pytest.raises(ValueError, match="3 per-group values but the model has 2"):
        per_group.lr_scales(2)
    assert TrainingPhase(1, lr=0.1).lr_scales(4) is None


def test_discriminative_pair_with_equal_ratios_anneals_the_top_value():
    phase = TrainingPhase(1, lr=(slice(1e-5, 1e-3), slice(1e-7, 1e-5)), lr_decay="exp")
    assert (phase.lr_start, phase.lr_end) == (1e-3, 1e-5)
    mixed = TrainingPhase(1, lr=(slice(1e-5, 1e-3), 1e-5), lr_decay="cosine")
    assert mixed.lr_groups == slice(1e-5, 1e-3)


def test_momentum_forms():
    assert TrainingPhase(1, momentum=0.9).momentum_range == (0.9, 0.9)
    assert TrainingPhase(1, momentum=(0.95, 0.85)).momentum_range == (0.95, 0.85)
    assert TrainingPhase(1, momentum=0.9, momentum_decay="cosine").momentum_range == (0.9, 0.0)
    assert TrainingPhase(1).momentum_range is None


YAML_PHASES = """
- epochs: 0.5
  optimizer: sgd
  lr: [1e-3, 0.1]
  momentum: {start: 0.95, end: 0.85}
  weight_decay: 5e-4
  name: warmup
- epochs: 2
  lr: {slice: [1e-5, 1e-3]}
  lr_decay: poly2
  image_size: [128, 160]
  optimizer_kwargs: {eps: 1e-8}
"""


def test_from_yaml_dicts_converts_strings_lists_and_slices():
    first, second = (phase_from_dict(d, f"phases[{i}]") for i, d in enumerate(yaml.safe_load(YAML_PHASES)))
    assert first.lr == (1e-3, 0.1) and first.lr_annealer == Linear()
    assert first.momentum == (0.95, 0.85) and first.weight_decay == 5e-4
    assert second.lr == slice(1e-5, 1e-3) and second.lr_annealer == Polynomial(2.0)
    assert second.image_size == (128, 160)
    assert second.optimizer_kwargs == {"eps": 1e-8}


@pytest.mark.parametrize(
    "phase",
    [
        TrainingPhase(
            0.5,
            optimizer="sgd",
            lr=(1e-3, 0.1),
            momentum=(0.95, 0.85),
            momentum_decay="cosine",
            weight_decay=5e-4,
            name="warmup",
            image_size=(96, 128),
            optimizer_kwargs={"nesterov": True},
        ),
        TrainingPhase(2, lr=slice(1e-5, 1e-3), lr_decay=("polynomial", 0.5), data="cifar10"),
        TrainingPhase(1, lr=slice(1e-3), lr_decay="cosine"),
        TrainingPhase(1, lr=[1e-4, 1e-3], lr_decay="linear"),
        TrainingPhase(1, lr=(slice(1e-5, 1e-3), 1e-5), lr_decay="exp", image_size=64),
        TrainingPhase(1),
    ],
)
def test_round_trip_through_yaml(phase):
    text = yaml.safe_dump(phase_to_dict(phase))
    again = TrainingPhase.from_dict(yaml.safe_load(text))
    assert again == phase
    assert again.lr_annealer == phase.lr_annealer


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (
            {"epochs": 1, "lr_decy": "cosine"},
            r"phases\[3\]: unknown key 'lr_decy' \(did you mean 'lr_decay'\?\)",
        ),
        ({"lr": 0.1}, r"phases\[3\]: missing required key 'epochs'"),
        ({"epochs": 1, "lr": [1, 2, 3]}, r"phases\[3\].lr: a list is a \[start, end\] pair"),
        ({"epochs": 1, "lr": {"slice": [1, 2, 3]}}, r"slice takes \[lo, hi\]"),
        ({"epochs": 1, "lr": {"start": 0.1}}, "needs both 'start' and 'end'"),
        ({"epochs": 1, "momentum": {"begin": 0.9}}, r"phases\[3\].momentum: expected \{start, end\}"),
        ({"epochs": "x"}, r"phases\[3\]: epochs must be a finite number"),
        ([1, 2], "phases\\[3\\] must be a mapping"),
    ],
)
def test_from_dict_errors_name_where_and_key(data, message):
    with pytest.raises(ValueError, match=message):
        phase_from_dict(data, "phases[3]")


def test_to_dict_strict_refuses_non_plain_settings():
    import torch

    phase = TrainingPhase(1, optimizer=torch.optim.SGD, lr=0.1)
    with pytest.raises(ValueError, match="optimizer=.* has no plain-data form"):
        phase_to_dict(phase)
    assert phase_to_dict(phase, strict=False)["optimizer"] == "<torch.optim.sgd.SGD>"


def test_arrays_and_lists_are_normalised_so_phases_compare():
    import numpy as np

    from_array = TrainingPhase(1, lr=np.array([1e-4, 1e-3]), momentum=[0.9, 0.8])
    assert from_array == TrainingPhase(1, lr=[1e-4, 1e-3], momentum=(0.9, 0.8))
    assert from_array.lr == [1e-4, 1e-3] and from_array.momentum == (0.9, 0.8)
