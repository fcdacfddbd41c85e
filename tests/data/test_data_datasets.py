"""The data set registry, downloads (offline: file:// URLs and fake openers) and safe extraction."""

from __future__ import annotations

import dataclasses
import io
import pickle
import tarfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import epochal.data.datasets as datasets_module
from epochal.data.datasets import DATASETS, get_dataset
from epochal.data.download import (
    ChecksumError,
    UnsafeArchiveError,
    download_file,
    file_checksum,
    safe_extract,
)

PAYLOAD = bytes(range(256)) * 40


@pytest.fixture
def payload(tmp_path) -> Path:
    path = tmp_path / "source.bin"
    path.write_bytes(PAYLOAD)
    return path


def test_download_from_a_file_url_is_verified(payload, tmp_path):
    checksum = file_checksum(payload, "sha256")
    out = download_file(payload.as_uri(), tmp_path / "out" / "file.bin", checksum)
    assert out.read_bytes() == PAYLOAD
    md5 = file_checksum(payload, "md5")
    assert download_file("file:///nonexistent", out, md5) == out  # a verified copy is not fetched again


def test_checksum_mismatch_deletes_the_download(payload, tmp_path):
    wrong = "sha256:" + "0" * 64
    with pytest.raises(ChecksumError, match="does not match"):
        download_file(payload.as_uri(), tmp_path / "file.bin", wrong)
    assert not (tmp_path / "file.bin").exists() and not (tmp_path / "file.bin.part").exists()
    with pytest.raises(ValueError, match="checksum='crc:1'"):
        download_file(payload.as_uri(), tmp_path / "file.bin", "crc:1")


class _Response:
    def __init__(self, body: bytes, status: int, content_range: str | None = None):
        self._stream, self.status = io.BytesIO(body), status
        self.headers = {"Content-Range": content_range} if content_range else {}

    def read(self, n=-1):
        return self._stream.read(n)

    def getcode(self):
        return self.status

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


class _RangeServer:
    """Serves PAYLOAD honouring Range (or ignoring it), recording the ranges asked for."""

    def __init__(self, honour_range=True, fail_first_after=None):
        self.honour_range, self.fail_first_after, self.ranges = honour_range, fail_first_after, []

    def __call__(self, request, timeout=None):
        header = request.get_header("Range")
        self.ranges.append(header)
        start = int(header.split("=")[1].rstrip("-")) if header else 0
        if self.fail_first_after is not None:
            cut, self.fail_first_after = self.fail_first_after, None
            return _Broken(PAYLOAD[:cut])
        if header and self.honour_range:
            return _Response(PAYLOAD[start:], 206, f"bytes {start}-{len(PAYLOAD) - 1}/{len(PAYLOAD)}")
        return _Response(PAYLOAD, 200)


class _Broken(_Response):
    """Delivers some bytes, then the connection drops."""

    def __init__(self, body):
        super().__init__(body, 200)

    def read(self, n=-1):
        data = self._stream.read(n)
        if not data:
            raise ConnectionResetError("connection reset")
        return data


@pytest.mark.parametrize("honour_range", [True, False])
def test_partial_downloads_resume_or_restart(tmp_path, payload, honour_range):
    dest = tmp_path / "file.bin"
    (tmp_path / "file.bin.part").write_bytes(PAYLOAD[:1000])
    server = _RangeServer(honour_range)
    download_file("https://example.invalid/file.bin", dest, file_checksum(payload), opener=server)
    assert dest.read_bytes() == PAYLOAD
    assert server.ranges == ["bytes=1000-"]


def test_dropped_connection_is_retried_from_where_it_stopped(tmp_path, payload):
    server = _RangeServer(fail_first_after=3000)
    dest = download_file(
        "https://example.invalid/f", tmp_path / "f", file_checksum(payload), opener=server, retry_wait=0
    )
    assert dest.read_bytes() == PAYLOAD
    assert server.ranges == [None, "bytes=3000-"]


def _tar(path: Path, members: dict[str, bytes], links: dict[str, str] | None = None) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        for name, target in (links or {}).items():
            info = tarfile.TarInfo(name)
            info.type, info.linkname = tarfile.SYMTYPE, target
            tar.addfile(info)
    return path


@pytest.mark.parametrize(
    "members, links",
    [
        ({"../evil.txt": b"x"}, None),
        ({"/tmp/evil-absolute.txt": b"x"}, None),
        ({"ok/../../evil.txt": b"x"}, None),
        ({"ok.txt": b"x"}, {"link": "../../outside"}),
        ({"ok.txt": b"x"}, {"abs": "/etc/passwd"}),
    ],
)
def test_unsafe_archives_are_refused_and_nothing_is_written(tmp_path, members, links):
    archive = _tar(tmp_path / "bad.tar.gz", members, links)
    dest = tmp_path / "deep" / "dest"
    with pytest.raises(UnsafeArchiveError) as info:
        safe_extract(archive, dest)
    assert info.value.members
    assert list(dest.iterdir()) == [] and not (tmp_path / "deep" / "evil.txt").exists()


def test_safe_archive_extracts(tmp_path):
    archive = _tar(tmp_path / "good.tar.gz", {"a/b.txt": b"hello"}, {"a/link": "b.txt"})
    safe_extract(archive, tmp_path / "out")
    assert (tmp_path / "out" / "a" / "b.txt").read_bytes() == b"hello"
    assert (tmp_path / "out" / "a" / "link").read_bytes() == b"hello"


def _fake_cifar10(path: Path) -> tuple[Path, np.ndarray]:
    """A CIFAR-10-format archive (python pickles, 3072-byte rows) with 2 images per batch."""
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (12, 3072), dtype=np.uint8)
    files = {"cifar-10-batches-py/batches.meta": pickle.dumps({b"label_names": [b"cat", b"dog"]}, protocol=2)}
    for i in range(5):
        batch = {b"data": pixels[2 * i : 2 * i + 2], b"labels": [0, 1]}
        files[f"cifar-10-batches-py/data_batch_{i + 1}"] = pickle.dumps(batch, protocol=2)
    files["cifar-10-batches-py/test_batch"] = pickle.dumps(
        {b"data": pixels[10:], b"labels": [1, 1]}, protocol=2
    )
    return _tar(path, files), pixels


def test_get_dataset_prepares_cifar_folders_offline(tmp_path, monkeypatch):
    archive, pixels = _fake_cifar10(tmp_path / "fake.tar.gz")
    spec = dataclasses.replace(
        DATASETS["cifar10"], name="fake-cifar10", url=archive.as_uri(), checksum=file_checksum(archive, "md5")
    )
    monkeypatch.setitem(DATASETS, "fake-cifar10", spec)
    train = get_dataset("fake-cifar10", "train", cache_dir=tmp_path / "cache")
    assert sorted(p.name for p in train.iterdir()) == ["cat", "dog"]
    assert len(list((train / "cat").iterdir())) == 5 and len(list((train / "dog").iterdir())) == 5
    first = np.asarray(Image.open(train / "cat" / "00000.png"))
    assert np.array_equal(first, pixels[0].reshape(3, 32, 32).transpose(1, 2, 0))
    test = get_dataset("fake-cifar10", "test", cache_dir=tmp_path / "cache")
    assert len(list((test / "dog").iterdir())) == 2
    assert list((test / "cat").iterdir()) == []  # every class folder exists: the same class indices
    archive.unlink()  # prepared data is reused without the archive or network
    assert get_dataset("fake-cifar10", cache_dir=tmp_path / "cache") == train


def test_pickles_with_code_are_refused(tmp_path, monkeypatch):
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    files = {"cifar-10-batches-py/batches.meta": pickle.dumps(Evil())}
    archive = _tar(tmp_path / "evil.tar.gz", files)
    spec = dataclasses.replace(DATASETS["cifar10"], name="evil", url=archive.as_uri(), checksum=None)
    monkeypatch.setitem(DATASETS, "evil", spec)
    with pytest.raises(pickle.UnpicklingError, match="builtins.print"):
        get_dataset("evil", cache_dir=tmp_path / "cache")
    assert not (tmp_path / "cache" / "evil" / "data").exists()


def test_bundled_mini_and_registry_errors(tmp_path):
    mini = get_dataset("cifar10-mini")
    assert mini == datasets_module.BUNDLED_DIR / "cifar10-mini"
    folders = sorted(p.name for p in mini.iterdir() if p.is_dir())
    assert len(folders) == 10 and all(len(list((mini / f).glob("*.jpg"))) == 200 for f in folders)
    assert {"cifar10", "cifar100", "imagenette"} <= set(DATASETS)
    with pytest.raises(ValueError, match="unknown data set 'mnist'"):
        get_dataset("mnist")
    with pytest.raises(ValueError, match="no split 'test'"):
        get_dataset("imagenette", "test")
    with pytest.raises(FileNotFoundError, match="download=False"):
        get_dataset("cifar100", cache_dir=tmp_path, download=False)


@pytest.mark.realdata
def test_bundled_mini_is_a_byte_identical_subset_of_the_archive(shared_dir):
    mini = get_dataset("cifar10-mini")
    wanted = {f"cifar10/train/{p.parent.name}/{p.name}": p for p in mini.rglob("*.jpg")}
    with tarfile.open(shared_dir / "data" / "cifar10-jpeg-train.tar.gz") as tar:
        for member in tar:
            if member.name in wanted:
                assert tar.extractfile(member).read() == wanted.pop(member.name).read_bytes()
    assert wanted == {}


def test_imagenette_layout_is_prepared_offline(tmp_path, monkeypatch):
    png = io.BytesIO()
    Image.new("RGB", (5, 4), (1, 2, 3)).save(png, format="PNG")
    files = {
        f"imagenette2-160/{split}/n01440764/{i}.JPEG": png.getvalue()
        for split in ("train", "val")
        for i in range(2)
    }
    files["imagenette2-160/noisy_imagenette.csv"] = b"path,noisy_labels_0\n"
    archive = _tar(tmp_path / "imagenette2-160.tgz", files)
    spec = dataclasses.replace(
        DATASETS["imagenette-160"],
        name="fake-nette",
        url=archive.as_uri(),
        checksum=file_checksum(archive, "sha256"),
    )
    monkeypatch.setitem(DATASETS, "fake-nette", spec)
    valid = get_dataset("fake-nette", "valid", cache_dir=tmp_path / "cache")
    assert valid.name == "val" and sorted(p.name for p in (valid / "n01440764").iterdir()) == [
        "0.JPEG",
        "1.JPEG",
    ]
    assert spec.class_names["n01440764"] == "tench"
    assert not (tmp_path / "cache" / "fake-nette" / "data" / "_extract").exists()
