"""Pure functions that turn Docker JSON into the words and numbers the UI shows.

No Qt here, so all of it is unit-testable and reusable by the tray and views.
"""

from __future__ import annotations

import time
from typing import Any

from runtime.api.units import human_duration, human_size

COMPOSE_PROJECT = "com.docker.compose.project"
COMPOSE_SERVICE = "com.docker.compose.service"

# State -> (label, colour) for the coloured indicator; colours match the tray icon.
STATE_COLOURS = {
    "running": "#2ea043",
    "paused": "#d29922",
    "restarting": "#d29922",
    "created": "#8b949e",
    "exited": "#8b949e",
    "dead": "#f85149",
    "removing": "#8b949e",
}


def container_name(c: dict[str, Any]) -> str:
    names = c.get("Names") or []
    if names:
        return str(names[0]).lstrip("/")
    return str(c.get("Id", ""))[:12]


def short_id(ident: str) -> str:
    return ident.removeprefix("sha256:")[:12]


def project_of(c: dict[str, Any]) -> str:
    labels = c.get("Labels") or {}
    return str(labels.get(COMPOSE_PROJECT, ""))


def state_colour(state: str) -> str:
    return STATE_COLOURS.get(state, "#8b949e")


def published_ports(c: dict[str, Any]) -> list[int]:
    """Host ports a browser could open, deduplicated (IPv4 and IPv6 bindings repeat)."""
    seen: list[int] = []
    for p in c.get("Ports") or []:
        public = p.get("PublicPort")
        if public and public not in seen:
            seen.append(int(public))
    return seen


def ports_text(c: dict[str, Any]) -> str:
    parts: list[str] = []
    for p in c.get("Ports") or []:
        private, kind = p.get("PrivatePort"), p.get("Type", "tcp")
        text = f"{p['PublicPort']}:{private}/{kind}" if p.get("PublicPort") else f"{private}/{kind}"
        if text not in parts:
            parts.append(text)
    return ", ".join(parts)


def size_text(n: float | None) -> str:
    return "" if n is None or n < 0 else human_size(n)


def created_text(unix: float | None, now: float | None = None) -> str:
    if not unix:
        return ""
    return human_duration(max(0.0, (now or time.time()) - unix)) + " ago"


def cpu_percent(stats: dict[str, Any]) -> float | None:
    """docker stats' CPU %: container delta over system delta, times online CPUs."""
    cpu, pre = stats.get("cpu_stats") or {}, stats.get("precpu_stats") or {}
    try:
        cpu_delta = cpu["cpu_usage"]["total_usage"] - pre["cpu_usage"]["total_usage"]
        sys_delta = cpu["system_cpu_usage"] - pre["system_cpu_usage"]
    except (KeyError, TypeError):
        return None
    online = cpu.get("online_cpus") or len(cpu["cpu_usage"].get("percpu_usage") or []) or 1
    if sys_delta <= 0 or cpu_delta < 0:
        return 0.0
    return float(cpu_delta) / float(sys_delta) * float(online) * 100.0


def memory_usage(stats: dict[str, Any]) -> tuple[int, int] | None:
    """(used, limit) as docker computes it: usage minus inactive file cache."""
    mem = stats.get("memory_stats") or {}
    if "usage" not in mem:
        return None
    detail = mem.get("stats") or {}
    cache = detail.get("inactive_file", detail.get("total_inactive_file", 0))
    return int(mem["usage"]) - int(cache or 0), int(mem.get("limit") or 0)


def network_bytes(stats: dict[str, Any]) -> tuple[int, int]:
    nets = stats.get("networks") or {}
    rx = sum(int(n.get("rx_bytes", 0)) for n in nets.values())
    tx = sum(int(n.get("tx_bytes", 0)) for n in nets.values())
    return rx, tx


def block_bytes(stats: dict[str, Any]) -> tuple[int, int]:
    entries = (stats.get("blkio_stats") or {}).get("io_service_bytes_recursive") or []
    read = sum(int(e.get("value", 0)) for e in entries if str(e.get("op", "")).lower() == "read")
    write = sum(int(e.get("value", 0)) for e in entries if str(e.get("op", "")).lower() == "write")
    return read, write


def image_repo_tag(image: dict[str, Any]) -> tuple[str, str]:
    tags = image.get("RepoTags") or []
    for tag in tags:
        if tag != "<none>:<none>":
            repo, _, t = str(tag).rpartition(":")
            if "/" in t:  # a registry port, not a tag
                return str(tag), "<none>"
            return repo, t
    digests = image.get("RepoDigests") or []
    if digests:
        return str(digests[0]).partition("@")[0], "<none>"
    return "<none>", "<none>"


def initial_capital(text: str) -> str:
    """"engine" -> "Engine", "VM" stays "VM" (str.capitalize would make it "Vm")."""
    return text[:1].upper() + text[1:]
