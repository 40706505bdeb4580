"""Overlay snapshots: one unpacked directory per layer (by chain ID), one upper per container.

Glossary (containerd's): a *layer snapshot* is committed and read-only, named
by its chain ID and shared by every image and container above it; an *active
snapshot* is a container's ``upper``/``work`` pair, keyed by container id.
The snapshotter never mounts anything: :meth:`Snapshotter.prepare` returns the
overlay :class:`Mount` and the runtime mounts it inside the container's own
mount namespace.

On disk (under ``snapshots/``)::

    layers/<chainhex>/fs          the layer's files (whiteouts as 0:0 char devices)
    layers/<chainhex>/layer.json  chain/diff ids, sizes
    layers/<chainhex>/link        the layer's short link name in l/
    l/<short>                     symlink to ../layers/<chainhex>/fs (overlay2's l/ dir)
    containers/<id>/{upper,work}  a container's writable layer
    containers/<id>/snapshot.json the chain it sits on
    staging/                      unpacks in progress; renamed into layers/ when complete
    empty/                        the lower dir of an image without layers
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import shutil
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import BinaryIO

from runtime.api.errors import NotFound
from runtime.fsutil import write_atomic, write_json_atomic
from runtime.images import digest as dg
from runtime.images.content import DigestMismatch
from runtime.images.unpack import apply_layer
from runtime.spec import Mount

# mount(2) copies its data argument from one 4 KiB page; options longer than this
# (with room for what a runtime may add) switch to lowerdirs relative to the root.
_MAX_MOUNT_DATA = 3800
_LINK_CHARS = 10


@dataclass(frozen=True, slots=True)
class LayerInfo:
    chain_id: str
    diff_id: str
    parent: str  # chain ID of the layer below, "" for the base layer
    size: int  # bytes of file content
    tar_size: int  # bytes of the uncompressed layer tar


class Snapshotter:
    def __init__(self, root: Path) -> None:
        self.root = root
        for sub in ("layers", "containers", "staging", "empty", "l"):
            (root / sub).mkdir(parents=True, exist_ok=True)
        self._clean_staging()
        self._clean_links()

    # -- layers --
    def _layer_path(self, chain_id: str) -> Path:
        return self.root / "layers" / dg.hex_of(chain_id)

    def layer_fs(self, chain_id: str) -> Path:
        return self._layer_path(chain_id) / "fs"

    def has_layer(self, chain_id: str) -> bool:
        return (self._layer_path(chain_id) / "layer.json").is_file()

    def layer(self, chain_id: str) -> LayerInfo:
        try:
            data = json.loads((self._layer_path(chain_id) / "layer.json").read_bytes())
        except FileNotFoundError:
            raise NotFound(f"layer {chain_id} not found") from None
        return LayerInfo(**data)

    def layers(self) -> list[LayerInfo]:
        out = []
        for d in (self.root / "layers").iterdir():
            if (d / "layer.json").is_file():
                out.append(self.layer("sha256:" + d.name))
        return out

    def apply(self, parent: str, stream: BinaryIO, diff_id: str | None = None) -> LayerInfo:
        """Unpack a layer above *parent* ("" for none); idempotent per chain ID.

        With *diff_id*, the uncompressed stream must hash to it (else DigestMismatch).
        Unpacking happens in ``staging/`` and is renamed into place only when
        complete and verified, so a failed or interrupted unpack leaves no layer.
        """
        stage = self.root / "staging" / uuid.uuid4().hex
        (stage / "fs").mkdir(parents=True)
        try:
            applied = apply_layer(stream, stage / "fs")
            if diff_id is not None and applied.diff_id != diff_id:
                raise DigestMismatch(
                    f"layer diff ID mismatch: expected {diff_id}, got {applied.diff_id}")
            chain = dg.chain_ids([parent, applied.diff_id])[1] if parent else applied.diff_id
            info = LayerInfo(chain, applied.diff_id, parent, applied.size, applied.tar_size)
            write_json_atomic(stage / "layer.json", asdict(info))
            try:
                os.rename(stage, self._layer_path(chain))
            except OSError:
                if not self.has_layer(chain):
                    raise
                # Someone else unpacked the same chain meanwhile: theirs is as good.
        finally:
            shutil.rmtree(stage, ignore_errors=True)
        return info

    def link(self, chain_id: str) -> str:
        """The layer's short name in ``l/`` (made on first use, as overlay2 does).

        Overlay takes every lower dir in one mount option; ``l/<10 chars>`` instead
        of ``layers/<64 hex>/fs`` keeps images of ~100 layers under the 4 KiB limit.
        """
        path = self._layer_path(chain_id)
        try:
            name = (path / "link").read_text().strip()
        except FileNotFoundError:
            if not self.has_layer(chain_id):
                raise NotFound(f"layer {chain_id} not found") from None
            name = base64.b32encode(os.urandom(10)).decode()[:_LINK_CHARS].lower()
            write_atomic(path / "link", name.encode())
        link = self.root / "l" / name
        if not os.path.lexists(link):
            tmp = self.root / "l" / f".{name}.{uuid.uuid4().hex[:8]}"
            os.symlink(f"../layers/{dg.hex_of(chain_id)}/fs", tmp)
            os.rename(tmp, link)
        return name

    def remove_layer(self, chain_id: str) -> None:
        """Idempotent. Renamed away first so a half-deleted layer never looks present."""
        path = self._layer_path(chain_id)
        try:
            os.unlink(self.root / "l" / (path / "link").read_text().strip())
        except (FileNotFoundError, ValueError):
            pass
        trash = self.root / "staging" / f"rm-{uuid.uuid4().hex}"
        try:
            os.rename(path, trash)
        except FileNotFoundError:
            return
        shutil.rmtree(trash, ignore_errors=True)

    # -- active (container) snapshots --
    def _active(self, key: str) -> Path:
        if not key or "/" in key or key.startswith("."):
            raise NotFound(f"invalid snapshot key {key!r}")
        return self.root / "containers" / key

    def prepare(self, key: str, chain: list[str]) -> Mount:
        """The writable overlay for *key* over the layers *chain* (bottom first). Idempotent."""
        d = self._active(key)
        record = d / "snapshot.json"
        if record.is_file():
            chain = list(json.loads(record.read_bytes())["chain"])
        else:
            for chain_id in chain:
                if not self.has_layer(chain_id):
                    raise NotFound(f"layer {chain_id} not found")
            (d / "upper").mkdir(parents=True, exist_ok=True)
            (d / "work").mkdir(exist_ok=True)
            os.chmod(d / "upper", 0o755)
            write_json_atomic(record, {"chain": chain})
        return self.mount(key, chain)

    def mount(self, key: str, chain: list[str]) -> Mount:
        """The overlay mount of *key* over *chain*: lower dirs as short ``l/`` links.

        Absolute links when the options fit a mount page; else (very many layers,
        or a long data root) links relative to the snapshot root, which is then the
        mount's *source*: whoever mounts it chdirs there first, as overlay2 does.
        """
        d = self._active(key)
        links = [f"l/{self.link(c)}" for c in reversed(chain)]
        rest = (f"upperdir={d / 'upper'}", f"workdir={d / 'work'}")
        if not links:
            return _overlay("overlay", (f"lowerdir={self.root / 'empty'}", *rest))
        absolute = ("lowerdir=" + ":".join(str(self.root / x) for x in links), *rest)
        if len(",".join(absolute)) <= _MAX_MOUNT_DATA:
            return _overlay("overlay", absolute)
        return _overlay(str(self.root), ("lowerdir=" + ":".join(links), *rest))

    def active_chain(self, key: str) -> list[str]:
        try:
            return list(json.loads((self._active(key) / "snapshot.json").read_bytes())["chain"])
        except FileNotFoundError:
            raise NotFound(f"no snapshot for container {key}") from None

    def upper(self, key: str) -> Path:
        return self._active(key) / "upper"

    def remove_active(self, key: str) -> None:
        d = self._active(key)
        trash = self.root / "staging" / f"rm-{uuid.uuid4().hex}"
        try:
            os.rename(d, trash)
        except FileNotFoundError:
            return
        shutil.rmtree(trash, ignore_errors=True)

    def active_keys(self) -> list[str]:
        return [d.name for d in (self.root / "containers").iterdir()
                if (d / "snapshot.json").is_file()]

    def _clean_staging(self) -> None:
        for d in (self.root / "staging").iterdir():
            shutil.rmtree(d, ignore_errors=True)

    def _clean_links(self) -> None:
        """Drop links whose layer is gone (a crash inside remove_layer) or half made."""
        for link in (self.root / "l").iterdir():
            if link.name.startswith(".") or not link.exists():
                with contextlib.suppress(FileNotFoundError):
                    link.unlink()


def _overlay(source: str, options: tuple[str, ...]) -> Mount:
    return Mount(type="overlay", destination="/", source=source, options=options)


def mount_cwd(mount: Mount) -> str | None:
    """The directory to mount *mount* from: its source, when its lower dirs are relative."""
    return mount.source if mount.type == "overlay" and mount.source.startswith("/") else None
