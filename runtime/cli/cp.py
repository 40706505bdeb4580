"""``cove cp``: files in and out of containers as tar streams (GET/PUT .../archive).

Destination rules follow docker's: copying onto an existing directory puts the
source inside it; onto a missing path creates it under that name.
"""

from __future__ import annotations

import argparse
import os
import sys
import tarfile
import threading
from collections.abc import Callable, Iterator
from typing import IO, Any, cast

from runtime.api.errors import NotFound
from runtime.cli.base import Cli, CliError

GO_MODE_DIR = 0x80000000  # os.FileMode bits in X-Docker-Container-Path-Stat


def configure(verb: str, p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "-a", "--archive", action="store_true", help="Archive mode (copy all uid/gid information)"
    )
    p.add_argument(
        "-L", "--follow-link", action="store_true", help="Always follow symbol link in SRC_PATH"
    )
    p.add_argument("-q", "--quiet", action="store_true", help="Suppress progress output")
    p.add_argument("src", metavar="SRC_PATH")
    p.add_argument("dest", metavar="DEST_PATH")
    p.set_defaults(func=cmd_cp)


def split_target(arg: str) -> tuple[str | None, str]:
    """ "name:/path" → (name, path); local paths (incl. "./a:b" and "/x:y") → (None, arg)."""
    if arg.startswith(("/", ".")) or ":" not in arg:
        return None, arg
    container, _, path = arg.partition(":")
    if os.sep == "\\" and len(container) == 1:  # C:\path on Windows
        return None, arg
    return container, path


def cmd_cp(cli: Cli, args: argparse.Namespace) -> int:
    src_c, src = split_target(args.src)
    dst_c, dst = split_target(args.dest)
    if src_c and dst_c:
        raise CliError("copying between containers is not supported")
    if not src_c and not dst_c:
        raise CliError("must specify at least one container source")
    if src_c:
        return _copy_out(cli, src_c, src, dst)
    assert dst_c is not None
    return _copy_in(cli, src, dst_c, dst, args.archive)


def _copy_out(cli: Cli, container: str, src: str, dst: str) -> int:
    stat, chunks = cli.client.get_archive(container, src)
    if dst == "-":
        for chunk in chunks:
            cli.out_binary.write(chunk)
        cli.out_binary.flush()
        return 0
    base = str(stat.get("name") or os.path.basename(src.rstrip("/")) or "root")
    if os.path.isdir(dst):
        target_dir, new_name = dst, base
    else:
        target_dir, new_name = os.path.dirname(dst) or ".", os.path.basename(dst)
        if not os.path.isdir(target_dir):
            raise CliError(f"no such directory: {target_dir}")
    with tarfile.open(fileobj=cast(IO[bytes], _ChunkReader(chunks)), mode="r|*") as tar:
        for member in tar:
            head, sep, rest = member.name.partition("/")
            member.name = new_name + sep + rest if head == base else member.name
            tar.extract(member, target_dir, filter="tar")
    return 0


def _copy_in(cli: Cli, src: str, container: str, dst: str, archive: bool) -> int:
    client = cli.client
    if src == "-":
        client.put_archive(container, dst, sys.stdin.buffer, copy_uidgid=archive)
        return 0
    if not os.path.lexists(src):
        raise CliError(f"lstat {src}: no such file or directory")
    try:
        stat = client.stat_path(container, dst)
        exists = True
    except NotFound:
        stat, exists = {}, False
    is_dir = bool(int(stat.get("mode") or 0) & GO_MODE_DIR)
    if exists and is_dir:
        parent, name = dst, os.path.basename(os.path.abspath(src))
    else:
        if exists and os.path.isdir(src):
            raise CliError(f"cannot copy a directory to a file: {dst}")
        parent, name = os.path.dirname(dst.rstrip("/")) or "/", os.path.basename(dst.rstrip("/"))
    client.put_archive(container, parent, _tar_stream(src, name), copy_uidgid=archive)
    return 0


def _tar_stream(src: str, arcname: str) -> IO[bytes]:
    return tar_pipe(lambda tar: tar.add(src, arcname=arcname))


def tar_pipe(write: Callable[[tarfile.TarFile], None]) -> IO[bytes]:
    """A pipe fed by a thread writing a tar: uploads start before the tar is complete."""
    r, w = os.pipe()
    reader, writer = os.fdopen(r, "rb"), os.fdopen(w, "wb")

    def produce() -> None:
        try:
            with tarfile.open(fileobj=writer, mode="w|") as tar:
                write(tar)
        except OSError:
            pass  # the reader side closed (upload failed); that error is reported there
        finally:
            try:
                writer.close()
            except OSError:
                pass

    threading.Thread(target=produce, daemon=True, name="cove-tar").start()
    return reader


class _ChunkReader:
    """File-like view of a bytes iterator (tarfile's stream mode only calls read)."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks
        self._buf = b""

    def read(self, n: int = -1) -> bytes:
        while n < 0 or len(self._buf) < n:
            chunk = next(self._chunks, b"")
            if not chunk:
                break
            self._buf += chunk
        if n < 0:
            n = len(self._buf)
        out, self._buf = self._buf[:n], self._buf[n:]
        return out

    def close(self) -> Any:
        return None
