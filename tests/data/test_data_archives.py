"""safe_extract against hostile tar archives built here: nothing may land or point outside the destination."""

from __future__ import annotations

import io
import os
import stat
import tarfile
import zipfile
from pathlib import Path

import pytest

from epochal.data.archives import UnsafeArchiveError, safe_extract


def _add(tar: tarfile.TarFile, name: str, kind: bytes = tarfile.REGTYPE, target: str = "", data: bytes = b"",
         mode: int = 0o644) -> None:
    info = tarfile.TarInfo(name)
    info.type, info.linkname, info.size, info.mode = kind, target, len(data), mode
    tar.addfile(info, io.BytesIO(data) if kind == tarfile.REGTYPE else None)


def _archive(path: Path, members: list[tuple]) -> Path:
    with tarfile.open(path, "w") as tar:
        for member in members:
            _add(tar, *member)
    return path


@pytest.fixture
def box(tmp_path) -> dict[str, Path]:
    """An outer folder holding the destination and a file the attacks aim at."""
    outer = tmp_path / "outer"
    dest = outer / "dest"
    dest.mkdir(parents=True)
    (outer / "flag").write_text("original")
    return {"outer": outer, "dest": dest, "archive": tmp_path / "hostile.tar"}


def _assert_untouched(box) -> None:
    assert sorted(p.name for p in box["outer"].iterdir()) == ["dest", "flag"]
    assert (box["outer"] / "flag").read_text() == "original"
    assert list(box["dest"].iterdir()) == []


def _realpath_limit_members(dest: Path) -> list[tuple]:
    """The CVE-2025-4517 shape: 16 nested long folders reached through one-letter links, a link up
    the chain that realpath() cannot expand (PATH_MAX), then a hard link and files through it."""
    steps = "abcdefghijklmnop"
    component = "d" * ((os.pathconf(dest, "PC_PATH_MAX") - len(str(dest)) - 1) // (len(steps) + 1))
    members, path = [], ""
    for step in steps:
        members.append((os.path.join(path, component), tarfile.DIRTYPE))
        members.append((os.path.join(path, step), tarfile.SYMTYPE, component))
        path = os.path.join(path, component)
    top = os.path.join(*steps, "l" * 254)
    members.append((top, tarfile.SYMTYPE, os.path.join(*[".."] * len(steps))))
    members.append(("escape", tarfile.SYMTYPE, os.path.join(top, "..")))
    members.append(("flaglink", tarfile.LNKTYPE, "escape/flag"))
    members.append(("flaglink", tarfile.REGTYPE, "", b"overwritten"))
    members.append(("escape/newfile", tarfile.REGTYPE, "", b"new"))
    return members


def test_realpath_limit_attack_is_refused(box):
    archive = _archive(box["archive"], _realpath_limit_members(box["dest"]))
    with pytest.raises(UnsafeArchiveError) as info:
        safe_extract(archive, box["dest"])
    assert "escape" in info.value.members and "flaglink" in info.value.members
    _assert_untouched(box)


@pytest.mark.parametrize(
    "members, culprit",
    [
        pytest.param([("x", tarfile.SYMTYPE, "."), ("y", tarfile.SYMTYPE, "x/.."), ("y/evil", tarfile.REGTYPE)],
                     "y", id="x-dot-y-parent-chain"),
        pytest.param([("x", tarfile.SYMTYPE, "sub/y/../.."), ("sub/y", tarfile.SYMTYPE, "."),
                      ("x/evil", tarfile.REGTYPE)], "x", id="later-link-re-points-earlier"),
        pytest.param([("l", tarfile.SYMTYPE, "inside"), ("l", tarfile.SYMTYPE, ".."),
                      ("l/evil", tarfile.REGTYPE)], "l", id="link-replaced-by-link"),
        pytest.param([("d", tarfile.DIRTYPE), ("d", tarfile.SYMTYPE, "..")], "d", id="folder-replaced-by-link"),
        pytest.param([("a", tarfile.SYMTYPE, "b"), ("b", tarfile.SYMTYPE, "a")], "a", id="link-loop"),
        pytest.param([("../evil", tarfile.REGTYPE)], "../evil", id="parent-path"),
        pytest.param([("ok/../../evil", tarfile.REGTYPE)], "ok/../../evil", id="parent-inside-path"),
        pytest.param([("/tmp/epochal-evil-absolute", tarfile.REGTYPE)], "/tmp/epochal-evil-absolute",
                     id="absolute-path"),
        pytest.param([("abs", tarfile.SYMTYPE, "/etc")], "abs", id="absolute-link"),
        pytest.param([("up", tarfile.SYMTYPE, "../flag")], "up", id="link-up"),
        pytest.param([("hard", tarfile.LNKTYPE, "../flag")], "hard", id="hard-link-up"),
        pytest.param([("hard", tarfile.LNKTYPE, "/etc/passwd")], "hard", id="hard-link-absolute"),
        pytest.param([("s", tarfile.SYMTYPE, ".."), ("hard", tarfile.LNKTYPE, "s/flag")], "hard",
                     id="hard-link-through-link"),
        pytest.param([("null", tarfile.CHRTYPE)], "null", id="character-device"),
        pytest.param([("disk", tarfile.BLKTYPE)], "disk", id="block-device"),
        pytest.param([("pipe", tarfile.FIFOTYPE)], "pipe", id="fifo"),
        pytest.param([("", tarfile.SYMTYPE, "..")], "", id="empty-name-link"),
    ],
)
def test_hostile_archives_are_refused_and_leave_nothing(box, members, culprit):
    archive = _archive(box["archive"], members)
    with pytest.raises(UnsafeArchiveError, match="nothing was extracted") as info:
        safe_extract(archive, box["dest"])
    assert culprit in info.value.members
    _assert_untouched(box)


@pytest.mark.timeout(120)
def test_exponential_link_chains_are_refused(box):
    members = [("l0", tarfile.DIRTYPE)]
    for k in range(1, 30):  # each link names the one before twice: 2**29 expansions without a budget
        members.append((f"l{k}", tarfile.SYMTYPE, f"l{k - 1}/../l{k - 1}"))
    archive = _archive(box["archive"], members)
    with pytest.raises(UnsafeArchiveError) as info:  # 40 links per lookup at most, like the kernel
        safe_extract(archive, box["dest"])
    assert "l6" in info.value.members  # the first whose lookup needs more than 40 links
    _assert_untouched(box)


def test_zip_archives_are_not_read(box):
    path = box["archive"].with_suffix(".zip")
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("../evil", b"x")
    with pytest.raises(tarfile.ReadError):
        safe_extract(path, box["dest"])
    _assert_untouched(box)


def test_a_link_already_in_the_destination_is_never_followed(box):
    (box["dest"] / "pre").symlink_to(box["outer"])
    archive = _archive(box["archive"], [("pre/evil", tarfile.REGTYPE, "", b"x")])
    with pytest.raises(OSError):
        safe_extract(archive, box["dest"])
    assert sorted(p.name for p in box["outer"].iterdir()) == ["dest", "flag"]
    assert [p.name for p in box["dest"].iterdir()] == ["pre"]  # what was there before stays


def test_a_failed_extraction_removes_what_it_wrote(box):
    members = [("top/a.txt", tarfile.REGTYPE, "", b"a"), ("top/a.txt/b", tarfile.REGTYPE, "", b"b")]
    archive = _archive(box["archive"], members)
    with pytest.raises(NotADirectoryError):
        safe_extract(archive, box["dest"])
    _assert_untouched(box)


def test_safe_archives_extract_with_links_inside_and_plain_modes(box):
    archive = _archive(box["archive"], [
        ("./", tarfile.DIRTYPE),
        ("./a/b.txt", tarfile.REGTYPE, "", b"hello", 0o4777),
        ("a/link", tarfile.SYMTYPE, "b.txt"),
        ("a/sub", tarfile.SYMTYPE, "../c"),
        ("c/d.txt", tarfile.REGTYPE, "", b"deep"),
        ("a/hard", tarfile.LNKTYPE, "a/b.txt"),
        ("a/sub/e.txt", tarfile.REGTYPE, "", b"through a link inside"),
    ])
    dest = safe_extract(archive, box["dest"])
    assert (dest / "a" / "b.txt").read_bytes() == b"hello"
    assert os.readlink(dest / "a" / "link") == "b.txt" and (dest / "a" / "link").read_bytes() == b"hello"
    assert (dest / "a" / "sub" / "d.txt").read_bytes() == b"deep"
    assert (dest / "c" / "e.txt").read_bytes() == b"through a link inside"
    assert (dest / "a" / "hard").read_bytes() == b"hello" and not (dest / "a" / "hard").is_symlink()
    assert stat.S_IMODE((dest / "a" / "b.txt").stat().st_mode) == 0o755  # no setuid, no group/other write
    assert sorted(p.name for p in box["outer"].iterdir()) == ["dest", "flag"]
