"""Container endpoints: create, list, inspect, lifecycle verbs, wait, delete, prune."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from runtime.api.errors import CoveError, InvalidArgument, NotFound
from runtime.engine.health import check_of
from runtime.engine.http import Request, Response, json_response, no_content
from runtime.engine.records import Container
from runtime.engine.router import Router
from runtime.engine.state import Status
from runtime.engine.views import inspect, summary
from runtime.fsutil import apparent_size

if TYPE_CHECKING:
    from runtime.engine.engine import Engine


def register(router: Router, engine: Engine) -> None:
    svc = engine.containers

    # Image ID -> the config section of that image. An image's config is fixed by its ID
    # (the ID is the config's digest), so only the image's presence needs checking per
    # request; parsing the config blob again on every list and inspect dominated them.
    # The dicts are shared: callers only read them.
    configs: dict[str, dict[str, Any]] = {}

    def image_config(c: Container) -> dict[str, Any]:
        """The image's config section ({} when the image is gone)."""
        try:
            engine.images.record(c.image_id)
        except CoveError:
            configs.pop(c.image_id, None)
            return _uncached_image_config(engine, c.image_id)
        cfg = configs.get(c.image_id)
        if cfg is None:
            cfg = _uncached_image_config(engine, c.image_id)
            if len(configs) >= _MAX_CACHED_CONFIGS:
                configs.clear()
            configs[c.image_id] = cfg
        return cfg

    def health_of(c: Container, cfg: dict[str, Any]) -> dict[str, Any] | None:
        """``State.Health``; without a healthcheck there is none to look up."""
        if check_of(c.config, cfg) is None:
            return None
        return engine.health.health(c)

    @router.route("POST", "/containers/create")
    def create(req: Request) -> Response:
        body = req.json(default=None)
        if not isinstance(body, dict):
            raise InvalidArgument("config cannot be empty in order to create a container")
        c = svc.create(req.str_arg("name"), body)
        return json_response({"Id": c.id, "Warnings": []}, 201)

    @router.route("GET", "/containers/json")
    def list_(req: Request) -> Response:
        show_all = req.bool_arg("all")
        limit = req.int_arg("limit", -1) or -1
        filters = req.filters()
        items = [c for c in svc.all() if show_all or c.running or _explicit_status(filters)]
        items = [c for c in items if _matches(c, filters, engine)]
        if req.bool_arg("latest"):
            limit = 1
        if limit > 0:
            items = items[:limit]
        out = [with_health(c) for c in items]
        if req.bool_arg("size"):
            for entry in out:
                entry["SizeRw"] = 0
                entry["SizeRootFs"] = 0
        return json_response(out)

    def with_health(c: Container) -> dict[str, Any]:
        cfg = image_config(c)
        entry = summary(c, cfg)
        health = health_of(c, cfg) if c.running else None
        status = str(health["Status"]) if health else ""
        if status:
            entry["Status"] += " (health: starting)" if status == "starting" else f" ({status})"
        return entry

    bodies = _InspectBodies()

    @router.route("GET", "/containers/{id}/json")
    def inspect_(req: Request) -> Response:
        c = svc.get(req.params["id"])
        cfg = image_config(c)
        health = health_of(c, cfg)
        size = req.bool_arg("size")
        if health is None and not size:
            return Response(body=bodies.get(c, cfg))
        data = inspect(c, cfg)
        if health is not None:
            data["State"]["Health"] = health
        if size:
            data["SizeRw"] = 0
            data["SizeRootFs"] = 0
        return json_response(data)

    @router.route("POST", "/containers/{id}/start")
    def start(req: Request) -> Response:
        svc.start(req.params["id"])
        return no_content()

    @router.route("POST", "/containers/{id}/stop")
    def stop(req: Request) -> Response:
        svc.stop(req.params["id"], req.int_arg("t"), req.str_arg("signal") or None)
        return no_content()

    @router.route("POST", "/containers/{id}/restart")
    def restart(req: Request) -> Response:
        svc.restart(req.params["id"], req.int_arg("t"), req.str_arg("signal") or None)
        return no_content()

    @router.route("POST", "/containers/{id}/kill")
    def kill(req: Request) -> Response:
        svc.kill(req.params["id"], req.str_arg("signal", "SIGKILL"))
        return no_content()

    @router.route("POST", "/containers/{id}/pause")
    def pause(req: Request) -> Response:
        svc.pause(req.params["id"])
        return no_content()

    @router.route("POST", "/containers/{id}/unpause")
    def unpause(req: Request) -> Response:
        svc.unpause(req.params["id"])
        return no_content()

    @router.route("POST", "/containers/{id}/rename")
    def rename(req: Request) -> Response:
        svc.rename(req.params["id"], req.str_arg("name"))
        return no_content()

    @router.route("POST", "/containers/{id}/update")
    def update(req: Request) -> Response:
        body = req.json(default={})
        if not isinstance(body, dict):
            raise InvalidArgument("invalid update body")
        return json_response({"Warnings": svc.update(req.params["id"], body)})

    @router.route("DELETE", "/containers/{id}")
    def delete(req: Request) -> Response:
        svc.remove(req.params["id"], force=req.bool_arg("force"), volumes=req.bool_arg("v"))
        return no_content()

    @router.route("DELETE", "/containers/{id}/{link}")
    def delete_link(req: Request) -> Response:
        if not req.bool_arg("link"):
            raise NotFound(f"page not found: DELETE {req.path}")
        svc.remove_link(f"{req.params['id']}/{req.params['link']}")
        return no_content()

    @router.route("POST", "/containers/{id}/wait")
    def wait(req: Request) -> Response:
        c = svc.get(req.params["id"])
        condition = req.str_arg("condition")
        if condition not in ("", "not-running", "next-exit", "removed"):
            raise InvalidArgument(f'invalid condition: "{condition}"')

        def body() -> Iterator[bytes]:
            yield b""  # headers go out now; the CLI sends wait before start
            code = svc.wait(c, condition)
            err = {"Message": c.error} if c.error else None
            yield json.dumps({"StatusCode": code, "Error": err}).encode() + b"\n"

        return Response(200, body())

    @router.route("POST", "/containers/prune")
    def prune(req: Request) -> Response:
        filters = req.filters()
        deleted = []
        reclaimed = 0
        for c in svc.all():
            if c.status in (Status.EXITED, Status.CREATED, Status.DEAD) and _labels_match(
                c, filters
            ):
                try:
                    size = apparent_size(engine.images.rootfs_upper(c.id))
                    svc.remove(c.id, force=False, volumes=False)
                    deleted.append(c.id)
                    reclaimed += size
                except NotFound:
                    continue
        return json_response({"ContainersDeleted": deleted or None,
                              "SpaceReclaimed": reclaimed})


_MAX_CACHED_CONFIGS = 256


class _InspectBodies:
    """Inspect replies already encoded, per container, for as long as they stay true.

    Without a healthcheck (whose status moves on by itself) an inspect is a function
    of the record, which bumps ``version`` on every assignment, its image's config
    (one dict per image while the image exists) and its exec IDs (a set grown in
    place). Building and encoding the ~4 KB reply was most of an inspect's time.
    """

    LIMIT = 1024  # containers; past that the cache starts over

    def __init__(self) -> None:
        self._entries: dict[str, tuple[Container, int, dict[str, Any], frozenset[str], bytes]] = {}

    def get(self, c: Container, cfg: dict[str, Any]) -> bytes:
        version = c.version  # read before building: a change meanwhile misses next time
        execs = frozenset(c.exec_ids)
        entry = self._entries.get(c.id)
        if (entry is not None and entry[0] is c and entry[1] == version
                and entry[2] is cfg and entry[3] == execs):
            return entry[4]
        body = json_response(inspect(c, cfg)).body
        assert isinstance(body, bytes)
        if len(self._entries) >= self.LIMIT:
            self._entries.clear()
        self._entries[c.id] = (c, version, cfg, execs, body)
        return body


def _uncached_image_config(engine: Engine, image_id: str) -> dict[str, Any]:
    try:
        cfg: dict[str, Any] = engine.images.get(image_id).config.get("config") or {}
    except CoveError:
        cfg = {}
    return cfg


def _explicit_status(filters: dict[str, list[str]]) -> bool:
    return bool(filters.get("status")) or bool(filters.get("exited"))


def _labels_match(c: Container, filters: dict[str, list[str]]) -> bool:
    labels = c.config.get("Labels") or {}
    for cond in filters.get("label", []):
        key, sep, value = cond.partition("=")
        if key not in labels or (sep and labels[key] != value):
            return False
    for cond in filters.get("label!", []):
        key, sep, value = cond.partition("=")
        if key in labels and (not sep or labels[key] == value):
            return False
    return True


def _matches(c: Container, f: dict[str, list[str]], engine: Engine) -> bool:
    """Docker's container list filters; values of one key OR together, keys AND."""
    if not _labels_match(c, f):
        return False
    checks: dict[str, Any] = {
        "id": lambda v: c.id.startswith(v),
        "name": lambda v: _name_matches(c.name, v),
        "status": lambda v: c.status.value == v,
        "exited": lambda v: c.status is Status.EXITED and str(c.exit_code) == v,
        "ancestor": lambda v: _ancestor(c, v, engine),
        "network": lambda v: v in (c.network_settings.get("Networks") or {})
        or v == (c.host_config.get("NetworkMode") or ""),
        "volume": lambda v: any(
            v in (m.get("Name"), m.get("Source"), m.get("Destination")) for m in c.mounts_info
        ),
        "health": lambda v: v == (engine.health.status(c) or "none"),
        "is-task": lambda v: v in ("false", "0"),
        "before": lambda v: _created(engine, v) > c.created_ns,
        "since": lambda v: _created(engine, v) < c.created_ns,
        "publish": lambda v: _publishes(c, v),
        "expose": lambda v: _exposes(c, v),
    }
    for key, values in f.items():
        if key in ("label", "label!"):
            continue
        test = checks.get(key)
        if test is None:
            raise InvalidArgument(f"invalid filter '{key}'")
        if values and not any(test(v) for v in values):
            return False
    return True


def _name_matches(name: str, pattern: str) -> bool:
    import re

    try:
        return re.search(pattern.lstrip("/"), name) is not None
    except re.error:
        return pattern.lstrip("/") in name


def _ancestor(c: Container, ref: str, engine: Engine) -> bool:
    if c.image_ref == ref or c.image_id == ref or c.image_id.removeprefix("sha256:").startswith(
        ref
    ):
        return True
    try:
        return bool(engine.images.get(ref).id == c.image_id)
    except CoveError:
        return False


def _created(engine: Engine, ref: str) -> int:
    return engine.containers.get(ref).created_ns


def _publishes(c: Container, value: str) -> bool:
    port, _, proto = value.partition("/")
    for key, bindings in (c.network_settings.get("Ports") or {}).items():
        if not key.endswith("/" + (proto or "tcp")):
            continue
        if any(str(b.get("HostPort")) == port for b in bindings or []):
            return True
    return False


def _exposes(c: Container, value: str) -> bool:
    port, _, proto = value.partition("/")
    return f"{port}/{proto or 'tcp'}" in (c.config.get("ExposedPorts") or {})
