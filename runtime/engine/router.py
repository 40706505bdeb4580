"""Maps Docker API paths to handlers; strips ``/vX.Y``; turns errors into Docker's JSON bodies.

Route modules (``routes_*.py``) each expose ``register(router, engine)`` and add
handlers with path templates: ``{id}`` matches one segment, ``{name:.*}`` any
rest (image names contain ``/`` and ``:``).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass

from runtime.api.errors import CoveError, InvalidArgument, NotFound
from runtime.engine.http import (
    API_VERSION,
    MIN_API_VERSION,
    Request,
    Response,
    json_response,
)

log = logging.getLogger(__name__)

Handler = Callable[[Request], Response]
_VERSION_PREFIX = re.compile(r"^/v(\d+)\.(\d+)(/.*)$")
_PARAM = re.compile(r"\{(\w+)(?::([^}]+))?\}")


def _version_tuple(v: str) -> tuple[int, int]:
    major, minor = v.split(".")
    return int(major), int(minor)


@dataclass(frozen=True, slots=True)
class _Route:
    method: str
    pattern: re.Pattern[str]
    template: str
    handler: Handler


def _compile(template: str) -> re.Pattern[str]:
    out, pos = "", 0
    for m in _PARAM.finditer(template):
        out += re.escape(template[pos : m.start()])
        regex = m.group(2) or "[^/]+"
        out += f"(?P<{m.group(1)}>{regex})"
        pos = m.end()
    out += re.escape(template[pos:])
    return re.compile(f"^{out}$")


def _first_segment(path: str) -> str:
    return path.split("/", 2)[1] if path.startswith("/") else ""


class Router:
    def __init__(self) -> None:
        self._routes: list[_Route] = []
        # Routes by the literal first segment of their template, in registration order:
        # a request tries only the few under its own first segment, not all ~100.
        self._by_segment: dict[str, list[_Route]] = {}
        self._segment_index_usable = True  # False once a template starts with a parameter

    def add(self, method: str, template: str, handler: Handler) -> None:
        route = _Route(method, _compile(template), template, handler)
        self._routes.append(route)
        segment = _first_segment(template)
        if "{" in segment or not template.startswith("/"):
            self._segment_index_usable = False
        self._by_segment.setdefault(segment, []).append(route)

    def route(self, method: str, template: str) -> Callable[[Handler], Handler]:
        def deco(fn: Handler) -> Handler:
            self.add(method, template, fn)
            return fn

        return deco

    def dispatch(self, req: Request) -> Response:
        try:
            self._strip_version(req)
            handler = self._match(req)
            return handler(req)
        except CoveError as e:
            if e.status >= 500:
                log.warning("%s %s: %s", req.method, req.path, e.message)
            return json_response({"message": e.message}, e.status)
        except Exception as e:
            log.exception("%s %s failed", req.method, req.path)
            return json_response({"message": f"internal error: {e}"}, 500)

    def _strip_version(self, req: Request) -> None:
        if not req.path.startswith("/v"):
            return  # unversioned (/_ping, docker-py's first calls): no regex needed
        m = _VERSION_PREFIX.match(req.path)
        if not m:
            return
        version = f"{m.group(1)}.{m.group(2)}"
        req.path = m.group(3)
        _check_version(version)
        req.api_version = version

    def _match(self, req: Request) -> Handler:
        method = "GET" if req.method == "HEAD" else req.method
        path_matched = False
        if self._segment_index_usable:
            candidates = self._by_segment.get(_first_segment(req.path), [])
        else:
            candidates = self._routes
        for route in candidates:
            m = route.pattern.match(req.path)
            if not m:
                continue
            path_matched = True
            if route.method == method:
                req.params = m.groupdict()
                return route.handler
        if path_matched:
            raise CoveError(f"method {req.method} not allowed for {req.path}")
        raise NotFound(f"page not found: {req.method} {req.path}")


def _check_version(version: str) -> None:
    """Refuse a client API version outside [MIN_API_VERSION, API_VERSION]."""
    if version in _SUPPORTED_SEEN:
        return
    v = _version_tuple(version)
    if v > _version_tuple(API_VERSION):
        raise InvalidArgument(
            f"client version {version} is too new. Maximum supported API version is "
            f"{API_VERSION}"
        )
    if v < _version_tuple(MIN_API_VERSION):
        raise InvalidArgument(
            f"client version {version} is too old. Minimum supported API version is "
            f"{MIN_API_VERSION}, please upgrade your client to a newer version"
        )
    if len(_SUPPORTED_SEEN) < 64:  # clients use a handful; bounded against odd ones
        _SUPPORTED_SEEN.add(version)


# Versions already found supported: every request names one, nearly always the same.
_SUPPORTED_SEEN: set[str] = set()


def api_at_least(req: Request, version: str) -> bool:
    return _version_tuple(req.api_version) >= _version_tuple(version)
