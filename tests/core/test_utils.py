"""The shared helpers: suggestions in errors, number and size checks, JSON-safe values, atomic writes."""

import json
import math

import pytest
import torch

from epochal.utils import (
    atomic_write_bytes,
    atomic_write_text,
    check_number,
    did_you_mean,
    json_safe,
    positive_number,
    size_pair,
    to_device,
    unknown_argument_error,
    unknown_name_error,
    write_json_atomic,
)


@pytest.mark.parametrize(
    ("name", "kwargs", "expected"),
    [
        ("acuracy", {}, "; did you mean 'accuracy'?"),
        ("acuracy", {"template": " (did you mean {}?)"}, " (did you mean 'accuracy'?)"),
        ("lr", {}, "; did you mean 'lr_max'?"),  # no close match: a choice the name begins
        ("lr_maximum", {}, "; did you mean 'lr_max'?"),  # a choice that begins the name
        ("zzz", {}, ""),
        ("", {}, ""),
        ("top", {"n": 2, "template": " Did you mean {}?"}, " Did you mean 'top5', 'top1'?"),  # difflib's order
    ],
)
def test_did_you_mean(name, kwargs, expected):
    assert did_you_mean(name, ["accuracy", "lr_max", "top1", "top5"], **kwargs) == expected


def test_error_builders_name_the_value_the_valid_ones_and_the_closest():
    error = unknown_name_error("metric", "acuracy", {"loss", "accuracy"})
    assert str(error) == "unknown metric 'acuracy': valid values are ['accuracy', 'loss']; did you mean 'accuracy'?"
    error = unknown_argument_error("schedule 'sgdr'", "cycles", ["lr", "n_cycles"])
    assert str(error) == "schedule 'sgdr' takes no argument 'cycles' (did you mean 'n_cycles'?); it takes lr, n_cycles"


def test_check_number_and_positive_number():
    assert check_number(3, "x") == 3.0 and isinstance(check_number(3, "x"), float)
    assert check_number(0.0, "x", low=0.0) == 0.0 and check_number(1.0, "x", 0.0, 1.0) == 1.0
    for value in (math.inf, math.nan, "2", True, None):
        with pytest.raises(ValueError, match="x must be a finite number"):
            check_number(value, "x")
    with pytest.raises(ValueError, match=r"x must be > 0.0, got 0.0"):
        check_number(0, "x", low=0.0, low_inclusive=False)
    with pytest.raises(ValueError, match=r"x must be <= 1.0, got 2.0"):
        check_number(2, "x", high=1.0)
    assert positive_number(0.5, "lr") == 0.5
    with pytest.raises(ValueError, match="gamma must be > 0"):
        positive_number(-1, "gamma")
    with pytest.raises(ValueError, match="epochs must be a finite number"):
        positive_number(math.inf, "epochs")


def test_size_pair():
    assert size_pair(32) == (32, 32)
    assert size_pair((24, 32)) == (24, 32) and size_pair([24, 32]) == (24, 32)
    assert size_pair(torch.tensor(8).item()) == (8, 8)
    for bad in (0, -3, (32,), (32, 0), (32.0, 32), True, "32", None):
        with pytest.raises(ValueError, match=r"image_size must be a positive int or \(height, width\), got image_size"):
            size_pair(bad, "image_size")


def test_json_safe_replaces_non_finite_floats_and_keeps_the_rest():
    value = {"a": math.nan, "b": [1.5, math.inf, (2, -math.inf)], 3: "x", "c": None}
    assert json_safe(value) == {"a": None, "b": [1.5, None, [2, None]], "3": "x", "c": None}


def test_atomic_writes_replace_the_whole_file_and_leave_no_temporary(tmp_path):
    path = tmp_path / "sub" / "out.json"
    write_json_atomic(path, {"loss": math.nan, "shape": (3, 4)})
    assert json.loads(path.read_text()) == {"loss": None, "shape": [3, 4]}
    assert path.read_text().endswith("\n") and path.read_text().startswith("{\n  ")  # indented by default
    write_json_atomic(path, [1], indent=None)
    assert path.read_text() == "[1]\n"
    atomic_write_text(path, "héllo")
    assert path.read_bytes() == "héllo".encode()

    def broken(handle):
        handle.write(b"partial")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic_write_bytes(path, broken)
    assert path.read_text() == "héllo"
    assert sorted(p.name for p in path.parent.iterdir()) == ["out.json"]


def test_to_device_keeps_containers_and_applies_the_memory_format():
    images, labels = torch.randn(2, 3, 4, 4), torch.tensor([0, 1])
    moved = to_device({"x": (images, [labels]), "n": 3}, "cpu", memory_format=torch.channels_last)
    assert moved["n"] == 3 and isinstance(moved["x"], tuple) and isinstance(moved["x"][1], list)
    assert moved["x"][0].is_contiguous(memory_format=torch.channels_last)
    assert moved["x"][1][0] is labels  # integer tensors keep their format (no copy on the same device)


def test_host_to_device_on_cpu_is_a_no_copy():
    from epochal.utils import host_to_device

    t = torch.arange(4)
    assert host_to_device(t, "cpu") is t


@pytest.mark.gpu
def test_host_to_device_stages_through_pinned_memory():
    from epochal.utils import host_to_device

    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    t = torch.arange(1000)
    out = host_to_device(t, "cuda")
    assert out.device.type == "cuda" and torch.equal(out.cpu(), t)
