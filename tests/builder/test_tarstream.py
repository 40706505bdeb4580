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
