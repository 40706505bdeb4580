"""Endpoints over a container's root filesystem: changes (diff), export, and commit."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from runtime.api import reference
from runtime.api.errors import CoveError, InvalidArgument
from runtime.engine import rootfs, userns
from runtime.engine.http import Request, Response, json_response
from runtime.engine.records import Container
from runtime.engine.router import Router
from runtime.engine.specconv import merge_env
from runtime.engine.state import Status
from runtime.images.idshift import IdShift

if TYPE_CHECKING:
    from runtime.engine.engine import Engine

# Container Config keys that become the committed image's config (moby's commit merge).
_IMAGE_KEYS = ("Hostname", "Domainname", "User", "ExposedPorts", "Tty", "OpenStdin",
               "StdinOnce", "Cmd", "Entrypoint", "Volumes", "WorkingDir", "Labels",
               "StopSignal", "StopTimeout", "Shell", "OnBuild", "Healthcheck",
               "ArgsEscaped", "AttachStdin", "AttachStdout", "AttachStderr")


def register(router: Router, engine: Engine) -> None:
    svc = engine.containers

    @router.route("GET", "/containers/{id}/changes")
    def changes(req: Request) -> Response:
        c = svc.get(req.params["id"])
        snaps = engine.images.snapshots
        lowers = [snaps.layer_fs(chain) for chain in reversed(snaps.active_chain(c.id))]
        found = rootfs.changes(engine.images.rootfs_upper(c.id), lowers)
        return json_response(found or None)

    @router.route("GET", "/containers/{id}/export")
    def export(req: Request) -> Response:
        c = svc.get(req.params["id"])
        # Spooled because a stopped container's view lives only in this thread's namespace.
        spool = tempfile.TemporaryFile(prefix="cove-export-")  # noqa: SIM115 - closed by the stream
        try:
            _export_into(engine, c, spool)
        except BaseException:
            spool.close()
            raise
        spool.seek(0)
        engine.events.publish("container", "export", c.id, name=c.name, image=c.image_ref)
        return Response(200, _stream_file(spool), content_type="application/x-tar")

    @router.route("POST", "/commit")
    def commit(req: Request) -> Response:
        c = svc.get(req.str_arg("container"))
        repo = req.str_arg("repo")
        ref = str(reference.join_repo_tag(repo, req.str_arg("tag"))) if repo else None
        body = req.json(default=None)
        if body is not None and not isinstance(body, dict):
            raise InvalidArgument("invalid commit config: must be a JSON object")
        parent = engine.images.get(c.image_id)
        with _paused(engine, c, req.bool_arg("pause", default=True)):
            image = engine.images.commit(
                c.id, parent, ref=ref, changes=req.query.get("changes", []),
                comment=req.str_arg("comment"), author=req.str_arg("author"),
                config_overrides=commit_config(c, parent.config.get("config") or {}, body or {}),
                shift=userns.container_shift(c.host_config, engine.containers.userns),
            )
            # Still paused: moby logs the commit before its deferred unpause.
            engine.events.publish("container", "commit", c.id, name=c.name, image=c.image_ref,
                                  comment=req.str_arg("comment"))
        return json_response({"Id": image.id}, 201)


@contextlib.contextmanager
def _paused(engine: Engine, c: Container, pause: bool) -> Iterator[None]:
    """Freeze a running container while its upper dir is read, so writers cannot change
    (or truncate) a file between its tar header and its data: the layer is one instant.
    Like moby, only a running container is paused, with pause and unpause events."""
    paused = False
    if pause and c.status is Status.RUNNING:
        with contextlib.suppress(CoveError):  # it stopped meanwhile: nothing to freeze
            engine.containers.pause(c.id)
            paused = True
    if not paused:
        yield
        return
    try:
        yield
    finally:
        # It may have been stopped or unpaused by someone else meanwhile.
        with contextlib.suppress(CoveError):
            engine.containers.unpause(c.id)


def commit_config(c: Container, image_config: dict[str, Any], request: dict[str, Any]
                  ) -> dict[str, Any]:
    """The new image's config: the container's config over the image's, the request's on top."""
    out: dict[str, Any] = {}
    for source in (c.config, request):
        for key in _IMAGE_KEYS:
            value = source.get(key)
            if value not in (None, "", [], {}, False):
                out[key] = value
    env = list(image_config.get("Env") or [])
    for source in (c.config, request):
        env = list(merge_env(env, list(source.get("Env") or [])))
    out["Env"] = env
    return out


def _export_into(engine: Engine, c: Container, out: IO[bytes]) -> None:
    # Other mounts (volumes, binds) are not part of the container's filesystem.
    prune = frozenset(str(m.get("Destination")) for m in c.mounts_info)
    shift = userns.container_shift(c.host_config, engine.containers.userns)
    if c.running and c.pid:
        # Its own namespace idmaps the layers: every owner there is a host id.
        owners = None if shift is None else _all_shifted(shift)
        rootfs.write_export(Path(f"/proc/{c.pid}/root"), out, prune, owners)
        return
    image = engine.images.get(c.image_id)
    engine.images.prepare_rootfs(c.id, image)
    upper = engine.images.rootfs_upper(c.id)
    owners = None if shift is None else _upper_shifted(shift, upper)
    with engine.images.rootfs_view(c.id) as root:
        rootfs.write_export(root, out, prune, owners)


def _all_shifted(shift: IdShift) -> rootfs.Owners:
    return lambda _rel, uid, gid: shift.to_container(uid, gid)


def _upper_shifted(shift: IdShift, upper: Path) -> rootfs.Owners:
    """A plain (not idmapped) view of a stopped container: what comes from its writable
    layer is stored with host ids, what comes from the image with container ids; an
    entry in the upper dir is what the merged view shows (overlayfs takes a merged
    directory's owner from the upper one too)."""
    def owners(rel: str, uid: int, gid: int) -> tuple[int, int]:
        if not os.path.lexists(upper / rel):
            return uid, gid
        return shift.to_container(uid, gid)
    return owners


def _stream_file(f: IO[bytes]) -> Iterator[bytes]:
    with contextlib.closing(f):
        while chunk := f.read(1 << 16):
            yield chunk
