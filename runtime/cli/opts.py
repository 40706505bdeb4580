"""Parsers for docker's compound flag values (pure functions, unit-tested).

``-p``, ``--expose``, ``--env-file``, ``--mount``, ``--ulimit``, ``--restart``,
``key=value`` lists: each returns the engine-side JSON shape docker builds.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from typing import Any

from runtime.cli.base import CliError

PortBindings = dict[str, list[dict[str, str]]]


def _port_range(text: str, what: str) -> tuple[int, int]:
    lo, sep, hi = text.partition("-")
    try:
        start, end = int(lo), int(hi) if sep else int(lo)
    except ValueError:
        raise CliError(f"invalid {what}: {text}") from None
    if not (0 <= start <= 65535 and 0 <= end <= 65535) or end < start:
        raise CliError(f"invalid {what}: {text}")
    return start, end


def _split_publish(spec: str) -> tuple[str, str, str]:
    """``[ip:][hostPort:]containerPort`` (IPv6 in brackets) → (ip, host, container)."""
    if spec.startswith("["):
        end = spec.find("]")
        if end < 0:
            raise CliError(f"invalid IP address: {spec}")
        ip, rest = spec[1:end], spec[end + 1 :].lstrip(":")
        host, _, container = rest.rpartition(":")
        return ip, host, container
    parts = spec.split(":")
    if len(parts) == 1:
        return "", "", parts[0]
    if len(parts) == 2:
        return "", parts[0], parts[1]
    if len(parts) == 3:
        return parts[0], parts[1], parts[2]
    # Unbracketed IPv6: everything before the last two fields is the address.
    return ":".join(parts[:-2]), parts[-2], parts[-1]


def parse_publish(specs: Iterable[str]) -> tuple[dict[str, dict[str, Any]], PortBindings]:
    """``-p`` values → (ExposedPorts, PortBindings), with ranges (nat.ParsePortSpec)."""
    exposed: dict[str, dict[str, Any]] = {}
    bindings: PortBindings = {}
    for spec in specs:
        rest, _, proto = spec.partition("/")
        proto = (proto or "tcp").lower()
        if proto not in ("tcp", "udp", "sctp"):
            raise CliError(f"invalid proto: {proto}")
        ip, host, container = _split_publish(rest)
        if not container:
            raise CliError(f"no port specified: {spec}<empty>")
        c_lo, c_hi = _port_range(container, "containerPort")
        h_lo, h_hi = _port_range(host, "hostPort") if host else (0, 0)
        n = c_hi - c_lo
        if host and h_hi - h_lo != n and n != 0:
            raise CliError(f"invalid ranges specified for container and host Ports: {spec}")
        for i in range(n + 1):
            key = f"{c_lo + i}/{proto}"
            exposed[key] = {}
            if not host:
                host_port = ""
            elif n == 0 and h_hi != h_lo:  # one container port, a host range to pick from
                host_port = f"{h_lo}-{h_hi}"
            else:
                host_port = str(h_lo + i)
            bindings.setdefault(key, []).append({"HostIp": ip, "HostPort": host_port})
    return exposed, bindings


def parse_expose(specs: Iterable[str]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for spec in specs:
        ports, _, proto = spec.partition("/")
        lo, hi = _port_range(ports, "range format for --expose")
        for port in range(lo, hi + 1):
            out[f"{port}/{proto or 'tcp'}"] = {}
    return out


def parse_env_file(path: str) -> list[str]:
    """docker's env-file rules: KEY=VALUE verbatim, bare KEY copies the caller's value."""
    try:
        with open(path, encoding="utf-8-sig") as f:
            lines = f.read().splitlines()
    except OSError as e:
        raise CliError(f"open {path}: {e.strerror or e}") from e
    return parse_env_lines(lines, path)


def parse_env_lines(lines: Iterable[str], source: str = "env file") -> list[str]:
    out: list[str] = []
    for line in lines:
        line = line.lstrip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        if not key:
            raise CliError(f"invalid variable in {source}: no variable name")
        if re.search(r"\s", key):
            raise CliError(f"variable '{key}' contains whitespaces")
        if sep:
            out.append(f"{key}={value}")
        elif key in os.environ:
            out.append(f"{key}={os.environ[key]}")
    return out


def parse_env(values: Iterable[str]) -> list[str]:
    """``-e KEY=V`` as given; ``-e KEY`` takes the caller's value or is dropped."""
    out = []
    for v in values:
        if "=" in v:
            out.append(v)
        elif v in os.environ:
            out.append(f"{v}={os.environ[v]}")
    return out


def parse_kv(values: Iterable[str], what: str = "label") -> dict[str, str]:
    out: dict[str, str] = {}
    for v in values:
        key, _, value = v.partition("=")
        if not key:
            raise CliError(f"invalid {what}: {v!r}")
        out[key] = value
    return out


def parse_restart(value: str) -> dict[str, Any]:
    name, _, count = value.partition(":")
    if name not in ("no", "always", "unless-stopped", "on-failure"):
        raise CliError(f"invalid restart policy format: {value}")
    policy: dict[str, Any] = {"Name": name, "MaximumRetryCount": 0}
    if count:
        if name != "on-failure":
            raise CliError(f"maximum retry count cannot be used with restart policy '{name}'")
        try:
            policy["MaximumRetryCount"] = int(count)
        except ValueError:
            raise CliError(f"invalid restart policy format: {value}") from None
    return policy


def parse_ulimit(value: str) -> dict[str, Any]:
    name, sep, limits = value.partition("=")
    if not sep or not name:
        raise CliError(f"invalid ulimit argument: {value}")
    soft, _, hard = limits.partition(":")
    try:
        return {"Name": name, "Soft": int(soft), "Hard": int(hard or soft)}
    except ValueError:
        raise CliError(f"invalid ulimit argument: {value}") from None


def _size(text: str) -> int:
    from runtime.api.units import ram_in_bytes

    try:
        return ram_in_bytes(text)
    except ValueError:
        raise CliError(f"invalid size: '{text}'") from None


def parse_mount(value: str) -> dict[str, Any]:
    """``--mount type=bind,source=/a,target=/b,readonly`` → a HostConfig.Mounts entry."""
    fields: dict[str, str] = {}
    for part in value.split(","):
        key, sep, val = part.partition("=")
        fields[key.strip().lower()] = val if sep else "true"
    mount: dict[str, Any] = {"Type": fields.pop("type", "volume")}
    for key, val in fields.items():
        if key in ("source", "src"):
            mount["Source"] = val
        elif key in ("target", "destination", "dst"):
            mount["Target"] = val
        elif key in ("readonly", "ro"):
            mount["ReadOnly"] = val.lower() in ("1", "true")
        elif key == "bind-propagation":
            mount.setdefault("BindOptions", {})["Propagation"] = val
        elif key == "volume-nocopy":
            mount.setdefault("VolumeOptions", {})["NoCopy"] = val.lower() in ("1", "true")
        elif key == "tmpfs-size":
            mount.setdefault("TmpfsOptions", {})["SizeBytes"] = _size(val)
        elif key == "tmpfs-mode":
            mount.setdefault("TmpfsOptions", {})["Mode"] = int(val, 8)
        elif key in ("consistency", "volume-driver", "volume-label", "volume-opt"):
            continue  # accepted for compatibility, not used by Cove
        else:
            raise CliError(f"invalid field '{key}' must be a key=value pair")
    if "Target" not in mount:
        raise CliError("target is required")
    return mount


def parse_tmpfs(values: Iterable[str]) -> dict[str, str]:
    out = {}
    for v in values:
        path, _, options = v.partition(":")
        out[path] = options
    return out


def split_volumes(values: Iterable[str]) -> tuple[list[str], dict[str, dict[str, Any]]]:
    """``-v`` values: "src:dst[:opts]" are Binds, a lone "/path" is an anonymous volume."""
    binds: list[str] = []
    anonymous: dict[str, dict[str, Any]] = {}
    for v in values:
        if ":" in v:
            binds.append(v)
        else:
            anonymous[v] = {}
    return binds, anonymous


def parse_add_host(values: Iterable[str]) -> list[str]:
    out = []
    for v in values:
        host, sep, ip = v.partition("=") if "=" in v else v.partition(":")
        if not sep or not host:
            raise CliError(f'invalid argument {v!r} for "--add-host" flag')
        out.append(f"{host}:{ip}")
    return out


def format_ports(ports: Iterable[Mapping[str, Any]]) -> str:
    """A ps row's PORTS column (docker's DisplayablePorts, ranges folded)."""
    groups: dict[tuple[str, str, bool], list[tuple[int, int]]] = {}
    order: list[tuple[str, str, bool]] = []
    for p in sorted(ports, key=lambda p: (p.get("Type", ""), p.get("PrivatePort", 0))):
        ip = str(p.get("IP") or "")
        public = p.get("PublicPort")
        key = (ip, str(p.get("Type", "tcp")), bool(public))
        if key not in groups:
            groups[key], order = [], [*order, key]
        groups[key].append((int(public or 0), int(p.get("PrivatePort", 0))))
    out: list[str] = []
    for key in order:
        ip, proto, published = key
        for first, last in _fold(groups[key]):
            out.append(_port_text(ip, proto, published, first, last))
    return ", ".join(out)


def _fold(pairs: list[tuple[int, int]]) -> list[tuple[tuple[int, int], tuple[int, int]]]:
    """Consecutive (public, private) pairs become one range."""
    runs: list[tuple[tuple[int, int], tuple[int, int]]] = []
    for pub, priv in pairs:
        if runs:
            first, last = runs[-1]
            if priv == last[1] + 1 and (pub == last[0] + 1 or (pub == 0 and last[0] == 0)):
                runs[-1] = (first, (pub, priv))
                continue
        runs.append(((pub, priv), (pub, priv)))
    return runs


def _port_text(
    ip: str, proto: str, published: bool, first: tuple[int, int], last: tuple[int, int]
) -> str:
    def span(a: int, b: int) -> str:
        return str(a) if a == b else f"{a}-{b}"

    private = span(first[1], last[1]) + "/" + proto
    if not published:
        return private
    host = f"[{ip}]" if ":" in ip else ip
    return f"{host}:{span(first[0], last[0])}->{private}"


def ipam_config(ip: str, ip6: str) -> dict[str, str]:
    """An endpoint's IPAMConfig for ``--ip``/``--ip6`` (empty: the engine picks)."""
    out = {"IPv4Address": ip} if ip else {}
    if ip6:
        out["IPv6Address"] = ip6
    return out
