"""``cove stats``: docker's resource table computed from /containers/{id}/stats samples."""

from __future__ import annotations

import argparse
import threading
import time
from typing import Any

from runtime.api.errors import CoveError
from runtime.cli.base import Cli, add_format, render_rows

TABLE = (
    "table {{.ID}}\t{{.Name}}\t{{.CPUPerc}}\t{{.MemUsage}}\t{{.MemPerc}}\t{{.NetIO}}\t"
    "{{.BlockIO}}\t{{.PIDs}}"
)
HEADERS = {
    "ID": "CONTAINER ID",
    "Container": "CONTAINER",
    "Name": "NAME",
    "CPUPerc": "CPU %",
    "MemUsage": "MEM USAGE / LIMIT",
    "MemPerc": "MEM %",
    "NetIO": "NET I/O",
    "BlockIO": "BLOCK I/O",
    "PIDs": "PIDS",
}


def configure(verb: str, p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "-a", "--all", action="store_true", help="Show all containers (default shows just running)"
    )
    p.add_argument(
        "--no-stream",
        action="store_true",
        help="Disable streaming stats and only pull the first result",
    )
    p.add_argument("--no-trunc", action="store_true", help="Do not truncate output")
    add_format(p)
    p.add_argument("containers", nargs="*", metavar="CONTAINER")
    p.set_defaults(func=cmd_stats)


def cpu_percent(s: dict[str, Any]) -> float:
    """docker's calculateCPUPercentUnix: dContainer / dSystem * online CPUs * 100."""
    cpu, pre = s.get("cpu_stats") or {}, s.get("precpu_stats") or {}
    usage, pre_usage = cpu.get("cpu_usage") or {}, pre.get("cpu_usage") or {}
    cpu_delta = float(usage.get("total_usage") or 0) - float(pre_usage.get("total_usage") or 0)
    sys_delta = float(cpu.get("system_cpu_usage") or 0) - float(pre.get("system_cpu_usage") or 0)
    online = float(cpu.get("online_cpus") or len(usage.get("percpu_usage") or []) or 1)
    if sys_delta > 0 and cpu_delta > 0:
        return cpu_delta / sys_delta * online * 100.0
    return 0.0


def memory(s: dict[str, Any]) -> tuple[float, float]:
    """(usage minus page cache, limit), cgroup v1 or v2 (docker's calculateMemUsageUnixNoCache)."""
    mem = s.get("memory_stats") or {}
    usage = float(mem.get("usage") or 0)
    detail = mem.get("stats") or {}
    for key in ("total_inactive_file", "inactive_file"):
        value = float(detail.get(key) or 0)
        if key in detail and value < usage:
            usage -= value
            break
    return usage, float(mem.get("limit") or 0)


def row(s: dict[str, Any], ident: str, trunc: bool = True) -> dict[str, str]:
    from runtime.api.units import bytes_size, human_size

    used, limit = memory(s)
    nets = (s.get("networks") or {}).values()
    rx = sum(float(n.get("rx_bytes") or 0) for n in nets)
    tx = sum(float(n.get("tx_bytes") or 0) for n in nets)
    blk = (s.get("blkio_stats") or {}).get("io_service_bytes_recursive") or []
    read = sum(float(e.get("value") or 0) for e in blk if str(e.get("op", "")).lower() == "read")
    write = sum(float(e.get("value") or 0) for e in blk if str(e.get("op", "")).lower() == "write")
    return {
        "ID": ident[:12] if trunc else ident,
        "Container": ident[:12] if trunc else ident,
        "Name": str(s.get("name") or "").lstrip("/") or "--",
        "CPUPerc": f"{cpu_percent(s):.2f}%",
        "MemUsage": f"{bytes_size(used)} / {bytes_size(limit)}",
        "MemPerc": f"{used / limit * 100 if limit else 0:.2f}%",
        "NetIO": f"{human_size(rx, 3)} / {human_size(tx, 3)}",
        "BlockIO": f"{human_size(read, 3)} / {human_size(write, 3)}",
        "PIDs": str((s.get("pids_stats") or {}).get("current") or 0),
    }


def _targets(cli: Cli, args: argparse.Namespace) -> list[str]:
    if args.containers:
        return list(args.containers)
    return [str(c["Id"]) for c in cli.client.containers(all=args.all)]


def cmd_stats(cli: Cli, args: argparse.Namespace) -> int:
    trunc = not args.no_trunc
    targets = _targets(cli, args)
    if args.no_stream:
        rows = []
        for t in targets:
            sample = next(iter(cli.client.stats(t, stream=False)), {})
            rows.append(row(sample, str(sample.get("id") or t), trunc))
        render_rows(cli, args.format, TABLE, rows, HEADERS)
        return 0
    return _stream(cli, args, targets, trunc)


def _stream(cli: Cli, args: argparse.Namespace, targets: list[str], trunc: bool) -> int:
    latest: dict[str, dict[str, str]] = {}
    errors: list[str] = []

    def follow(target: str) -> None:
        try:
            for sample in cli.client.stats(target, stream=True):
                latest[target] = row(sample, str(sample.get("id") or target), trunc)
        except CoveError as e:
            errors.append(str(e))

    for t in targets:
        threading.Thread(target=follow, args=(t,), daemon=True).start()
    while True:
        time.sleep(1.0)
        cli.out.write("\x1b[2J\x1b[H")
        render_rows(cli, args.format, TABLE, [latest[t] for t in targets if t in latest], HEADERS)
        cli.out.flush()
        if errors and len(errors) == len(targets):
            cli.warn(errors[0])
            return 1
