"""Checks of a container create request before anything is made (Docker's 400s).

Clients send the full struct, so unknown fields are ignored; a known field of
the wrong type, or a value Docker refuses, is an InvalidArgument (400).
"""

from __future__ import annotations

from typing import Any

from runtime.api.errors import InvalidArgument
from runtime.engine import specconv

# Field types of the create body that the engine reads; clients send the full struct,
# so unknown fields are ignored, but a known field of the wrong type is a 400.
_CONFIG_TYPES: dict[str, tuple[type, ...]] = {
    "Image": (str,), "Hostname": (str,), "Domainname": (str,), "User": (str,),
    "Cmd": (list, str), "Entrypoint": (list, str), "Env": (list,), "WorkingDir": (str,),
    "Labels": (dict,), "ExposedPorts": (dict,), "Volumes": (dict,), "Tty": (bool,),
    "OpenStdin": (bool,), "StdinOnce": (bool,), "StopSignal": (str,), "StopTimeout": (int,),
}
_HOST_CONFIG_TYPES: dict[str, tuple[type, ...]] = {
    "Binds": (list,), "PortBindings": (dict,), "RestartPolicy": (dict,), "AutoRemove": (bool,),
    "CapAdd": (list,), "CapDrop": (list,), "Dns": (list,), "DnsSearch": (list,),
    "ExtraHosts": (list,), "Privileged": (bool,), "ReadonlyRootfs": (bool,),
    "SecurityOpt": (list,), "Ulimits": (list,), "LogConfig": (dict,), "NetworkMode": (str,),
    "Mounts": (list,), "Tmpfs": (dict,), "Sysctls": (dict,), "Init": (bool,),
    "CpusetCpus": (str,), "VolumesFrom": (list,), "GroupAdd": (list,),
}


def _check_types(section: str, data: dict[str, Any], types: dict[str, tuple[type, ...]]) -> None:
    for key, allowed in types.items():
        value = data.get(key)
        if value is None:
            continue
        # bool is an int in Python: refuse true/false where a number is expected
        if not isinstance(value, allowed) or (isinstance(value, bool) and bool not in allowed):
            want = " or ".join(t.__name__ for t in allowed)
            raise InvalidArgument(f"invalid {section}{key}: expected {want}, got {value!r}")
    for key in ("Cmd", "Entrypoint", "Env"):
        value = data.get(key)
        if isinstance(value, list) and not all(isinstance(v, str) for v in value):
            raise InvalidArgument(f"invalid {section}{key}: expected a list of strings")


def config_part(body: dict[str, Any]) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise InvalidArgument("invalid JSON: container config must be an object")
    _check_types("", body, _CONFIG_TYPES)
    return {k: v for k, v in body.items() if k not in ("HostConfig", "NetworkingConfig")}


def validate_host_config(hc: dict[str, Any]) -> None:
    if not isinstance(hc, dict):
        raise InvalidArgument("invalid HostConfig")
    _check_types("HostConfig.", hc, _HOST_CONFIG_TYPES)
    policy = hc.get("RestartPolicy") or {}
    name = policy.get("Name") or "no"
    if name not in ("no", "always", "on-failure", "unless-stopped"):
        raise InvalidArgument(f"invalid restart policy: unknown policy '{name}'")
    if name != "on-failure" and policy.get("MaximumRetryCount"):
        raise InvalidArgument(
            "invalid restart policy: maximum retry count can only be used with 'on-failure'"
        )
    if hc.get("AutoRemove") and name not in ("no",):
        raise InvalidArgument(
            "conflicting options: cannot combine restart policy with auto-remove"
        )
    for key in ("Memory", "MemorySwap", "NanoCpus", "CpuShares", "PidsLimit", "ShmSize"):
        value = hc.get(key)
        if value is not None and not isinstance(value, int):
            raise InvalidArgument(f"invalid HostConfig.{key}: {value!r}")
    specconv.resources(hc)
    specconv.capabilities(hc)
    specconv.rlimits(hc)
