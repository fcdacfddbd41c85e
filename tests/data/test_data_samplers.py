"""Samplers: exact validation shares, disjoint random shares, class balancing under DDP."""

from __future__ import annotations

import pytest
import torch

from epochal.data.samplers import BalancedSampler, RandomSampler, SequentialSampler, make_sampler

LABELS = torch.tensor([0] * 30 + [1] * 12 + [2] * 5)


@pytest.mark.parametrize("world_size", [1, 2, 3, 4])
def test_sequential_shares_cover_every_sample_exactly_once(world_size):
    shares = [SequentialSampler(47, rank, world_size).indices() for rank in range(world_size)]
    assert sorted(torch.cat(shares).tolist()) == list(range(47))
    assert [len(SequentialSampler(47, r, world_size)) for r in range(world_size)] == [len(s) for s in shares]


@pytest.mark.parametrize("world_size", [1, 2, 3])
def test_random_shares_are_disjoint_equal_and_change_per_epoch(world_size):
    shares = [RandomSampler(47, seed=1, rank=r, world_size=world_size).indices(0) for r in range(world_size)]
    union = torch.cat(shares)
    assert len(set(union.tolist())) == len(union) == 47 - 47 % world_size
    assert {len(s) for s in shares} == {47 // world_size}
    sampler = RandomSampler(47, seed=1)
    assert torch.equal(sampler.indices(3), RandomSampler(47, seed=1).indices(3))
    assert not torch.equal(sampler.indices(3), sampler.indices(4))


@pytest.mark.parametrize("mode, per_class", [("oversample", 30), ("undersample", 5)])
def test_over_and_undersampling_balance_every_rank(mode, per_class):
    world_size = 2
    shares = [
        BalancedSampler(LABELS, mode, seed=3, rank=r, world_size=world_size).indices(1) for r in range(2)
    ]
    for share in shares:
        counts = torch.bincount(LABELS[share], minlength=3)
        expected = (per_class - per_class % world_size) // world_size
        assert counts.tolist() == [expected] * 3
    if mode == "undersample":  # no repeats needed: ranks hold disjoint samples
        assert not set(shares[0].tolist()) & set(shares[1].tolist())
    single = BalancedSampler(LABELS, mode, seed=3).indices(1)
    assert torch.bincount(LABELS[single]).tolist() == [per_class] * 3
    if mode == "oversample":  # every sample of the minority class appears 6 times
        minority = single[LABELS[single] == 2]
        assert torch.bincount(minority)[42:].tolist() == [6] * 5


def test_weighted_sampling_is_balanced_on_average_and_deterministic():
    sampler = BalancedSampler(LABELS.repeat(40), "weighted", seed=0)
    draw = sampler.indices(0)
    counts = torch.bincount(LABELS.repeat(40)[draw], minlength=3).float()
    assert len(draw) == 47 * 40
    assert (counts / counts.sum() - 1 / 3).abs().max() < 0.04
    assert torch.equal(draw, BalancedSampler(LABELS.repeat(40), "weighted", seed=0).indices(0))


def test_excluded_labels_are_never_drawn_and_bad_arguments_are_explained():
    labels = torch.tensor([0, 0, -1, 1, 1, -1])
    for mode in ("oversample", "undersample", "weighted"):
        draw = BalancedSampler(labels, mode, num_samples=40).indices(0)
        assert not set(draw.tolist()) & {2, 5}
    with pytest.raises(ValueError, match="mode="):
        BalancedSampler(labels, "smote")
    with pytest.raises(ValueError, match="rank=2"):
        RandomSampler(5, rank=2, world_size=2)
    with pytest.raises(ValueError, match="multi-label"):
        BalancedSampler(torch.zeros(4, 3))
    with pytest.raises(ValueError, match="needs labels"):
        make_sampler(4, balance="oversample")
