"""Persisted networks and per-container network state, as JSON under data_root/network/.

- ``networks/<id>.json``: one Docker ``Network`` object (without ``Containers``)
  plus our private ``_bridge`` (device name).
- ``containers/<id>.json``: a container's wanted attachments (kept while the
  container exists) and, while it runs, its live endpoints, ports and netns.
  IP and port allocations are derived from these files only.
"""

from __future__ import annotations

import json
import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runtime.fsutil import read_json, write_json_atomic


def new_id() -> str:
    return secrets.token_hex(32)


@dataclass(slots=True)
class Endpoint:
    """A container's live attachment to one network."""

    network_id: str
    endpoint_id: str
    ip: str
    prefixlen: int
    gateway: str
    mac: str
    ifname: str  # inside the container (eth0, eth1, ...)
    veth: str  # host side
    aliases: list[str] = field(default_factory=list)
    ipam_config: dict[str, Any] | None = None
    # On a network with EnableIPv6 (empty otherwise; files written before IPv6 lack them).
    ip6: str = ""
    prefixlen6: int = 0
    gateway6: str = ""

    def to_json(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__slots__}

    @staticmethod
    def from_json(d: dict[str, Any]) -> Endpoint:
        return Endpoint(**d)


@dataclass(slots=True)
class ContainerState:
    container_id: str
    name: str = ""
    hostname: str = ""
    mode: str = "bridge"  # bridge | host | none | container:<id> | <network id>
    # Wanted attachments: network id -> EndpointSettings as given (Aliases, IPAMConfig, ...).
    wanted: dict[str, dict[str, Any]] = field(default_factory=dict)
    order: list[str] = field(default_factory=list)  # network ids, primary first
    netns: str = ""
    endpoints: dict[str, Endpoint] = field(default_factory=dict)
    ports: list[list[Any]] = field(default_factory=list)
    ports_settings: dict[str, Any] = field(default_factory=dict)
    dns: list[str] = field(default_factory=list)
    running: bool = False

    def to_json(self) -> dict[str, Any]:
        out = {k: getattr(self, k) for k in self.__slots__}
        out["endpoints"] = {k: v.to_json() for k, v in self.endpoints.items()}
        return out

    @staticmethod
    def from_json(d: dict[str, Any]) -> ContainerState:
        d = dict(d)
        d["endpoints"] = {k: Endpoint.from_json(v) for k, v in d.get("endpoints", {}).items()}
        known = ContainerState.__slots__
        return ContainerState(**{k: v for k, v in d.items() if k in known})


class NetworkStore:
    def __init__(self, root: Path) -> None:
        self.nets_dir = root / "networks"
        self.ctrs_dir = root / "containers"
        self.nets_dir.mkdir(parents=True, exist_ok=True)
        self.ctrs_dir.mkdir(parents=True, exist_ok=True)

    # -- networks (rare changes: durable writes) --
    def load_networks(self) -> list[dict[str, Any]]:
        out = []
        for p in sorted(self.nets_dir.glob("*.json")):
            try:
                out.append(read_json(p))
            except (OSError, ValueError):
                continue
        return out

    def save_network(self, net: dict[str, Any]) -> None:
        write_json_atomic(self.nets_dir / f"{net['Id']}.json", net)

    def delete_network(self, net_id: str) -> None:
        try:
            (self.nets_dir / f"{net_id}.json").unlink()
        except FileNotFoundError:
            pass

    # -- containers (hot path: no fsync; a host crash kills the containers anyway) --
    def load_containers(self) -> list[ContainerState]:
        out = []
        for p in self.ctrs_dir.glob("*.json"):
            try:
                out.append(ContainerState.from_json(read_json(p)))
            except (OSError, ValueError, TypeError):
                continue
        return out

    def save_container(self, st: ContainerState) -> None:
        path = self.ctrs_dir / f"{st.container_id}.json"
        tmp = path.with_name(f".{path.name}.tmp")
        with open(tmp, "w") as f:
            json.dump(st.to_json(), f)
        os.replace(tmp, path)

    def delete_container(self, container_id: str) -> None:
        try:
            (self.ctrs_dir / f"{container_id}.json").unlink()
        except FileNotFoundError:
            pass
