"""Turning one COPY/ADD instruction into a :class:`CopyStep`: its sources, destination and plan.

Sources come from the build context, an earlier stage or image (``--from``),
a heredoc (``COPY <<EOF /path``), or for ADD a URL (downloaded) or a local
tar archive (unpacked, any of tar/gzip/bzip2/xz, recognised by content as
docker does, not by name).
"""

from __future__ import annotations

import email.utils
import hashlib
import os
import posixpath
import re
import shutil
import tarfile
import time
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from runtime.api.errors import InvalidArgument
from runtime.build import instructions as ins
from runtime.build.context import Context, extract, new_dir
from runtime.build.copy import Entry, Plan, Planner, Source, parse_chmod, parse_chown, tree_sources
from runtime.build.fs import DirTree, LayerTree, Tree
from runtime.build.layers import layer_dirs
from runtime.build.shell import substitute
from runtime.images.store import Image, ImageStore

if TYPE_CHECKING:
    from runtime.build.builder import StageState

_HEREDOC_SRC = re.compile(r"^<<-?(['\"]?)([A-Za-z_][A-Za-z0-9_]*)\1$")
_URL = re.compile(r"^https?://", re.IGNORECASE)
_CHUNK = 1 << 20
DOWNLOAD_TIMEOUT = 60.0


@dataclass
class CopyStep:
    plan: Plan
    history: str
    temps: list[Path] = field(default_factory=list)

    def close(self) -> None:
        for path in self.temps:
            shutil.rmtree(path, ignore_errors=True)

    @staticmethod
    def mkdir(path: str, tree: Tree) -> CopyStep:
        """WORKDIR of a missing directory: the directory (and parents) as a layer."""
        planner = Planner(tree, None, None)
        planner._parents(path)
        planner.plan.entries[path] = Entry(path, "dir", 0o755, 0, 0, int(time.time()))
        return CopyStep(planner.plan, f"WORKDIR {path}")


def plan_copy(store: ImageStore, instr: ins.Copy, state: StageState, ctx: Context,
              source_image: Image | None, x: Callable[[str], str], escape: str) -> CopyStep:
    temps: list[Path] = []
    try:
        if instr.source_stage:
            tree: Tree = LayerTree(layer_dirs(store, source_image))
            what = x(instr.source_stage)
        else:
            tree, what = ctx.source(), "build context"
        sources: list[Source] = []
        for raw in instr.sources:
            sources.extend(_sources(raw, instr, state, tree, what, ctx, temps, x))
        raw_dest = x(instr.dest)
        workdir = state.section.get("WorkingDir") or "/"
        dest = posixpath.normpath(posixpath.join(workdir, raw_dest))
        dest_is_dir = raw_dest.endswith(("/", "/.")) or raw_dest in (".", "..")
        dest_tree = LayerTree(layer_dirs(store, state.image))
        planner = Planner(dest_tree, parse_chown(x(instr.chown), dest_tree),
                          parse_chmod(x(instr.chmod)))
        plan = planner.run(sources, dest, dest_is_dir)
        keyword = "ADD" if instr.is_add else "COPY"
        shown = dest + ("/" if dest_is_dir and dest != "/" else "")
        return CopyStep(plan, f"{keyword} {plan.kind}:{plan.digest()} in {shown} ", temps)
    except BaseException:
        for path in temps:
            shutil.rmtree(path, ignore_errors=True)
        raise


def _sources(raw: str, instr: ins.Copy, state: StageState, tree: Tree, what: str,
             ctx: Context, temps: list[Path], x: Callable[[str], str]) -> list[Source]:
    m = _HEREDOC_SRC.match(raw)
    docs = {d.name: d for d in instr.heredocs}
    if m and m.group(2) in docs:
        doc = docs[m.group(2)]
        text = substitute(doc.content, state.env()) if doc.expand else doc.content
        return [Source(doc.name, data=text.encode())]
    value = x(raw)
    if instr.is_add and _URL.match(value):
        return [_download(value, ctx, temps, instr.checksum)]
    found = tree_sources(tree, value, what)
    if instr.is_add and not instr.source_stage:
        return [_maybe_archive(s, ctx, temps) for s in found]
    return found


def _tmp(ctx: Context, temps: list[Path]) -> Path:
    path = new_dir(ctx.root.parent)
    temps.append(path)
    return path


def _maybe_archive(src: Source, ctx: Context, temps: list[Path]) -> Source:
    """ADD of a local tar (maybe compressed): its unpacked contents instead of the file."""
    if src.tree is None:
        return src
    st = src.tree.lstat(src.path)
    if st is None or not os.path.isfile(src.tree.real(src.path)) or os.path.islink(
            src.tree.real(src.path)):
        return src
    real = src.tree.real(src.path)
    try:
        with tarfile.open(real, "r:*") as tar:
            if tar.next() is None:
                return src
    except (tarfile.TarError, EOFError, OSError):
        return src
    out = _tmp(ctx, temps)
    with open(real, "rb") as f:
        digests = extract(f, out, owners=True)
    os.chmod(out, 0o755)
    return Source(src.name, DirTree(out, digests), "/", keep_owner=True, contents_only=True)


def _download(url: str, ctx: Context, temps: list[Path], checksum: str) -> Source:
    """ADD <url>: fetched by the engine; mode 0600 and the Last-Modified time, as docker."""
    name = posixpath.basename(urllib.parse.urlsplit(url).path)
    if not name:
        raise InvalidArgument(f"cannot determine filename from url: {url}")
    out = _tmp(ctx, temps) / name
    digest = hashlib.sha256()
    try:
        with urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT) as resp, \
                open(out, "wb") as f:
            while chunk := resp.read(_CHUNK):
                f.write(chunk)
                digest.update(chunk)
            modified = _last_modified(resp.headers)
    except OSError as e:
        raise InvalidArgument(f"failed to download {url}: {e}") from None
    if checksum and checksum != "sha256:" + digest.hexdigest():
        raise InvalidArgument(f"digest mismatch for {url}: expected {checksum}, got "
                              f"sha256:{digest.hexdigest()}")
    os.chmod(out, 0o600)
    if modified is not None:
        os.utime(out, (modified, modified))
    return Source(name, DirTree(out.parent, {name: digest.hexdigest()}), "/" + name)


def _last_modified(headers: Any) -> float | None:
    value = headers.get("Last-Modified") if headers is not None else None
    if not value:
        return None
    try:
        return email.utils.parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError):
        return None
