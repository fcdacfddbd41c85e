"""param_groups: no-decay split, layer groups, discriminative scales and the fallbacks."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from epochal.optim import GroupRule, build_optimizer, get_layer_groups, lr_scales, param_groups, split_by_rules


class Grouped(nn.Module):
    """A small model that exposes layer groups, as epochal's models do."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 4, 3, bias=False), nn.BatchNorm2d(4))
        self.body = nn.Sequential(nn.Conv2d(4, 4, 3), nn.GroupNorm(2, 4))
        self.head = nn.Linear(4, 2)
        self.scale = nn.Parameter(torch.ones(()))  # outside every layer group

    def layer_groups(self) -> list[nn.Module]:
        return [self.stem, self.body, self.head]


def _ids(tensors):
    return {id(t) for t in tensors}


def test_split_and_scales():
    model = Grouped()
    groups = param_groups(model, weight_decay=0.05, lr=slice(1e-4, 1e-2))
    names = [g["name"] for g in groups]
    assert names == ["group0", "group0.no_decay", "group1", "group1.no_decay", "group2", "group2.no_decay"]
    by_name = {g["name"]: g for g in groups}
    assert _ids(by_name["group0"]["params"]) == {id(model.stem[0].weight)}
    assert _ids(by_name["group0.no_decay"]["params"]) == _ids(model.stem[1].parameters())
    assert _ids(by_name["group1.no_decay"]["params"]) == {
        id(model.body[0].bias),
        *map(id, model.body[1].parameters()),
    }
    assert _ids(by_name["group2.no_decay"]["params"]) == {id(model.head.bias), id(model.scale)}
    assert [g["lr_scale"] for g in groups] == pytest.approx([1e-2, 1e-2, 1e-1, 1e-1, 1, 1])
    assert [g["lr"] for g in groups] == pytest.approx([1e-4, 1e-4, 1e-3, 1e-3, 1e-2, 1e-2])
    assert [g["weight_decay"] for g in groups] == [0.05, 0.0] * 3
    assert [g["layer_group"] for g in groups] == [0, 0, 1, 1, 2, 2]
    assert [g["norm_or_bias"] for g in groups] == [False, True] * 3
    every = [p for g in groups for p in g["params"]]
    assert len(every) == len(set(map(id, every))) == len(list(model.parameters()))


def test_decay_norm_and_bias_on_request():
    groups = param_groups(Grouped(), weight_decay=0.1, decay_norm_and_bias=True)
    assert {g["wd_scale"] for g in groups} == {1.0}
    assert {g["weight_decay"] for g in groups} == {0.1}


def test_frozen_parameters_are_kept():
    model = Grouped()
    model.stem.requires_grad_(False)
    assert sum(len(g["params"]) for g in param_groups(model)) == len(list(model.parameters()))


def test_shared_parameters_go_to_their_first_group():
    shared = nn.Linear(3, 3)
    model = nn.Module()
    model.a, model.b = shared, nn.Sequential(shared, nn.Linear(3, 1))
    groups = param_groups(model, layer_groups=[model.a, model.b])
    assert _ids(groups[0]["params"]) == {id(shared.weight)}
    assert all(id(shared.weight) not in _ids(g["params"]) for g in groups[2:])


def test_fallback_layer_groups_are_body_and_head():
    model = nn.Sequential(
        nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 4), nn.Dropout(), nn.Linear(4, 2), nn.Softmax(-1)
    )
    body, head = get_layer_groups(model)
    assert head is model[4]
    assert _ids(body.parameters()) == _ids([*model[0].parameters(), *model[2].parameters()])
    assert len(get_layer_groups(nn.Linear(2, 2))) == 1
    compiled_like = nn.Module()
    compiled_like._orig_mod = Grouped()
    assert get_layer_groups(compiled_like)[0] is compiled_like._orig_mod.stem


def test_lr_scales_rules():
    assert lr_scales(slice(1e-4, 1e-2), 3) == pytest.approx((1e-2, 1e-1, 1.0))
    assert lr_scales(slice(1e-3), 4) == (0.1, 0.1, 0.1, 1.0)  # fastai: earlier groups at hi/10
    assert lr_scales(slice(1e-4, 1e-2), 1) == (1.0,)
    assert lr_scales(0.1, 2) == (1.0, 1.0)
    assert lr_scales([1e-3, 2e-3, 4e-3], 3) == pytest.approx((0.25, 0.5, 1.0))


@pytest.mark.parametrize(
    ("lr", "n", "message"),
    [
        (slice(1e-4, 0), 3, "slice stop"),
        (slice(-1, 1e-2), 3, "slice start"),
        ([1e-3, 1e-2], 3, "gives 2 per-group values but the model has 3"),
        ([1e-3, 0.0], 2, "the last group's lr"),
        (slice(1e-4, 1e-2), 0, "n_groups must be >= 1"),
    ],
)
def test_lr_scales_errors(lr, n, message):
    with pytest.raises(ValueError, match=message):
        lr_scales(lr, n)


def test_param_groups_errors():
    with pytest.raises(ValueError, match="weight_decay must be a finite value >= 0"):
        param_groups(Grouped(), weight_decay=-1)
    with pytest.raises(TypeError, match=r"layer_groups\[1\] is int"):
        param_groups(Grouped(), layer_groups=[nn.Linear(1, 1), 3])
    with pytest.raises(ValueError, match="has no parameters"):
        param_groups(nn.ReLU())


# ----------------------------------------------------------------------------------------- group rules
def test_groups_record_parameter_names():
    model = Grouped()
    names = dict(model.named_parameters())
    for group in param_groups(model):
        assert [id(names[n]) for n in group["param_names"]] == [id(p) for p in group["params"]]


def test_rules_move_matching_parameters_into_groups_of_their_own():
    model = Grouped()
    rules = [
        GroupRule("head.weight", lr_scale=10.0, wd_scale=0.5, momentum=0.85, muon=False, name="head"),
        GroupRule(("*.bias", "scale"), wd_scale=1.0, train_epochs=3),
        GroupRule("head.*", lr_scale=99.0),  # head.bias: the earlier bias rule wins
    ]
    with pytest.raises(ValueError, match=r"rule\(s\) \[\('head.\*',\)\] match no parameter"):
        param_groups(model, weight_decay=0.1, lr=0.2, rules=rules)
    groups = param_groups(model, weight_decay=0.1, lr=0.2, rules=rules[:2])
    by_name = {g["name"]: g for g in groups}
    head = by_name["group2.head"]
    assert head["param_names"] == ["head.weight"] and "group2" not in by_name  # emptied groups go
    assert (head["lr"], head["lr_scale"], head["weight_decay"], head["wd_scale"]) == pytest.approx((2.0, 10, 0.05, 0.5))
    assert (head["momentum"], head["muon"], head["layer_group"]) == (0.85, False, 2)
    biases = by_name["group2.no_decay.rule1"]
    assert sorted(biases["param_names"]) == ["head.bias", "scale"]
    assert (biases["weight_decay"], biases["train_epochs"], biases["lr"]) == pytest.approx((0.1, 3, 0.2))
    assert by_name["group1.no_decay.rule1"]["param_names"] == ["body.0.bias", "body.1.bias"]  # per layer group
    every = [p for g in groups for p in g["params"]]
    assert len(every) == len(set(map(id, every))) == len(list(model.parameters()))
    again = split_by_rules(groups, rules[:2])  # a second pass changes nothing
    summary = lambda gs: [(g["name"], g["lr"], g["param_names"]) for g in gs]  # noqa: E731
    assert summary(again) == summary(groups)


def test_build_optimizer_applies_rules_to_the_learners_groups():
    model = Grouped()
    rules = [GroupRule("head.*", lr_scale=4.0)]
    optimizer = build_optimizer("sgd", param_groups(model, lr=0.1), rules=rules)
    head = [g for g in optimizer.param_groups if g["name"].endswith("rule0")]
    assert {n for g in head for n in g["param_names"]} == {"head.weight", "head.bias"}
    assert [g["lr"] for g in head] == pytest.approx([0.4, 0.4])
    with pytest.raises(ValueError, match="has no 'param_names'"):
        build_optimizer("sgd", [{"params": list(model.parameters())}], rules=rules)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"params": ""}, "non-empty glob"),
        ({"params": "x", "lr_scale": -1.0}, "lr_scale must be a finite value >= 0"),
        ({"params": "x", "momentum": 1.0}, "momentum must be < 1"),
        ({"params": "x", "train_epochs": 0}, "train_epochs must be > 0"),
    ],
)
def test_bad_rules_are_named(kwargs, message):
    with pytest.raises(ValueError, match=message):
        GroupRule(**kwargs)
