"""Layer application: overlay whiteouts, links, devices, xattrs, and hostile tars."""

from __future__ import annotations

import io
import os
import stat
import tarfile
from pathlib import Path

import pytest

from runtime.images.difftar import write_tree
from runtime.images.unpack import LayerError, apply_layer, clean_name
from tests.images.layers import Entry, dir_, file, gz, hardlink, symlink, tar_bytes


def apply(entries: list[Entry], root: Path, compress: bool = False) -> None:
    data = tar_bytes(entries)
    apply_layer(io.BytesIO(gz(data) if compress else data), root)


def test_files_modes_owners_links_devices(tmp_path: Path) -> None:
    entries = [
        dir_("etc", 0o750),
        file("etc/passwd", b"root:x:0:0", 0o600, uid=1000, gid=1001),
        file("bin/tool", b"#!", 0o4755),
        hardlink("bin/tool2", "bin/tool"),
        symlink("bin/abs", "/etc/passwd"),
        Entry("dev/null", tarfile.CHRTYPE, mode=0o666, devmajor=1, devminor=3),
        Entry("run/fifo", tarfile.FIFOTYPE, mode=0o600),
        file("x", b"a", pax={"SCHILY.xattr.user.k": "v"}),
    ]
    apply(entries, tmp_path, compress=True)
    st = os.lstat(tmp_path / "etc/passwd")
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (1000, 1001, 0o600)
    assert stat.S_IMODE(os.lstat(tmp_path / "etc").st_mode) == 0o750
    assert stat.S_IMODE(os.lstat(tmp_path / "bin/tool").st_mode) == 0o4755
    assert os.lstat(tmp_path / "bin/tool2").st_ino == os.lstat(tmp_path / "bin/tool").st_ino
    assert os.readlink(tmp_path / "bin/abs") == "/etc/passwd"
    dev = os.lstat(tmp_path / "dev/null")
    assert stat.S_ISCHR(dev.st_mode) and os.major(dev.st_rdev) == 1
    assert stat.S_ISFIFO(os.lstat(tmp_path / "run/fifo").st_mode)
    assert os.getxattr(tmp_path / "x", "user.k") == b"v"
    assert os.lstat(tmp_path / "etc/passwd").st_mtime == 1_700_000_000


def test_whiteouts_become_overlay_format(tmp_path: Path) -> None:
    apply([file("a/.wh.gone"), dir_("b"), file("b/.wh..wh..opq"), file("b/keep", b"k")],
          tmp_path)
    wh = os.lstat(tmp_path / "a/gone")
    assert stat.S_ISCHR(wh.st_mode) and wh.st_rdev == 0
    assert os.getxattr(tmp_path / "b", "trusted.overlay.opaque") == b"y"
    assert not (tmp_path / "a/.wh.gone").exists()


def test_diff_tar_round_trip(tmp_path: Path) -> None:
    src, out = tmp_path / "src", tmp_path / "out"
    src.mkdir()
    out.mkdir()
    apply([file("a/.wh.gone"), dir_("b"), file("b/.wh..wh..opq"), file("f", b"1"),
           hardlink("g", "f"), symlink("l", "f")], src)
    buf = io.BytesIO()
    write_tree(src, buf)
    with tarfile.open(fileobj=io.BytesIO(buf.getvalue())) as tar:
        names = tar.getnames()
    assert "a/.wh.gone" in names and "b/.wh..wh..opq" in names
    apply_layer(io.BytesIO(buf.getvalue()), out)
    assert os.lstat(out / "g").st_ino == os.lstat(out / "f").st_ino
    assert stat.S_ISCHR(os.lstat(out / "a/gone").st_mode)


@pytest.mark.parametrize("name", ["../evil", "a/../../evil", "/../evil"])
def test_dotdot_refused(tmp_path: Path, name: str) -> None:
    (tmp_path / "root").mkdir()
    with pytest.raises(LayerError, match="path traversal"):
        apply([file(name, b"x")], tmp_path / "root")
    assert not (tmp_path / "evil").exists()


def test_absolute_names_stay_inside(tmp_path: Path) -> None:
    apply([file("/etc/hosts", b"h")], tmp_path)
    assert (tmp_path / "etc/hosts").read_bytes() == b"h"
    assert clean_name("./a//b/") == "a/b"


@pytest.mark.parametrize("target", ["/", "/tmp", "../../..", "../outside"])
def test_symlink_parent_resolved_within_root(tmp_path: Path, target: str) -> None:
    root = tmp_path / "root"
    root.mkdir()
    apply([symlink("link", target), file("link/escaped", b"x")], root)
    assert not (tmp_path / "escaped").exists()
    assert not Path("/tmp/escaped").exists()
    found = list(root.rglob("escaped"))
    assert len(found) == 1


def test_hard_link_outside_layer_refused(tmp_path: Path) -> None:
    with pytest.raises(LayerError, match="not in this layer"):
        apply([hardlink("x", "etc/shadow")], tmp_path)
    with pytest.raises(LayerError, match="path traversal"):
        apply([hardlink("y", "../../etc/passwd")], tmp_path)


def test_truncated_and_garbage(tmp_path: Path) -> None:
    data = tar_bytes([file("big", b"x" * 100_000)])
    with pytest.raises(LayerError):
        apply_layer(io.BytesIO(data[:50_000]), tmp_path / "a")
    with pytest.raises(LayerError):
        apply_layer(io.BytesIO(gz(data)[:3000]), tmp_path / "b")
    with pytest.raises(LayerError):
        apply_layer(io.BytesIO(b"\x1f\x8bnot gzip at all" * 10), tmp_path / "c")


def test_huge_declared_file_fails_fast(tmp_path: Path) -> None:
    info = tarfile.TarInfo("huge")
    info.size = 1 << 40  # declares 1 TiB, carries 1 KiB
    head = info.tobuf(tarfile.PAX_FORMAT)
    with pytest.raises(LayerError, match=r"truncated|unexpected end"):
        apply_layer(io.BytesIO(head + b"\0" * 1024), tmp_path)


def test_sparse_file_writes_only_data(tmp_path: Path) -> None:
    sparse_src = tmp_path / "sparse"
    with open(sparse_src, "wb") as f:
        f.seek(1 << 34)  # 16 GiB apparent size
        f.write(b"end")
    archive = tmp_path / "s.tar"
    import subprocess

    subprocess.run(["tar", "-C", str(tmp_path), "--sparse", "--format=gnu", "-cf",
                    str(archive), "sparse"], check=True)
    out = tmp_path / "out"
    out.mkdir()
    with open(archive, "rb") as f:
        apply_layer(f, out)
    st = os.stat(out / "sparse")
    assert st.st_size == (1 << 34) + 3 and st.st_blocks * 512 < (1 << 20)
    with open(out / "sparse", "rb") as f:
        f.seek(1 << 34)
        assert f.read() == b"end"
