"""``POST /build`` (docker's classic builder) and ``POST /build/prune``.

The context tar is unpacked while it is read (kept in memory up to a budget,
else into a private directory under the data root; see build/context.py),
before the streamed response starts: the HTTP layer drains what a handler
left of the body before answering.
A Dockerfile that does not parse is a plain 400, as in moby (nothing has been
written yet); everything after that is reported in band.
"""

from __future__ import annotations

import base64
import binascii
import json
import shutil
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from runtime.api import reference
from runtime.api.errors import InvalidArgument
from runtime.engine.engine import Engine
from runtime.engine.http import Request, Response, json_lines, json_response
from runtime.engine.router import Router, api_at_least
from runtime.engine.routes_images import _credentials
from runtime.images.registry.auth import Credentials

if TYPE_CHECKING:
    # runtime.build is imported on the first /build request: it is a large share of the
    # engine's start-up under TCG (the VM guest) and most engines never build.
    from runtime.build.cache import BuildCache
    from runtime.build.options import Options

_caches: dict[int, BuildCache] = {}


def _cache(engine: Engine) -> BuildCache:
    cache = _caches.get(id(engine))
    if cache is None:
        from runtime.build.cache import BuildCache

        cache = BuildCache(engine.layout.data_root / "build" / "cache.json", engine.images)
        _caches[id(engine)] = cache
    return cache


def _json_arg(req: Request, name: str, default: Any) -> Any:
    raw = req.str_arg(name)
    if not raw:
        return default
    try:
        return json.loads(raw)
    except json.JSONDecodeError:
        raise InvalidArgument(f"invalid {name} value: {raw}") from None


def options(req: Request) -> Options:
    from runtime.build.options import Options

    tags = tuple(t for t in req.query.get("t", []) if t)
    for tag in tags:
        reference.parse(tag)  # "invalid reference format" before reading the context
    build_args = _json_arg(req, "buildargs", {}) or {}
    labels = _json_arg(req, "labels", {}) or {}
    cache_from = _json_arg(req, "cachefrom", []) or []
    if not isinstance(build_args, dict) or not isinstance(labels, dict) or not isinstance(
            cache_from, list):
        raise InvalidArgument("buildargs and labels must be JSON objects, cachefrom a list")
    network = req.str_arg("networkmode")
    return Options(
        tags=tags,
        dockerfile=req.str_arg("dockerfile", "Dockerfile") or "Dockerfile",
        build_args={str(k): (None if v is None else str(v)) for k, v in build_args.items()},
        target=req.str_arg("target"),
        nocache=req.bool_arg("nocache"),
        pull=req.bool_arg("pull"),
        quiet=req.bool_arg("q"),
        labels={str(k): str(v) for k, v in labels.items()},
        network="" if network == "default" else network,
        rm=req.bool_arg("rm", True),
        forcerm=req.bool_arg("forcerm"),
        cache_from=tuple(str(c) for c in cache_from),
        extra_hosts=tuple(h for h in req.query.get("extrahosts", []) if h),
        registry_auths=registry_config(req.headers.get("X-Registry-Config", "")),
        legacy_output=not api_at_least(req, "1.44"),
    )


def registry_config(header: str) -> dict[str, Credentials]:
    """X-Registry-Config: base64url JSON of registry → ``{username, password, serveraddress}``
    (or ``auth``/``identitytoken``), every login the client has; the FROM pulls pick theirs.

    Like moby (getAuthConfigs), a header that does not decode means no logins.
    """
    if not header:
        return {}
    try:
        padded = header + "=" * (-len(header) % 4)
        data = json.loads(base64.urlsafe_b64decode(padded.encode()))
    except (binascii.Error, ValueError):
        return {}
    if not isinstance(data, dict):
        return {}
    out = {}
    for server, entry in data.items():
        if isinstance(entry, dict):
            try:
                out[str(server)] = _credentials(entry)
            except InvalidArgument:
                continue
    return out


def register(router: Router, engine: Engine) -> None:
    tmp = engine.layout.data_root / "build" / "tmp"
    # Contexts are removed in the background after each build: a previous engine that
    # stopped meanwhile may have left some.
    shutil.rmtree(tmp, ignore_errors=True)

    def build(req: Request) -> Response:
        if req.str_arg("version", "1") == "2":
            raise InvalidArgument("BuildKit (version=2) is not supported: use the classic "
                                  "builder (DOCKER_BUILDKIT=0)")
        if req.str_arg("remote"):
            raise InvalidArgument("remote build contexts are not supported")
        from runtime.build.builder import Builder
        from runtime.build.context import prepare
        from runtime.build.instructions import parse_dockerfile

        opts = options(req)
        ctx = prepare(req.body(), tmp, req.str_arg("dockerfile"))
        try:
            parsed = parse_dockerfile(ctx.dockerfile_text)
            builder = Builder(engine, opts, ctx, parsed, _cache(engine))
        except BaseException:
            ctx.close()
            raise

        def stream() -> Iterator[dict[str, Any]]:
            try:
                yield from builder.run()
            finally:
                ctx.close()

        return json_lines(stream())

    def prune(req: Request) -> Response:
        deleted, freed = _cache(engine).prune()
        engine.events.publish("builder", "prune", "", reclaimed=str(freed))
        return json_response({"CachesDeleted": deleted, "SpaceReclaimed": freed})

    router.add("POST", "/build", build)
    router.add("POST", "/build/prune", prune)
