"""Every decay formula at start, middle and end, and the spellings parse_decay accepts."""

from __future__ import annotations

import math

import pytest

from epochal.schedules import (
    ANNEALERS,
    Cosine,
    Exponential,
    FunctionAnnealer,
    Linear,
    NoDecay,
    Polynomial,
    parse_decay,
)

START, END = 1.0, 0.1


@pytest.mark.parametrize(
    ("annealer", "expected"),
    [
        (NoDecay(), (1.0, 1.0, 1.0, 1.0)),
        (Linear(), (1.0, 0.775, 0.55, 0.1)),
        (Cosine(), (1.0, 0.1 + 0.45 * (1 + math.cos(math.pi / 4)), 0.55, 0.1)),
        (Exponential(), (1.0, 0.1**0.25, 0.1**0.5, 0.1)),
        (Polynomial(2), (1.0, 0.1 + 0.9 * 0.75**2, 0.1 + 0.9 * 0.25, 0.1)),
        (Polynomial(0.5), (1.0, 0.1 + 0.9 * 0.75**0.5, 0.1 + 0.9 * 0.5**0.5, 0.1)),
    ],
    ids=lambda v: getattr(v, "name", ""),
)
def test_formula_at_start_quarter_middle_end(annealer, expected):
    got = [annealer(START, END, t) for t in (0.0, 0.25, 0.5, 1.0)]
    assert got == pytest.approx(expected, rel=1e-12)


def test_cosine_matches_notebook_formula_exactly():
    for t in (0.1, 0.3, 0.7, 0.9):
        assert Cosine()(3e-2, 1e-4, t) == 1e-4 + (3e-2 - 1e-4) / 2 * (1 + math.cos(math.pi * t))


def test_polynomial_power_one_is_linear():
    for t in (0.0, 0.2, 0.6, 1.0):
        assert Polynomial(1)(2.0, 0.5, t) == pytest.approx(Linear()(2.0, 0.5, t), rel=1e-12)


def test_exponential_rejects_zero_end():
    with pytest.raises(ValueError, match="exponential decay of lr needs a start and an end > 0"):
        Exponential().validate(1.0, 0.0, "lr")


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        (None, NoDecay()),
        ("none", NoDecay()),
        ("constant", NoDecay()),
        ("linear", Linear()),
        ("cos", Cosine()),
        ("COSINE", Cosine()),
        ("exp", Exponential()),
        ("exponential", Exponential()),
        ("poly2", Polynomial(2.0)),
        ("polynomial_0.5", Polynomial(0.5)),
        ("poly(3)", Polynomial(3.0)),
        (("polynomial", 2), Polynomial(2.0)),
        (["poly", 1.5], Polynomial(1.5)),
        ({"type": "polynomial", "power": 4}, Polynomial(4.0)),
        ({"type": "cosine"}, Cosine()),
        (Polynomial(2), Polynomial(2)),
    ],
)
def test_parse_decay_spellings(spec, expected):
    assert parse_decay(spec) == expected


def test_parse_decay_wraps_callables():
    annealer = parse_decay(lambda start, end, t: start * (1 - t) + end * t)
    assert isinstance(annealer, FunctionAnnealer)
    assert annealer(1.0, 3.0, 0.5) == 2.0
    with pytest.raises(ValueError, match="no plain-data form"):
        annealer.to_config()


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("cosin", r"unknown lr_decay 'cosin' \(did you mean 'cosine'\?\)"),
        ("poly", "needs a power"),
        (("linear", 2), "only polynomial decay takes a parameter"),
        (("polynomial", -1), "power must be a finite number > 0"),
        ({"kind": "linear"}, "takes keys 'type' and 'power'"),
        (3, "must be a name"),
    ],
)
def test_parse_decay_errors(spec, message):
    with pytest.raises(ValueError, match=message):
        parse_decay(spec, "lr_decay")


@pytest.mark.parametrize("name", sorted(ANNEALERS))
def test_registry_round_trips_through_config(name):
    annealer = parse_decay(name if name not in ("poly", "polynomial") else f"{name}2")
    assert parse_decay(annealer.to_config()) == annealer
