"""``--change`` Dockerfile instructions applied to an image config (import, commit).

Supported, as ``docker import/commit --change`` does: CMD, ENTRYPOINT, ENV,
EXPOSE, LABEL, USER, WORKDIR, VOLUME, STOPSIGNAL, ONBUILD (and HEALTHCHECK NONE).
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Callable
from typing import Any

from runtime.api.errors import InvalidArgument

Config = dict[str, Any]


def apply_changes(config: Config, changes: list[str]) -> Config:
    """A copy of the image's ``config`` section with *changes* applied in order."""
    out: Config = json.loads(json.dumps(config))
    for change in changes:
        for line in change.splitlines():
            line = line.strip()
            if line and not line.startswith("#"):
                _apply_one(out, line)
    return out


def _apply_one(config: Config, line: str) -> None:
    word, _, rest = line.partition(" ")
    handler = _HANDLERS.get(word.upper())
    if handler is None:
        raise InvalidArgument(f"{word} is not a valid change command")
    rest = rest.strip()
    if not rest:
        raise InvalidArgument(f"{word.upper()} requires at least one argument")
    handler(config, rest)


def _exec_form(rest: str) -> list[str]:
    """JSON array form, or shell form wrapped in ``/bin/sh -c``."""
    if rest.startswith("["):
        try:
            value = json.loads(rest)
        except json.JSONDecodeError:
            value = None
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return value
    return ["/bin/sh", "-c", rest]


def _words(rest: str) -> list[str]:
    if rest.startswith("["):
        value = json.loads(rest)
        if isinstance(value, list):
            return [str(v) for v in value]
    try:
        return shlex.split(rest)
    except ValueError as e:
        raise InvalidArgument(f"invalid change {rest!r}: {e}") from None


def _pairs(keyword: str, rest: str) -> list[tuple[str, str]]:
    words = _words(rest)
    if "=" not in words[0]:  # legacy "ENV key value with spaces"
        key, _, value = rest.partition(" ")
        return [(key, value.strip())]
    out = []
    for w in words:
        key, eq, value = w.partition("=")
        if not eq or not key:
            raise InvalidArgument(f"{keyword} names can not be blank / need key=value: {w!r}")
        out.append((key, value))
    return out


def _cmd(config: Config, rest: str) -> None:
    config["Cmd"] = _exec_form(rest)


def _entrypoint(config: Config, rest: str) -> None:
    config["Entrypoint"] = _exec_form(rest)
    config.setdefault("Cmd", None)


def _env(config: Config, rest: str) -> None:
    env: list[str] = list(config.get("Env") or [])
    for key, value in _pairs("ENV", rest):
        env = [e for e in env if e.split("=", 1)[0] != key] + [f"{key}={value}"]
    config["Env"] = env


def _label(config: Config, rest: str) -> None:
    labels = dict(config.get("Labels") or {})
    labels.update(_pairs("LABEL", rest))
    config["Labels"] = labels


def _expose(config: Config, rest: str) -> None:
    ports = dict(config.get("ExposedPorts") or {})
    for p in _words(rest):
        port = p if "/" in p else f"{p}/tcp"
        num, _, proto = port.partition("/")
        if not num.replace("-", "").isdigit() or proto not in ("tcp", "udp", "sctp"):
            raise InvalidArgument(f"invalid containerPort: {p}")
        ports[port] = {}
    config["ExposedPorts"] = ports


def _volume(config: Config, rest: str) -> None:
    volumes = dict(config.get("Volumes") or {})
    for v in _words(rest):
        volumes[v] = {}
    config["Volumes"] = volumes


def _setter(key: str) -> Callable[[Config, str], None]:
    def set_value(config: Config, rest: str) -> None:
        config[key] = rest

    return set_value


def _onbuild(config: Config, rest: str) -> None:
    word = rest.split(" ", 1)[0].upper()
    if word in ("ONBUILD", "FROM", "MAINTAINER"):
        raise InvalidArgument(f"{word} isn't allowed as an ONBUILD trigger")
    config["OnBuild"] = [*list(config.get("OnBuild") or []), rest]


def _healthcheck(config: Config, rest: str) -> None:
    if rest.upper() != "NONE":
        raise InvalidArgument("only HEALTHCHECK NONE is supported in --change")
    config["Healthcheck"] = {"Test": ["NONE"]}


_HANDLERS: dict[str, Callable[[Config, str], None]] = {
    "CMD": _cmd,
    "ENTRYPOINT": _entrypoint,
    "ENV": _env,
    "LABEL": _label,
    "EXPOSE": _expose,
    "VOLUME": _volume,
    "USER": _setter("User"),
    "WORKDIR": _setter("WorkingDir"),
    "STOPSIGNAL": _setter("StopSignal"),
    "ONBUILD": _onbuild,
    "HEALTHCHECK": _healthcheck,
}
