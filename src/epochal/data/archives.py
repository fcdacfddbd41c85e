"""Tar extraction that cannot write outside its destination, whatever tarfile's own filters do.

tarfile's ``data`` filter checks each member's path with ``os.path.realpath`` against what is
already on disk; archives that build long symlink chains defeat that check (CVE-2025-4517 and
its relatives, present in the Python versions epochal supports). Here the archive is checked as
a whole before anything is written: every member's path and every link target is resolved
component by component against the links of the archive itself (a model of the tree, so no
path length limit and no disk state is involved); a member or link that leaves the destination,
a device, a FIFO, and a link that replaces an earlier member are refused. Then members are written one by
one through directory file descriptors opened with ``O_NOFOLLOW``, directories and files first
and symlinks last, so no write can pass through a link even if the model were wrong. A refused
archive leaves nothing behind; a failed extraction removes what it had written.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tarfile
from pathlib import Path, PurePosixPath

__all__ = ["UnsafeArchiveError", "safe_extract"]

#: Symlinks followed while resolving one path before it counts as a loop (Linux's ELOOP limit).
_MAX_LINK_HOPS = 40


class UnsafeArchiveError(ValueError):
    """An archive has members that would be written outside the destination.

    Attributes:
        members: the offending member names.
    """

    def __init__(self, archive: str, members: list[str], reason: str = "members escape the destination folder"):
        self.members = members
        shown = [name if len(name) <= 120 else name[:100] + f"...({len(name)} characters)" for name in members[:20]]
        super().__init__(f"refusing to extract {archive!r}: {reason}: {shown}; nothing was extracted")


class _Escape(Exception):
    """A path leaves the destination, or its links loop (internal to the archive model)."""


class _Tree:
    """The archive's symlinks, by their canonical path inside the destination (a tuple of parts)."""

    def __init__(self) -> None:
        self.links: dict[tuple[str, ...], str] = {}

    def resolve(self, start: tuple[str, ...], relative: str, follow_last: bool) -> tuple[str, ...]:
        """The canonical parts of ``relative`` taken from folder ``start``, following the archive's links.

        Raises:
            _Escape: some step leaves the destination, or more than 40 links are followed.
        """
        return tuple(self._walk(list(start), relative, follow_last, [0]))

    def _walk(self, current: list[str], relative: str, follow_last: bool, hops: list[int]) -> list[str]:
        if PurePosixPath(relative).is_absolute():
            raise _Escape
        parts = [p for p in relative.split("/") if p not in ("", ".")]
        for index, part in enumerate(parts):
            if part == "..":
                if not current:
                    raise _Escape
                current.pop()
                continue
            current.append(part)
            target = self.links.get(tuple(current))
            if target is not None and (follow_last or index < len(parts) - 1):
                hops[0] += 1  # counted over the whole lookup, as the kernel does: no exponential chains
                if hops[0] > _MAX_LINK_HOPS:
                    raise _Escape
                current = self._walk(current[:-1], target, True, hops)
        return current


def _check_member(tree: _Tree, seen: dict, member: tarfile.TarInfo) -> tuple[str, ...]:
    """The canonical parts of a member after checking it against the archive so far.

    Raises:
        _Escape: the member is unsafe.
    """
    name = PurePosixPath(member.name)
    is_link = member.issym() or member.islnk()
    if name.is_absolute() or ".." in name.parts or not (member.isfile() or member.isdir() or is_link):
        raise _Escape  # absolute, parent steps, devices, FIFOs and unknown types
    parts = tree.resolve((), member.name, follow_last=False)
    if not parts and not member.isdir():
        raise _Escape  # an empty name would replace the destination itself
    if seen.get(parts) == "link" or (is_link and parts in seen):
        raise _Escape  # replacing a link, or by a link, is how chains are re-pointed
    if member.issym():
        tree.resolve(parts[:-1], member.linkname, follow_last=True)
    elif member.islnk():
        target = tree.resolve((), member.linkname, follow_last=True)
        if seen.get(target) != "file" or target != tuple(p for p in member.linkname.split("/") if p not in ("", ".")):
            raise _Escape  # only to a regular file extracted before it, named without links
    return parts


def _plan(tar: tarfile.TarFile) -> tuple[list[tuple[tarfile.TarInfo, tuple[str, ...]]], list[str]]:
    """``[(member, canonical parts)]`` to write in order, and the names of unsafe members."""
    tree, plan, bad = _Tree(), [], []
    seen: dict[tuple[str, ...], str] = {}
    for member in tar.getmembers():
        try:
            parts = _check_member(tree, seen, member)
        except _Escape:
            bad.append(member.name)
            continue
        for depth in range(len(parts)):  # folders made on the way may not become links later
            seen.setdefault(parts[:depth], "dir")
        if member.issym():
            tree.links[parts] = member.linkname
        seen[parts] = "link" if member.issym() else "file" if member.isfile() or member.islnk() else "dir"
        plan.append((member, parts))
    for member, parts in plan:  # a later link can re-point an earlier one: check them all in the end
        if member.issym():
            try:
                tree.resolve(parts[:-1], member.linkname, follow_last=True)
            except _Escape:
                bad.append(member.name)
    return plan, bad


class _Writer:
    """Writes planned members through folder descriptors walked without following any link."""

    _FOLDER = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | getattr(os, "O_NOFOLLOW", 0)  # used on POSIX only

    def __init__(self, tar: tarfile.TarFile, root_fd: int):
        self.tar, self.root_fd = tar, root_fd
        self._cached: tuple[tuple[str, ...], int] | None = None  # the last folder: members come grouped

    def folder(self, parts: tuple[str, ...]) -> int:
        if self._cached is not None and self._cached[0] == parts:
            return self._cached[1]
        self.close()
        fd = os.dup(self.root_fd)
        try:
            for part in parts:
                with contextlib.suppress(FileExistsError):
                    os.mkdir(part, 0o755, dir_fd=fd)
                child = os.open(part, self._FOLDER, dir_fd=fd)
                os.close(fd)
                fd = child
        except BaseException:
            os.close(fd)
            raise
        self._cached = (parts, fd)
        return fd

    def close(self) -> None:
        if self._cached is not None:
            os.close(self._cached[1])
            self._cached = None

    def file(self, member: tarfile.TarInfo, parts: tuple[str, ...]) -> None:
        source = self.tar.extractfile(member)  # a hard link reads its target's bytes: extracted as a copy
        folder = self.folder(parts[:-1])
        with contextlib.suppress(FileNotFoundError):
            os.unlink(parts[-1], dir_fd=folder)  # a later member of the same name replaces the file
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
        with os.fdopen(os.open(parts[-1], flags, 0o600, dir_fd=folder), "wb") as handle:
            shutil.copyfileobj(source, handle, 1 << 20)
            # the data filter's modes: no setuid/setgid/sticky, no group/other write, owner rw
            os.fchmod(handle.fileno(), (member.mode & 0o755) | 0o600)
            os.utime(handle.fileno(), (member.mtime, member.mtime))

    def extract(self, plan: list[tuple[tarfile.TarInfo, tuple[str, ...]]]) -> None:
        try:
            for member, parts in plan:
                if member.isdir():
                    self.folder(parts)
                elif not member.issym():
                    self.file(member, parts)
            for member, parts in plan:  # links last: no member is ever written through one
                if member.issym():
                    os.symlink(member.linkname, parts[-1], dir_fd=self.folder(parts[:-1]))
        finally:
            self.close()


def safe_extract(archive: str | os.PathLike, dest: str | os.PathLike) -> Path:
    """Extract a tar archive (any compression) into ``dest`` after checking every member.

    Links that stay inside the destination are kept (``a/link -> b.txt`` is fine); a hard link
    is extracted as a copy of its target.

    Raises:
        UnsafeArchiveError: some member would land outside ``dest`` or point outside it, or is a
            device or FIFO (nothing is extracted).
    """
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    with tarfile.open(archive) as tar:
        plan, bad = _plan(tar)
        if bad:
            raise UnsafeArchiveError(str(archive), bad)
        if os.open not in os.supports_dir_fd or not hasattr(os, "O_NOFOLLOW"):
            # Windows: no descriptor-relative writes; every link was checked above, the filter checks again
            tar.extractall(dest, members=[member for member, _ in plan], filter="data")
            return dest
        before = set(os.listdir(dest))
        root_fd = os.open(dest, os.O_RDONLY | os.O_DIRECTORY)
        try:
            _Writer(tar, root_fd).extract(plan)
        except BaseException:
            _remove_new_entries(dest, before)
            raise
        finally:
            os.close(root_fd)
    return dest


def _remove_new_entries(dest: Path, before: set[str]) -> None:
    """Undo a failed extraction: remove what it created at the top of ``dest`` (links are not followed)."""
    for name in set(os.listdir(dest)) - before:
        path = dest / name
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
