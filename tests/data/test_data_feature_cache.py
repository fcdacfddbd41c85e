"""The feature cache: digests that change with the weights and inputs, atomic files, damaged files recomputed."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from epochal.data import image_folder_loaders
from epochal.data.feature_cache import cached_features, extract_features, loader_fingerprint, state_digest


def test_state_digest_sees_every_value_name_and_dtype():
    state = {"w": torch.arange(6.0).reshape(2, 3), "n": torch.tensor(3)}
    base = state_digest(state)
    assert state_digest({k: v.clone() for k, v in state.items()}) == base
    changed = {**state, "w": state["w"].clone()}
    changed["w"][1, 2] += 1e-6
    assert state_digest(changed) != base
    assert state_digest({**state, "n": torch.tensor(4)}) != base
    assert state_digest({"v": state["w"], "n": state["n"]}) != base
    assert state_digest({**state, "w": state["w"].double()}) != base


def test_cache_hit_miss_and_damaged_file(tmp_path):
    calls = []

    def compute():
        calls.append(1)
        return {"features": torch.ones(3, 2), "targets": torch.arange(3)}

    first, hit = cached_features(tmp_path, "abc", compute)
    again, hit_again = cached_features(tmp_path, "abc", compute)
    assert (hit, hit_again, len(calls)) == (False, True, 1)
    torch.testing.assert_close(again["features"], first["features"])
    (tmp_path / "abc.pt").write_bytes(b"not a checkpoint")
    repaired, hit = cached_features(tmp_path, "abc", compute)
    assert not hit and len(calls) == 2 and torch.equal(repaired["targets"], torch.arange(3))
    assert cached_features(tmp_path, "abc", compute)[1]  # the damaged file was replaced
    _, hit = cached_features(None, "abc", compute)
    assert not hit and len(calls) == 3


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    root, rng = tmp_path_factory.mktemp("fc"), np.random.default_rng(0)
    for name in ("a", "b"):
        (root / name).mkdir()
        for i in range(6):
            Image.fromarray(rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)).save(root / name / f"{i}.png")
    return root


def test_loader_fingerprint_follows_rows_and_transform(folder, tmp_path):
    data = image_folder_loaders(folder, valid_pct=0.5, batch_size=2, cache_dir=tmp_path, progress=False, augment=[])
    train, valid = data.train, data.valid
    assert loader_fingerprint(train) != loader_fingerprint(valid)  # other rows
    assert loader_fingerprint(valid) == loader_fingerprint(valid.with_rows(valid.rows))
    assert loader_fingerprint(valid) != loader_fingerprint(valid.with_rows(valid.rows, augment=["flip"]))


def test_extract_features_keeps_the_loader_order(folder, tmp_path):
    data = image_folder_loaders(folder, valid_pct=0.5, batch_size=2, cache_dir=tmp_path, progress=False, augment=[])
    features, targets = extract_features(lambda x: x.mean(dim=(2, 3)), data.valid, "cpu")
    expected = torch.cat([x.mean(dim=(2, 3)) for x, _ in data.valid.iter_epoch(0)])
    torch.testing.assert_close(features, expected)
    assert torch.equal(targets, data.valid.targets.cpu())
