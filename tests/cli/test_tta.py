"""``--tta`` of ``eval``/``predict``: bare flag or view list, told apart from the inputs after it."""

from __future__ import annotations

import pytest

from epochal.cli.tta import _with_tta_values


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["run", "--tta"], ["run", "--tta=flip"]),
        (["run", "--tta", "--json"], ["run", "--tta=flip", "--json"]),
        (["run", "--tta", "flip,translate"], ["run", "--tta=flip,translate"]),
        (["run", "--tta", "flop"], ["run", "--tta=flop"]),  # refused later, with the valid names
        (["run", "--tta=translate"], ["run", "--tta=translate"]),
    ],
)
def test_bare_tta_means_flip_and_a_following_word_is_its_views(args, expected):
    assert _with_tta_values(args) == expected


def test_an_existing_path_after_a_bare_tta_stays_an_input(tmp_path):
    image = tmp_path / "flip"  # even a file named like a view
    image.write_bytes(b"")
    assert _with_tta_values(["run", "--tta", str(image)]) == ["run", "--tta=flip", str(image)]
