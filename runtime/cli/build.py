"""``cove build``: the classic builder's wire protocol (POST /build with a tar context).

This module only packs the context and renders the JSON-lines output; the
build itself is the engine's. Context sources: a directory (tarred here,
honouring .dockerignore), a tarball path, or ``-`` (a tar, or a bare Dockerfile).
"""

from __future__ import annotations

import argparse
import io
import os
import stat
import sys
import tarfile
import time
import uuid
from collections.abc import Generator, Iterator
from pathlib import Path
from typing import IO, Any, TextIO

from runtime.cli.base import Cli, CliError


def configure(verb: str, p: argparse.ArgumentParser) -> None:
    a = p.add_argument
    a(
        "-t",
        "--tag",
        action="append",
        default=[],
        help="Name and optionally a tag (format: name:tag)",
    )
    a("-f", "--file", help="Name of the Dockerfile (default: PATH/Dockerfile)")
    a("--build-arg", action="append", default=[], help="Set build-time variables")
    a("--target", help="Set the target build stage to build")
    a("--no-cache", action="store_true", help="Do not use cache when building the image")
    a("--pull", action="store_true", help="Always attempt to pull a newer version of the image")
    a(
        "-q",
        "--quiet",
        action="store_true",
        help="Suppress the build output and print image ID on success",
    )
    a("--label", action="append", default=[], help="Set metadata for an image")
    a("--network", help="Set the networking mode for the RUN instructions during build")
    a("--add-host", action="append", default=[],
      help="Add a custom host-to-IP mapping (format: \"host:ip\")")
    a("--platform", help="Set platform if server is multi-platform capable")
    a("--progress", default="auto", help="Set type of progress output (auto, plain, tty)")
    a("--rm", default="true", help="Remove intermediate containers after a successful build")
    a("--force-rm", action="store_true", help="Always remove intermediate containers")
    a("context", metavar="PATH | URL | -")
    p.set_defaults(func=cmd_build)


# --- the context tar -------------------------------------------------------------------

_CHUNK = 1 << 20  # file data goes out in chunks this big: fewer HTTP chunks and reads
Body = Generator[bytes, None, None] | IO[bytes]


def tar_chunks(
    context: str, dockerfile: bytes | None = None, dockerfile_name: str = ""
) -> Generator[bytes, None, None]:
    """The context directory as tar data, .dockerignore applied (moby's matcher).

    Like docker, the Dockerfile and .dockerignore are always sent, ignored or not;
    a Dockerfile given separately (stdin, outside the context) is added under
    ``dockerfile_name``. The tar is produced right here, header by header and file
    by file in 1 MiB reads, and sent as it is made: no thread, no pipe, no ``tarfile``
    stream (which copies everything through 10 KiB records). Owners are 0:0; files
    linked more than once are sent as hard links to their first name, as docker does.
    """
    from runtime.api.dockerignore import Matcher, read_file

    root = Path(context)
    matcher = Matcher(read_file(root / ".dockerignore"))
    paths = list(matcher.walk(root))
    for keep in (".dockerignore", dockerfile_name or "Dockerfile"):
        if keep not in paths and (root / keep).is_file():
            paths.append(keep)
    links: dict[tuple[int, int], str] = {}
    for rel in paths:
        yield from _member(root / rel, rel, links)
    if dockerfile is not None:
        info = tarfile.TarInfo(dockerfile_name)
        info.size, info.mode, info.mtime = len(dockerfile), 0o644, int(time.time())
        yield _header(info) + dockerfile + _padding(len(dockerfile))
    yield b"\0" * (2 * tarfile.BLOCKSIZE)


def _header(info: tarfile.TarInfo) -> bytes:
    return info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")


def _padding(size: int) -> bytes:
    return b"\0" * (-size % tarfile.BLOCKSIZE)


def _member(path: Path, rel: str, links: dict[tuple[int, int], str]) -> Iterator[bytes]:
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return  # removed while walking
    info = tarfile.TarInfo(rel)
    info.mode, info.mtime = stat.S_IMODE(st.st_mode), int(st.st_mtime)
    if stat.S_ISDIR(st.st_mode):
        info.type = tarfile.DIRTYPE
    elif stat.S_ISLNK(st.st_mode):
        info.type, info.linkname = tarfile.SYMTYPE, os.readlink(path)
    elif stat.S_ISREG(st.st_mode):
        first = links.get((st.st_dev, st.st_ino)) if st.st_nlink > 1 else None
        if first is not None:
            info.type, info.linkname = tarfile.LNKTYPE, first
        else:
            if st.st_nlink > 1:
                links[(st.st_dev, st.st_ino)] = rel
            yield from _file(path, info)
            return
    else:
        return  # sockets, fifos and devices have no place in a context
    yield _header(info)


def _file(path: Path, info: tarfile.TarInfo) -> Iterator[bytes]:
    with open(path, "rb") as f:
        info.size = os.fstat(f.fileno()).st_size
        yield _header(info)
        left = info.size
        while left > 0:
            block = f.read(min(left, _CHUNK))
            if not block:  # the file shrank while sent: keep the promised size
                block = b"\0" * left
            left -= len(block)
            yield block
    yield _padding(info.size)


class _Chunks(io.RawIOBase):
    """A file-like view of :func:`tar_chunks` for callers that read a tar stream."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks
        self._rest = b""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while not self._rest:
            self._rest = next(self._chunks, b"")
            if not self._rest:
                return 0
        n = min(len(buffer), len(self._rest))
        buffer[:n] = self._rest[:n]
        self._rest = self._rest[n:]
        return n


def tar_context(
    context: str, dockerfile: bytes | None = None, dockerfile_name: str = ""
) -> IO[bytes]:
    """:func:`tar_chunks` as a readable stream."""
    return io.BufferedReader(_Chunks(tar_chunks(context, dockerfile, dockerfile_name)))


def _context(args: argparse.Namespace) -> tuple[Body, str]:
    """(tar stream, dockerfile path inside it)."""
    if "://" in args.context:
        raise CliError("building from a URL is not supported; clone or download it first")
    if args.context == "-":
        data = sys.stdin.buffer.read()
        if _is_tar(data):
            return io.BytesIO(data), args.file or "Dockerfile"
        name = f".dockerfile.{uuid.uuid4().hex[:20]}"  # stdin held a Dockerfile, no context
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tar:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        buf.seek(0)
        return buf, name
    if os.path.isfile(args.context):
        return open(args.context, "rb"), args.file or "Dockerfile"
    if not os.path.isdir(args.context):
        raise CliError(f'unable to prepare context: path "{args.context}" not found')
    return _dir_context(args)


def _dir_context(args: argparse.Namespace) -> tuple[Body, str]:
    ctx = args.context
    if args.file == "-":
        name = f".dockerfile.{uuid.uuid4().hex[:20]}"
        return tar_chunks(ctx, sys.stdin.buffer.read(), name), name
    path = args.file or os.path.join(ctx, "Dockerfile")
    if not os.path.isfile(path):
        raise CliError(
            f"unable to prepare context: unable to evaluate symlinks in Dockerfile path: "
            f"lstat {os.path.abspath(path)}: no such file or directory"
        )
    rel = os.path.relpath(os.path.abspath(path), os.path.abspath(ctx)).replace(os.sep, "/")
    if rel.startswith("../"):  # outside the context: ship it under a private name
        name = f".dockerfile.{uuid.uuid4().hex[:20]}"
        with open(path, "rb") as f:
            return tar_chunks(ctx, f.read(), name), name
    return tar_chunks(ctx, dockerfile_name=rel), rel


def _is_tar(data: bytes) -> bool:
    return (len(data) > 262 and data[257:262] == b"ustar") or data[:2] == b"\x1f\x8b"


def cmd_build(cli: Cli, args: argparse.Namespace) -> int:
    from runtime.cli.auth import all_auths
    from runtime.cli.opts import parse_add_host, parse_kv
    from runtime.cli.progress import display

    context, dockerfile = _context(args)
    params: dict[str, Any] = {
        "t": args.tag or None,
        "dockerfile": dockerfile,
        "target": args.target,
        "buildargs": parse_kv(args.build_arg, "build-arg") or None,
        "labels": parse_kv(args.label) or None,
        "nocache": args.no_cache or None,
        "pull": args.pull or None,
        "q": args.quiet or None,
        "networkmode": args.network,
        "extrahosts": parse_add_host(args.add_host) or None,
        "platform": args.platform,
        "rm": str(args.rm).lower() != "false",
        "forcerm": args.force_rm or None,
        "version": "1",
    }
    image_id: list[str] = []
    # Every login, the credential helpers' too, as docker's CLI sends them: the engine
    # picks the one for each FROM it has to pull.
    auths = all_auths()
    stream = cli.client.build(
        context, {k: v for k, v in params.items() if v is not None}, registry_config=auths
    )
    out: TextIO = io.StringIO() if args.quiet else cli.out
    try:
        display(stream, out, False, on_aux=lambda aux: image_id.append(str(aux.get("ID", ""))))
    finally:
        context.close()
    if args.quiet:  # -q: the engine streams just the ID; older ones only send it in aux
        cli.print(image_id[-1] if image_id else out.getvalue().strip())  # type: ignore[attr-defined]
    return 0
