from __future__ import annotations

import io
from pathlib import Path

from guestagent.seed import SeedConfig, Share, read_seed, write_seed


def test_seed_roundtrip_is_a_raw_disk(tmp_path: Path) -> None:
    cfg = SeedConfig(hostname="h", host_time=12.5, shares=(Share(tag="t", mountpoint="/x"),))
    buf = io.BytesIO()
    write_seed(buf, cfg, {"authorized_keys": b"ssh-ed25519 AAAA x\n", "ssh_host_ed25519_key": b"k"})
    assert len(buf.getvalue()) % 512 == 0
    path = tmp_path / "seed.tar"
    path.write_bytes(buf.getvalue() + b"\0" * 4096)  # a block device is longer than the tar
    got, files = read_seed(path)
    assert got == cfg
    assert files == {"authorized_keys": b"ssh-ed25519 AAAA x\n", "ssh_host_ed25519_key": b"k"}
