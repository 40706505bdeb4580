"""Legacy ``--link`` environment variables (moby's daemon/links ``Link.ToEnv``).

``HostConfig.Links`` entries are ``name:alias``; each linked container's
address, exposed ports and environment show up in the linking container as
``ALIAS_NAME``, ``ALIAS_PORT_80_TCP_ADDR``, ``ALIAS_ENV_FOO`` and so on.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from runtime.api.errors import CoveError
from runtime.engine.records import Container

_SKIPPED_ENV = ("HOME", "PATH", "HOSTNAME")


def parse_link(spec: str) -> tuple[str, str]:
    name, _, alias = spec.partition(":")
    name = name.strip("/")
    return name, (alias or name).strip("/").rsplit("/", 1)[-1]


def link_env(c: Container, lookup: Callable[[str], Container]) -> list[str]:
    env: list[str] = []
    for spec in c.host_config.get("Links") or []:
        name, alias = parse_link(str(spec))
        try:
            child = lookup(name)
        except CoveError:
            continue
        env += _one(c, child, alias)
    return env


def _one(parent: Container, child: Container, alias: str) -> list[str]:
    prefix = alias.upper().replace("-", "_")
    ip = _ip(child.network_settings)
    env = [f"{prefix}_NAME=/{parent.name}/{alias}"]
    ports = sorted(child.config.get("ExposedPorts") or {}, key=_port_key)
    for i, port in enumerate(ports):
        number, _, proto = port.partition("/")
        proto = proto or "tcp"
        url = f"{proto}://{ip}:{number}"
        if i == 0:
            env.append(f"{prefix}_PORT={url}")
        key = f"{prefix}_PORT_{number}_{proto.upper()}"
        env += [f"{key}={url}", f"{key}_ADDR={ip}", f"{key}_PORT={number}",
                f"{key}_PROTO={proto}"]
    for entry in child.config.get("Env") or []:
        var, sep, value = str(entry).partition("=")
        if sep and var not in _SKIPPED_ENV:
            env.append(f"{prefix}_ENV_{var}={value}")
    return env


def _port_key(port: str) -> tuple[int, str]:
    number, _, proto = port.partition("/")
    return (int(number) if number.isdigit() else 0, proto)


def _ip(settings: dict[str, Any]) -> str:
    if settings.get("IPAddress"):
        return str(settings["IPAddress"])
    for ep in (settings.get("Networks") or {}).values():
        if ep.get("IPAddress"):
            return str(ep["IPAddress"])
    return ""
