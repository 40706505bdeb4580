"""Docker JSON shapes for containers: inspect (ContainerInspectResponse) and list summaries.

Times are RFC3339Nano UTC with ``Z`` in inspect and unix ints in lists;
``Networks`` is never null; ``Ports`` is a map in inspect and an array in
lists (compat-notes §e).
"""

from __future__ import annotations

import functools
import time
from datetime import UTC, datetime
from typing import Any

from runtime.api.units import human_duration
from runtime.engine.records import Container
from runtime.engine.state import Status

ZERO_TIME = "0001-01-01T00:00:00Z"


@functools.lru_cache(maxsize=4096)
def rfc3339(ns: int) -> str:
    """Cached: the same few created/started/finished times are formatted on every
    list and inspect."""
    if ns <= 0:
        return ZERO_TIME
    secs, frac = divmod(ns, 1_000_000_000)
    base = datetime.fromtimestamp(secs, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{base}.{frac:09d}Z"


def status_text(c: Container) -> str:
    """Summary ``Status`` as moby's State.String()."""
    now = time.time()
    if c.status is Status.RUNNING:
        return f"Up {human_duration(now - c.started_at_ns / 1e9)}"
    if c.status is Status.PAUSED:
        return f"Up {human_duration(now - c.started_at_ns / 1e9)} (Paused)"
    if c.status is Status.RESTARTING:
        return f"Restarting ({c.exit_code}) {human_duration(now - c.finished_at_ns / 1e9)} ago"
    if c.status is Status.REMOVING:
        return "Removal In Progress"
    if c.status is Status.DEAD:
        return "Dead"
    if c.status is Status.EXITED and c.finished_at_ns:
        return f"Exited ({c.exit_code}) {human_duration(now - c.finished_at_ns / 1e9)} ago"
    return "Created"


def _ports_map(c: Container) -> dict[str, Any]:
    ports: dict[str, Any] = dict(c.network_settings.get("Ports") or {})
    for port in c.config.get("ExposedPorts") or {}:
        key = port if "/" in port else f"{port}/tcp"
        ports.setdefault(key, None)
    return ports


def _port_list(c: Container) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for key, bindings in _ports_map(c).items():
        num, _, proto = key.partition("/")
        if not bindings:
            out.append({"PrivatePort": int(num), "Type": proto or "tcp"})
            continue
        for b in bindings:
            out.append({
                "IP": b.get("HostIp") or "0.0.0.0",
                "PrivatePort": int(num),
                "PublicPort": int(b.get("HostPort") or 0),
                "Type": proto or "tcp",
            })
    return out


def command_line(c: Container, image_config: dict[str, Any]) -> tuple[str, list[str]]:
    from runtime.engine.specconv import command

    try:
        args = list(command(c.config, image_config))
    except Exception:
        args = []
    return (args[0] if args else ""), args[1:]


_ENDPOINT_DEFAULTS: dict[str, Any] = {
    "IPAMConfig": None, "Links": None, "Aliases": None, "MacAddress": "", "DriverOpts": None,
    "NetworkID": "", "EndpointID": "", "Gateway": "", "IPAddress": "", "IPPrefixLen": 0,
    "IPv6Gateway": "", "GlobalIPv6Address": "", "GlobalIPv6PrefixLen": 0, "DNSNames": None,
}


def configured_networks(c: Container) -> dict[str, Any]:
    """The networks a container is set up to join, before it runs (moby fills them at create).

    User-defined networks get the short-ID alias that API < 1.45 still shows.
    """
    mode = c.host_config.get("NetworkMode") or "default"
    mode = "bridge" if mode == "default" else mode
    if mode.startswith("container:"):
        return {}
    wanted = dict((c.networking_config or {}).get("EndpointsConfig") or {})
    if "default" in wanted:
        wanted.setdefault("bridge", wanted.pop("default"))
    names = [mode, *(n for n in wanted if n != mode)]
    out: dict[str, Any] = {}
    for name in names:
        ep = {**_ENDPOINT_DEFAULTS, **(wanted.get(name) or {})}
        if name not in ("bridge", "host", "none"):
            ep["Aliases"] = [*(ep.get("Aliases") or []), c.id[:12]]
        out[name] = ep
    return out


def network_settings(c: Container) -> dict[str, Any]:
    ns = dict(c.network_settings)
    if not ns.get("Networks"):
        ns["Networks"] = configured_networks(c)
    ns["Ports"] = _ports_map(c) if c.running else {}
    for key, default in (
        ("Bridge", ""), ("SandboxID", ""), ("SandboxKey", ""), ("HairpinMode", False),
        ("LinkLocalIPv6Address", ""), ("LinkLocalIPv6PrefixLen", 0), ("EndpointID", ""),
        ("Gateway", ""), ("GlobalIPv6Address", ""), ("GlobalIPv6PrefixLen", 0),
        ("IPAddress", ""), ("IPPrefixLen", 0), ("IPv6Gateway", ""), ("MacAddress", ""),
        ("SecondaryIPAddresses", None), ("SecondaryIPv6Addresses", None),
    ):
        ns.setdefault(key, default)
    return ns


def inspect(c: Container, image_config: dict[str, Any]) -> dict[str, Any]:
    path, args = command_line(c, image_config)
    config = dict(c.config)
    config.setdefault("Hostname", c.id[:12])
    if not config.get("Hostname"):
        config["Hostname"] = c.id[:12]
    config["Image"] = c.image_ref
    for key in ("Env", "Cmd", "Entrypoint", "WorkingDir", "User", "Labels", "StopSignal"):
        if not config.get(key) and image_config.get(key):
            config[key] = image_config[key]
    config.setdefault("Labels", {})
    host_config = dict(c.host_config)
    log_config = host_config.get("LogConfig") or {}
    if not log_config.get("Type"):
        # An empty type means the default driver; its options still apply (moby).
        host_config["LogConfig"] = {"Type": "json-file", "Config": log_config.get("Config") or {}}
    host_config["Runtime"] = host_config.get("Runtime") or "runc"
    host_config["NetworkMode"] = host_config.get("NetworkMode") or "bridge"
    if host_config["NetworkMode"] == "default":
        host_config["NetworkMode"] = "bridge"
    restart = host_config.get("RestartPolicy") or {}
    host_config["RestartPolicy"] = {
        "Name": restart.get("Name") or "no",
        "MaximumRetryCount": int(restart.get("MaximumRetryCount") or 0),
    }
    directory = str(c.directory)
    return {
        "Id": c.id,
        "Created": rfc3339(c.created_ns),
        "Path": path,
        "Args": args,
        "State": state(c),
        "Image": c.image_id,
        "ResolvConfPath": f"{directory}/resolv.conf",
        "HostnamePath": f"{directory}/hostname",
        "HostsPath": f"{directory}/hosts",
        "LogPath": str(c.log_path),
        "Name": "/" + c.name,
        "RestartCount": c.restart_count,
        "Driver": "overlay2",
        "Platform": "linux",
        "MountLabel": "",
        "ProcessLabel": "",
        "AppArmorProfile": "",
        "ExecIDs": sorted(c.exec_ids) or None,
        "HostConfig": host_config,
        "GraphDriver": {"Name": "overlay2", "Data": None},
        "Mounts": c.mounts_info,
        "Config": config,
        "NetworkSettings": network_settings(c),
    }


def state(c: Container) -> dict[str, Any]:
    return {
        "Status": c.status.value,
        "Running": c.status in (Status.RUNNING, Status.PAUSED),
        "Paused": c.status is Status.PAUSED,
        "Restarting": c.status is Status.RESTARTING,
        "OOMKilled": c.oom_killed,
        "Dead": c.status is Status.DEAD,
        "Pid": c.pid,
        "ExitCode": c.exit_code,
        "Error": c.error,
        "StartedAt": rfc3339(c.started_at_ns),
        "FinishedAt": rfc3339(c.finished_at_ns),
    }


def summary(c: Container, image_config: dict[str, Any]) -> dict[str, Any]:
    path, args = command_line(c, image_config)
    nets = network_settings(c).get("Networks") or {}
    mode = c.host_config.get("NetworkMode") or "bridge"
    return {
        "Id": c.id,
        "Names": ["/" + c.name],
        "Image": c.image_ref,
        "ImageID": c.image_id,
        "Command": " ".join([path, *args]).strip(),
        "Created": c.created_ns // 1_000_000_000,
        "Ports": _port_list(c) if c.running else [],
        "Labels": c.config.get("Labels") or {},
        "State": c.status.value,
        "Status": status_text(c),
        "HostConfig": {"NetworkMode": "bridge" if mode == "default" else mode},
        "NetworkSettings": {"Networks": nets},
        "Mounts": c.mounts_info,
    }
