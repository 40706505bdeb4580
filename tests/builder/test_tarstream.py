"""The context unpacker: pax/GNU long names, compressed streams, links, digests, hostile names."""

from __future__ import annotations

import bz2
import gzip
import hashlib
import io
import lzma
import os
import tarfile
from pathlib import Path

import pytest

from runtime.api.errors import InvalidArgument
from runtime.build.context import extract
from runtime.build.tarstream import Reader

LONG = "d/" + "x" * 150 + "/" + "y" * 120 + ".txt"


def make_tar(fmt: int = tarfile.PAX_FORMAT) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as tar:
        for name, data in (("a.txt", b"alpha"), (LONG, b"long" * 3000)):
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), 0o640, 1_000_000
            tar.addfile(info, io.BytesIO(data))
        link = tarfile.TarInfo("hard")
        link.type, link.linkname = tarfile.LNKTYPE, "a.txt"
        tar.addfile(link)
        sym = tarfile.TarInfo("sym")
        sym.type, sym.linkname = tarfile.SYMTYPE, "a.txt"
        tar.addfile(sym)
    return buf.getvalue()


@pytest.mark.parametrize("fmt", [tarfile.PAX_FORMAT, tarfile.GNU_FORMAT])
@pytest.mark.parametrize("pack", [bytes, gzip.compress, bz2.compress, lzma.compress])
def test_extract_formats_and_digests(tmp_path: Path, fmt: int, pack: object) -> None:
    data = make_tar(fmt)
    digests = extract(io.BytesIO(pack(data)), tmp_path)  # type: ignore[operator]
    assert (tmp_path / LONG).read_bytes() == b"long" * 3000
    assert digests[LONG] == hashlib.sha256(b"long" * 3000).hexdigest()
    assert digests["hard"] == digests["a.txt"] == hashlib.sha256(b"alpha").hexdigest()
    assert os.stat(tmp_path / "hard").st_ino == os.stat(tmp_path / "a.txt").st_ino
    assert os.readlink(tmp_path / "sym") == "a.txt"
    st = os.stat(tmp_path / "a.txt")
    assert st.st_mode & 0o777 == 0o640 and st.st_mtime == 1_000_000


def test_reader_skips_unread_data() -> None:
    names = [m.name for m in Reader(io.BytesIO(make_tar()))]
    assert names == ["a.txt", LONG, "hard", "sym"]


def test_hostile_and_truncated_streams(tmp_path: Path) -> None:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        info = tarfile.TarInfo("../escape")
        tar.addfile(info, io.BytesIO(b""))
    with pytest.raises(InvalidArgument, match="invalid path"):
        extract(io.BytesIO(buf.getvalue()), tmp_path / "x")
    cut = make_tar()[:515]  # inside a.txt's data
    with pytest.raises(InvalidArgument, match="failed to read the build context"):
        extract(io.BytesIO(cut), tmp_path)
    bad = bytearray(make_tar())
    bad[148:156] = b"0000000\0"  # a wrong header checksum
    with pytest.raises(InvalidArgument, match="failed to read the build context"):
        extract(io.BytesIO(bytes(bad)), tmp_path)


@pytest.mark.skipif(os.geteuid() != 0, reason="chown needs root")
def test_owners_keep_set_id_bits(tmp_path: Path) -> None:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        info = tarfile.TarInfo("bin/su")
        info.size, info.mode, info.uid, info.gid = 2, 0o4755, 7, 8
        tar.addfile(info, io.BytesIO(b"#!"))
    extract(io.BytesIO(buf.getvalue()), tmp_path, owners=True)
    st = os.stat(tmp_path / "bin/su")
    assert (st.st_uid, st.st_gid, st.st_mode & 0o7777) == (7, 8, 0o4755)  # chown, then chmod


def context_stream(members: list[tuple[str, bytes | str | None]]) -> io.BytesIO:
    """A tar of (name, data) files, ``name/`` directories (data None) and ``->`` symlinks."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in members:
            info = tarfile.TarInfo(name.rstrip("/"))
            info.mtime = 1_000_000
            if data is None:
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                tar.addfile(info)
            elif isinstance(data, str):
                info.type, info.linkname = (
                    (tarfile.SYMTYPE, data[2:]) if data.startswith("->") else
                    (tarfile.LNKTYPE, data[2:]))
                tar.addfile(info)
            else:
                info.size, info.mode = len(data), 0o644
                tar.addfile(info, io.BytesIO(data))
    buf.seek(0)
    return buf


@pytest.mark.parametrize("budget", [32 << 20, 10])  # held in memory / spilled to disk
def test_prepare_in_memory_or_on_disk(tmp_path: Path, budget: int,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    from runtime.build import memtree
    from runtime.build.context import prepare

    monkeypatch.setattr(memtree, "BUDGET", budget)
    stream = context_stream([
        ("Dockerfile", b"FROM scratch\n"), (".dockerignore", b"*.log\n!keep.log\n"),
        ("d/f", b"data" * 100), ("d/", None), ("d/g", "=>d/f"), ("s", "->d/f"),
        ("a.log", b"x"), ("keep.log", b"k")])
    ctx = prepare(stream, tmp_path, "")
    try:
        tree = ctx.source()
        assert ctx.dockerfile_text == "FROM scratch\n"
        assert (ctx.tree is not None) == (budget > 10)
        assert tree.listdir("/") == [".dockerignore", "Dockerfile", "d", "keep.log", "s"]
        assert tree.listdir("/d") == ["f", "g"]  # the directory met again kept its file
        f, g = tree.lstat("/d/f"), tree.lstat("/d/g")
        assert f is not None and g is not None and f.st_ino == g.st_ino and f.st_nlink == 2
        assert tree.readlink("/s") == "d/f" and tree.digest("/d/g") == tree.digest("/d/f")
        assert tree.digest("/d/f") == hashlib.sha256(b"data" * 100).hexdigest()
        assert tree.real("/d/f").read_bytes() == b"data" * 100  # written out on demand
        assert os.stat(tree.real("/d/f")).st_mtime == 1_000_000
    finally:
        ctx.close()


def test_prepare_refuses_paths_through_links(tmp_path: Path) -> None:
    from runtime.build.context import prepare

    stream = context_stream([("Dockerfile", b"FROM scratch\n"), ("s", "->/etc"),
                             ("s/passwd", b"owned")])
    with pytest.raises(InvalidArgument, match="crosses a non-directory"):
        prepare(stream, tmp_path, "")
