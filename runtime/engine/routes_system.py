"""System endpoints: ping, version, info, events, df, auth-less swarm refusals."""

from __future__ import annotations

import json
import os
import platform
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from runtime.api.errors import InvalidArgument, Unavailable
from runtime.engine.events import Event
from runtime.engine.http import API_VERSION, MIN_API_VERSION, Request, Response, json_response
from runtime.engine.logs import parse_client_time
from runtime.engine.router import Router, api_at_least
from runtime.engine.state import Status

if TYPE_CHECKING:
    from runtime.engine.engine import Engine

VERSION = "0.1.0"
_PING_HEADERS = {
    "Builder-Version": "1",
    "Swarm": "inactive",
    "Cache-Control": "no-cache, no-store, must-revalidate",
    "Pragma": "no-cache",
}


def register(router: Router, engine: Engine) -> None:
    @router.route("GET", "/_ping")
    def ping(req: Request) -> Response:
        return Response(200, b"OK", content_type="text/plain; charset=utf-8",
                        headers=dict(_PING_HEADERS))

    @router.route("GET", "/version")
    def version(req: Request) -> Response:
        return json_response(version_info())

    @router.route("GET", "/info")
    def info(req: Request) -> Response:
        return json_response(system_info(engine))

    @router.route("GET", "/events")
    def events(req: Request) -> Response:
        since = parse_client_time(req.str_arg("since"))
        until = parse_client_time(req.str_arg("until"))
        filters = req.filters()
        stream = engine.events.subscribe(since_ns=since, until_ns=until)

        def body() -> Iterator[bytes]:
            yield b""
            for ev in stream:
                if ev is None:
                    if req.client_gone():
                        return
                    continue
                if _event_matches(ev, filters):
                    yield json.dumps(ev.to_json()).encode() + b"\n"

        return Response(200, body())

    @router.route("GET", "/system/df")
    def disk_usage(req: Request) -> Response:
        from runtime.engine.diskusage import KINDS, system_df

        kinds = [k for k in req.query.get("type", []) if k]
        if not kinds or not api_at_least(req, "1.42"):
            return json_response(system_df(engine, req.api_version))
        unknown = [k for k in kinds if k not in KINDS]
        if unknown:
            raise InvalidArgument(f"unknown object type: {unknown[0]}")
        return json_response(system_df(engine, req.api_version, frozenset(kinds)))

    for prefix in ("/swarm", "/services", "/nodes", "/tasks", "/secrets", "/configs",
                   "/plugins"):
        for template in (prefix, prefix + "/{rest:.*}"):
            for method in ("GET", "POST", "DELETE"):
                router.add(method, template, _no_swarm)


def _no_swarm(req: Request) -> Response:
    raise Unavailable(
        "This node is not a swarm manager. Cove does not support swarm mode."
    )


def _event_matches(ev: Event, filters: dict[str, list[str]]) -> bool:
    attrs = ev.attributes
    for key, values in filters.items():
        if not values:
            continue
        if key == "type":
            ok = ev.type in values
        elif key == "event":
            ok = ev.action.split(":")[0] in values
        elif key in ("container", "image", "volume", "network"):
            ok = ev.type == key and (
                ev.actor_id in values or attrs.get("name") in values
                or any(ev.actor_id.startswith(v) for v in values)
            )
        elif key == "label":
            ok = all(_label_ok(attrs, v) for v in values)
        elif key == "scope":
            ok = ev.scope in values
        elif key == "daemon":
            ok = ev.type == "daemon"
        else:
            ok = True
        if not ok:
            return False
    return True


def _label_ok(attrs: dict[str, str], cond: str) -> bool:
    key, sep, value = cond.partition("=")
    return key in attrs and (not sep or attrs[key] == value)


def version_info() -> dict[str, Any]:
    uname = os.uname()
    return {
        "Platform": {"Name": "Cove Engine"},
        "Components": [{"Name": "Engine", "Version": VERSION,
                        "Details": {"ApiVersion": API_VERSION, "MinAPIVersion": MIN_API_VERSION,
                                    "Os": "linux", "Arch": _arch(),
                                    "KernelVersion": uname.release}}],
        "Version": VERSION,
        "ApiVersion": API_VERSION,
        "MinAPIVersion": MIN_API_VERSION,
        "GitCommit": "cove",
        "GoVersion": "python" + platform.python_version(),
        "Os": "linux",
        "Arch": _arch(),
        "KernelVersion": uname.release,
        "BuildTime": "2026-11-28T00:00:00.000000000+00:00",
    }


def _arch() -> str:
    machine = os.uname().machine
    return {"x86_64": "amd64", "aarch64": "arm64"}.get(machine, machine)


def _mem_total() -> int:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def _os_name() -> str:
    try:
        with open("/etc/os-release") as f:
            for line in f:
                if line.startswith("PRETTY_NAME="):
                    return line.split("=", 1)[1].strip().strip('"')
    except OSError:
        pass
    return "Linux"


def system_info(engine: Engine) -> dict[str, Any]:
    containers = engine.containers.all()
    running = sum(1 for c in containers if c.status is Status.RUNNING)
    paused = sum(1 for c in containers if c.status is Status.PAUSED)
    uname = os.uname()
    cgroup_version = "2" if _cgroup2_only() else "1"
    return {
        "ID": engine.id,
        "Containers": len(containers),
        "ContainersRunning": running,
        "ContainersPaused": paused,
        "ContainersStopped": len(containers) - running - paused,
        "Images": len(engine.images.list()),
        "Driver": "overlay2",
        "DriverStatus": [["Backing Filesystem", "extfs"], ["Supports d_type", "true"]],
        "Plugins": {"Volume": ["local"], "Network": ["bridge", "host", "null"],
                    "Authorization": None, "Log": ["json-file", "local"]},
        "MemoryLimit": True, "SwapLimit": True, "KernelMemory": False,
        "CpuCfsPeriod": True, "CpuCfsQuota": True, "CPUShares": True, "CPUSet": True,
        "PidsLimit": True, "OomKillDisable": False, "IPv4Forwarding": True,
        "BridgeNfIptables": False, "BridgeNfIp6tables": False,
        "Debug": engine.config.debug, "NFd": len(os.listdir("/proc/self/fd")),
        "NGoroutines": 0, "SystemTime": _now(), "LoggingDriver": "json-file",
        "CgroupDriver": "cgroupfs", "CgroupVersion": cgroup_version, "NEventsListener": 0,
        "KernelVersion": uname.release, "OperatingSystem": _os_name(), "OSVersion": "",
        "OSType": "linux", "Architecture": uname.machine, "IndexServerAddress":
        "https://index.docker.io/v1/", "RegistryConfig": {
            "AllowNondistributableArtifactsCIDRs": None,
            "AllowNondistributableArtifactsHostnames": None,
            "InsecureRegistryCIDRs": ["127.0.0.0/8", "::1/128"],
            "IndexConfigs": {"docker.io": {"Name": "docker.io", "Mirrors": list(
                engine.config.registry_mirrors), "Secure": True, "Official": True}},
            "Mirrors": list(engine.config.registry_mirrors)},
        "NCPU": os.cpu_count() or 1, "MemTotal": _mem_total(), "GenericResources": None,
        "DockerRootDir": str(engine.layout.data_root), "HttpProxy": "", "HttpsProxy": "",
        "NoProxy": "", "Name": engine.name, "Labels": [], "ExperimentalBuild": False,
        "ServerVersion": VERSION, "Runtimes": {"cove": {"path": "cove-runtime"}},
        "DefaultRuntime": "cove", "Swarm": {"NodeID": "", "NodeAddr": "",
                                            "LocalNodeState": "inactive",
                                            "ControlAvailable": False, "Error": "",
                                            "RemoteManagers": None},
        "LiveRestoreEnabled": True, "Isolation": "", "InitBinary": "cove-init",
        "ContainerdCommit": {"ID": ""}, "RuncCommit": {"ID": ""}, "InitCommit": {"ID": ""},
        "SecurityOptions": ["name=seccomp,profile=builtin",
                            *(["name=userns"] if engine.config.uid_mappings else []),
                            "name=cgroupns"],
        "Warnings": None,
    }


def _cgroup2_only() -> bool:
    return os.path.exists("/sys/fs/cgroup/cgroup.controllers")


def _now() -> str:
    import time

    from runtime.engine.views import rfc3339

    return rfc3339(time.time_ns())
