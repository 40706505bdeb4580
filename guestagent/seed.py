"""The seed disk: how per-VM settings and keys reach the guest without cloud-init.

The host writes a plain ustar archive and attaches it as a raw virtio disk with serial
``cove-seed``; the guest's init reads the block device with :mod:`tarfile`. Creating it needs
no ISO or filesystem tools, so the same code works on macOS and Windows hosts.

Members: ``config.json`` (:class:`SeedConfig`), ``authorized_keys``, ``ssh_host_ed25519_key``
and ``ssh_host_ed25519_key.pub``.
"""

from __future__ import annotations

import io
import json
import tarfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO

from runtime.api.errors import InvalidArgument

CONFIG = "config.json"
AUTHORIZED_KEYS = "authorized_keys"
HOST_KEY = "ssh_host_ed25519_key"
HOST_KEY_PUB = "ssh_host_ed25519_key.pub"
SECRET_MEMBERS = frozenset({HOST_KEY})
SERIAL_ROOT = "cove-root"
SERIAL_DATA = "cove-data"
SERIAL_SEED = "cove-seed"
BLOCK = 512


@dataclass(frozen=True, slots=True, kw_only=True)
class Share:
    tag: str  # virtiofs tag
    mountpoint: str  # where the guest mounts it (the host path, so bind mounts keep working)


@dataclass(frozen=True, slots=True, kw_only=True)
class SeedConfig:
    hostname: str = "cove"
    host_time: float = 0.0  # host wall clock when the seed was written
    engine_argv: tuple[str, ...] = ()  # empty: the image's default
    shares: tuple[Share, ...] = ()
    address: str = "10.0.2.15/24"  # slirp's fixed layout, so no DHCP wait
    gateway: str = "10.0.2.2"
    nameserver: str = "10.0.2.3"
    extra: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_json(cls, data: bytes) -> SeedConfig:
        try:
            obj = json.loads(data)
            obj["engine_argv"] = tuple(obj.get("engine_argv", ()))
            obj["shares"] = tuple(Share(**s) for s in obj.get("shares", ()))
            return cls(**obj)
        except (ValueError, TypeError) as e:
            raise InvalidArgument(f"seed {CONFIG}: {e}") from e


def write_seed(out: IO[bytes], config: SeedConfig, files: dict[str, bytes]) -> None:
    """Write the seed archive; the result's size is a multiple of 512 (a valid raw disk)."""
    members = {CONFIG: json.dumps(asdict(config), sort_keys=True).encode(), **files}
    with tarfile.open(fileobj=out, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for name, data in sorted(members.items()):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o600 if name in SECRET_MEMBERS else 0o644
            tar.addfile(info, io.BytesIO(data))


def read_seed(device: str | Path) -> tuple[SeedConfig, dict[str, bytes]]:
    """Read the seed from a block device or file; trailing zero blocks end the archive."""
    files: dict[str, bytes] = {}
    with tarfile.open(str(device), mode="r:") as tar:
        for info in tar:
            f = tar.extractfile(info)
            if f is not None:
                files[info.name] = f.read()
    config = SeedConfig.from_json(files.pop(CONFIG, b"{}"))
    return config, files
