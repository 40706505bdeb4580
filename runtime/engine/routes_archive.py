"""``/containers/{id}/archive`` (docker cp): HEAD/GET stat and tar out, PUT tar in.

The file work runs in a worker process (runtime/engine/archive.py) inside the
container's mount namespace; this module only builds its spec and pumps bytes.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from runtime.api.errors import CoveError, Forbidden, Internal, InvalidArgument, NotFound
from runtime.engine import userns
from runtime.engine.archive import encode_stat
from runtime.engine.http import Request, Response
from runtime.engine.router import Router
from runtime.layout import (
    CONTAINER_HOSTNAME,
    CONTAINER_HOSTS,
    CONTAINER_RESOLV,
    CONTAINER_ROOTFS,
)
from runtime.spec import to_json

if TYPE_CHECKING:
    from runtime.engine.engine import Engine

STAT_HEADER = "X-Docker-Container-Path-Stat"
_ROOT = str(Path(__file__).resolve().parents[2])
_ERRORS: dict[int, type[CoveError]] = {400: InvalidArgument, 403: Forbidden, 404: NotFound}
_NET_FILES = (("/etc/hosts", CONTAINER_HOSTS), ("/etc/resolv.conf", CONTAINER_RESOLV),
              ("/etc/hostname", CONTAINER_HOSTNAME))


def register(router: Router, engine: Engine) -> None:
    @router.route("GET", "/containers/{id}/archive")
    def get_archive(req: Request) -> Response:
        c = engine.containers.get(req.params["id"])
        path = _path(req)
        op = "stat" if req.method == "HEAD" else "get"
        proc = _worker(engine, c, op, path, stdin=False)
        st = _first_line(proc, c.id, path)
        headers = {STAT_HEADER: encode_stat(st)}
        if op == "stat":
            proc.wait()
            return Response(200, b"", content_type="application/x-tar", headers=headers)
        return Response(200, _pump_out(proc), content_type="application/x-tar", headers=headers)

    @router.route("PUT", "/containers/{id}/archive")
    def put_archive(req: Request) -> Response:
        c = engine.containers.get(req.params["id"])
        path = _path(req)
        if c.host_config.get("ReadonlyRootfs") and c.running:
            raise Forbidden("container rootfs is marked read-only")
        proc = _worker(engine, c, "put", path, stdin=True,
                       no_overwrite=req.bool_arg("noOverwriteDirNonDir"),
                       copy_uid_gid=req.bool_arg("copyUIDGID"))
        _first_line(proc, c.id, path)
        assert proc.stdin is not None
        body = req.body()
        try:
            while chunk := body.read(1 << 16):
                proc.stdin.write(chunk)
        except BrokenPipeError:
            pass  # the worker failed; its message follows on stdout
        finally:
            try:
                proc.stdin.close()
            except BrokenPipeError:
                pass
        _result(proc, c.id, path)
        return Response(200, b"", content_type="")


def _path(req: Request) -> str:
    path = req.str_arg("path")
    if not path:
        raise InvalidArgument("path is required")
    return path if path.startswith("/") else "/" + path


def _spec(engine: Engine, c: Any, op: str, path: str, **flags: bool) -> dict[str, Any]:
    spec: dict[str, Any] = {"op": op, "path": path, **flags}
    shift = userns.container_shift(c.host_config, engine.containers.userns)
    if shift is not None:
        spec["ids"] = shift.to_json()
    if c.running and c.pid:
        spec["pid"] = c.pid
        return spec
    image = engine.images.get(c.image_id)
    spec["pid"] = 0
    spec["rootfs"] = [to_json(m) for m in engine.images.prepare_rootfs(c.id, image)]
    # Under remapping the engine's own data (volumes, the network files) is idmapped in
    # the running container; the worker mounts it so too. Binds of host paths are not.
    infos = list(c.mounts_info)  # 1:1 with spec_mounts
    mounts = [_idmapped(to_json(m)) if i < len(infos) and infos[i].get("Type") == "volume"
              else to_json(m) for i, m in enumerate(c.spec_mounts)]
    for dest, fname in _NET_FILES:
        src = c.directory / fname
        if src.exists():
            mounts.append(_idmapped({"destination": dest, "type": "bind", "source": str(src),
                                     "options": ["bind"]}))
    spec["mounts"] = mounts
    spec["target"] = str(c.directory / CONTAINER_ROOTFS)
    return spec


def _idmapped(mount: dict[str, Any]) -> dict[str, Any]:
    """Marked for the worker, which idmaps it only when the container is remapped."""
    return {**mount, "options": [*(mount.get("options") or []), "idmap"]}


def _worker(engine: Engine, c: Any, op: str, path: str, *, stdin: bool,
            **flags: bool) -> subprocess.Popen[bytes]:
    spec = _spec(engine, c, op, path, **flags)
    env = {**os.environ, "PYTHONPATH": _ROOT}
    return subprocess.Popen(
        [sys.executable, "-m", "runtime.engine.archive", json.dumps(spec)],
        stdin=subprocess.PIPE if stdin else subprocess.DEVNULL, stdout=subprocess.PIPE,
        env=env, cwd="/")


def _raise(msg: dict[str, Any], container_id: str, path: str) -> None:
    status = int(msg.get("status") or 500)
    text = str(msg.get("error") or "archive failed")
    if status == 404:
        text = f"Could not find the file {path} in container {container_id}"
    raise _ERRORS.get(status, Internal)(text)


def _first_line(proc: subprocess.Popen[bytes], container_id: str, path: str) -> dict[str, Any]:
    assert proc.stdout is not None
    line = proc.stdout.readline()
    msg: dict[str, Any] = {"error": "archive worker died", "status": 500}
    try:
        if line:
            msg = dict(json.loads(line))
    except ValueError:
        msg = {"error": "archive worker: bad reply", "status": 500}
    if "stat" not in msg:
        proc.kill()
        proc.wait()
        _raise(msg, container_id, path)
    st: dict[str, Any] = msg["stat"]
    return st


def _result(proc: subprocess.Popen[bytes], container_id: str, path: str) -> None:
    assert proc.stdout is not None
    line = proc.stdout.read()
    proc.wait()
    msg: dict[str, Any] = {}
    try:
        if line.strip():
            msg = dict(json.loads(line.splitlines()[-1]))
    except ValueError:
        pass
    if not msg.get("ok"):
        _raise(msg or {"error": "archive worker died", "status": 500}, container_id, path)


def _pump_out(proc: subprocess.Popen[bytes]) -> Iterator[bytes]:
    assert proc.stdout is not None
    out = cast(io.BufferedReader, proc.stdout)
    try:
        while chunk := out.read1(1 << 16):
            yield chunk
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.stdout.close()
        proc.wait()
