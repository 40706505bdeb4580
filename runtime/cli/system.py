"""System verbs: version, info, events, system df/prune."""

from __future__ import annotations

import argparse
import platform
import sys
import time
from typing import Any

from runtime.cli.base import (
    Cli,
    CliError,
    add_format,
    confirmed,
    deleted_image_lines,
    error_message,
    filters_from,
    print_titled,
    render_each,
)


def configure(verb: str, p: argparse.ArgumentParser) -> None:
    if verb in ("version", "info"):
        add_format(p, short=True)
    elif verb == "events":
        p.add_argument(
            "-f",
            "--filter",
            action="append",
            default=[],
            help="Filter output based on conditions provided",
        )
        p.add_argument("--since", help="Show all events created since timestamp")
        p.add_argument("--until", help="Stream events until this timestamp")
        add_format(p)
    elif verb == "df":
        p.add_argument(
            "-v", "--verbose", action="store_true", help="Show detailed information on space usage"
        )
        add_format(p)
    elif verb == "system-prune":
        p.add_argument(
            "-a",
            "--all",
            action="store_true",
            help="Remove all unused images not just dangling ones",
        )
        p.add_argument("-f", "--force", action="store_true", help="Do not prompt for confirmation")
        p.add_argument("--volumes", action="store_true", help="Prune anonymous volumes")
        p.add_argument("--filter", action="append", default=[], help="Provide filter values")
    p.set_defaults(func=COMMANDS[verb])


def _arch() -> str:
    machine = platform.machine().lower()
    return {"x86_64": "amd64", "aarch64": "arm64"}.get(machine, machine)


def client_version(host: str) -> dict[str, Any]:
    from runtime.api.client import API_VERSION
    from runtime.cli.main import VERSION

    return {
        "Version": VERSION,
        "ApiVersion": API_VERSION,
        "PythonVersion": platform.python_version(),
        "Os": sys.platform.replace("darwin", "darwin").replace("win32", "windows"),
        "Arch": _arch(),
        "Host": host,
    }


def cmd_version(cli: Cli, args: argparse.Namespace) -> int:
    from runtime.api.errors import CoveError
    from runtime.api.transport import EngineUnreachable

    client = client_version(cli.host)
    try:
        server: dict[str, Any] | None = cli.client.version()
        error = None
    except (CoveError, EngineUnreachable) as e:
        server, error = None, e
    if args.format:
        render_each(cli, args.format, [{"Client": client, "Server": server}])
    else:
        _print_version(cli, client, server)
    if error is not None:
        cli.warn(error_message(error))
        return 1
    return 0


def _print_version(cli: Cli, c: dict[str, Any], server: dict[str, Any] | None) -> None:
    cli.print("Client:")
    for label, value in [
        ("Version", c["Version"]),
        ("API version", c["ApiVersion"]),
        ("Python version", c["PythonVersion"]),
        ("OS/Arch", f"{c['Os']}/{c['Arch']}"),
        ("Host", c["Host"]),
    ]:
        cli.print(f" {label + ':':<18} {value}")
    if server is None:
        return
    cli.print("")
    cli.print(f"Server: {(server.get('Platform') or {}).get('Name', '')}".rstrip())
    components = server.get("Components") or [
        {"Name": "Engine", "Version": server.get("Version"), "Details": server}
    ]
    for comp in components:
        cli.print(f" {comp.get('Name')}:")
        d = comp.get("Details") or {}
        rows = [("Version", comp.get("Version"))]
        if comp.get("Name") == "Engine":
            rows += [
                (
                    "API version",
                    f"{server.get('ApiVersion')} (minimum version {server.get('MinAPIVersion')})",
                ),
                ("Git commit", d.get("GitCommit")),
                ("Built", d.get("BuildTime")),
                ("OS/Arch", f"{server.get('Os')}/{server.get('Arch')}"),
                ("Experimental", str(d.get("Experimental", "false")).lower()),
            ]
        elif d.get("GitCommit"):
            rows.append(("GitCommit", d.get("GitCommit")))
        for label, value in rows:
            if value not in (None, ""):
                cli.print(f"  {label + ':':<17} {value}")


def cmd_info(cli: Cli, args: argparse.Namespace) -> int:
    from runtime.api.units import bytes_size

    info = cli.client.info()
    if args.format:
        render_each(cli, args.format, [info])
        return 0
    from runtime.cli.main import VERSION

    p = cli.print
    p("Client:")
    p(f" Version:    {VERSION}")
    p(" Context:    default")
    p(" Debug Mode: false")
    p("")
    p("Server:")
    p(f" Containers: {info.get('Containers', 0)}")
    for key in ("Running", "Paused", "Stopped"):
        p(f"  {key}: {info.get('Containers' + key, 0)}")
    p(f" Images: {info.get('Images', 0)}")
    fields = [
        ("Server Version", "ServerVersion"),
        ("Storage Driver", "Driver"),
        ("Logging Driver", "LoggingDriver"),
        ("Cgroup Driver", "CgroupDriver"),
        ("Cgroup Version", "CgroupVersion"),
        ("Kernel Version", "KernelVersion"),
        ("Operating System", "OperatingSystem"),
        ("OSType", "OSType"),
        ("Architecture", "Architecture"),
        ("CPUs", "NCPU"),
    ]
    for label, key in fields:
        p(f" {label}: {info.get(key, '')}")
    p(f" Total Memory: {bytes_size(float(info.get('MemTotal') or 0))}")
    for label, key in [("Name", "Name"), ("ID", "ID"), ("Docker Root Dir", "DockerRootDir")]:
        p(f" {label}: {info.get(key, '')}")
    p(f" Debug Mode: {str(info.get('Debug', False)).lower()}")
    p(f" Experimental: {str(info.get('ExperimentalBuild', False)).lower()}")
    p(f" Live Restore Enabled: {str(info.get('LiveRestoreEnabled', False)).lower()}")
    for warning in info.get("Warnings") or []:
        cli.warn(warning)
    return 0


# --- events ----------------------------------------------------------------------------


def event_line(ev: dict[str, Any]) -> str:
    """docker's default event line: "<time> <type> <action> <id> (k=v, ...)"."""
    nanos = int(ev.get("timeNano") or int(ev.get("time") or 0) * 1_000_000_000)
    secs, frac = divmod(nanos, 1_000_000_000)
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(secs))
    if frac:
        stamp += "." + f"{frac:09d}".rstrip("0")
    offset = time.strftime("%z", time.localtime(secs))
    stamp += "Z" if offset in ("+0000", "") else f"{offset[:3]}:{offset[3:]}"
    actor = ev.get("Actor") or {}
    attrs = actor.get("Attributes") or {}
    text = f"{stamp} {ev.get('Type', '')} {ev.get('Action', '')} {actor.get('ID', '')}"
    if attrs:
        text += " (" + ", ".join(f"{k}={attrs[k]}" for k in sorted(attrs)) + ")"
    return text


def cmd_events(cli: Cli, args: argparse.Namespace) -> int:
    from runtime.api.formatting import TemplateError, execute, parse
    from runtime.api.units import api_time

    try:
        since = api_time(args.since) if args.since else None
        until = api_time(args.until) if args.until else None
    except ValueError as e:
        raise CliError(str(e)) from e
    fmt = "{{json .}}" if (args.format or "").strip() == "json" else args.format
    try:
        tmpl = parse(fmt) if fmt else None
    except TemplateError as e:
        raise CliError(f"template parsing error: {e}") from e
    for ev in cli.client.events(since, until, filters_from(args.filter)):
        cli.print(execute(tmpl, ev) if tmpl else event_line(ev))
        cli.out.flush()
    return 0


# --- df / prune --------------------------------------------------------------------------


def _df_rows(df: dict[str, Any]) -> list[dict[str, Any]]:
    from runtime.api.units import human_size

    def row(
        kind: str, items: list[dict[str, Any]], active: int, size: float, reclaim: float
    ) -> dict[str, Any]:
        pct = f" ({int(reclaim * 100 / size)}%)" if size else ""
        return {
            "Type": kind,
            "TotalCount": str(len(items)),
            "Active": str(active),
            "Size": human_size(size),
            "Reclaimable": human_size(reclaim) + pct,
        }

    images = df.get("Images") or []
    containers = df.get("Containers") or []
    volumes = df.get("Volumes") or []
    cache = df.get("BuildCache") or []
    img_active = sum(1 for i in images if (i.get("Containers") or 0) > 0)
    img_size = float(df.get("LayersSize") or sum(i.get("Size") or 0 for i in images))
    img_used = sum(float(i.get("Size") or 0) for i in images if (i.get("Containers") or 0) > 0)
    c_active = sum(1 for c in containers if c.get("State") in ("running", "paused"))
    c_size = sum(float(c.get("SizeRw") or 0) for c in containers)
    c_idle = sum(
        float(c.get("SizeRw") or 0)
        for c in containers
        if c.get("State") not in ("running", "paused")
    )
    vol_usage = [(v.get("UsageData") or {}) for v in volumes]
    v_active = sum(1 for u in vol_usage if (u.get("RefCount") or 0) > 0)
    v_size = sum(float(u.get("Size") or 0) for u in vol_usage if (u.get("Size") or 0) > 0)
    v_idle = sum(
        float(u.get("Size") or 0)
        for u in vol_usage
        if (u.get("RefCount") or 0) == 0 and (u.get("Size") or 0) > 0
    )
    b_size = sum(float(b.get("Size") or 0) for b in cache)
    return [
        row("Images", images, img_active, img_size, max(0.0, img_size - img_used)),
        row("Containers", containers, c_active, c_size, c_idle),
        row("Local Volumes", volumes, v_active, v_size, v_idle),
        {**row("Build Cache", cache, 0, b_size, b_size), "Reclaimable": human_size(b_size)},
    ]


def cmd_df(cli: Cli, args: argparse.Namespace) -> int:
    from runtime.cli.base import render_rows

    headers = {
        "Type": "TYPE",
        "TotalCount": "TOTAL",
        "Active": "ACTIVE",
        "Size": "SIZE",
        "Reclaimable": "RECLAIMABLE",
    }
    default = "table {{.Type}}\t{{.TotalCount}}\t{{.Active}}\t{{.Size}}\t{{.Reclaimable}}"
    render_rows(cli, args.format, default, _df_rows(cli.client.df()), headers)
    return 0


def cmd_system_prune(cli: Cli, args: argparse.Namespace) -> int:
    from runtime.api.units import human_size

    what = ["all stopped containers", "all networks not used by at least one container"]
    if args.volumes:
        what.append("all anonymous volumes not used by at least one container")
    what.append(
        "all images without at least one container associated to them"
        if args.all
        else "all dangling images"
    )
    warning = "WARNING! This will remove:\n" + "\n".join(f"  - {w}" for w in what)
    if not confirmed(cli, args.force, warning):
        return 0
    filters = filters_from(args.filter)
    client = cli.client
    total = 0.0
    report = client.prune_containers(filters)
    total += float(report.get("SpaceReclaimed") or 0)
    print_titled(cli, "Deleted Containers", report.get("ContainersDeleted"))
    print_titled(cli, "Deleted Networks", client.prune_networks(filters).get("NetworksDeleted"))
    if args.volumes:
        report = client.prune_volumes(filters)
        total += float(report.get("SpaceReclaimed") or 0)
        print_titled(cli, "Deleted Volumes", report.get("VolumesDeleted"))
    report = client.prune_images({**filters, "dangling": ["false" if args.all else "true"]})
    total += float(report.get("SpaceReclaimed") or 0)
    print_titled(cli, "Deleted Images", deleted_image_lines(report))
    cli.print(f"Total reclaimed space: {human_size(total)}")
    return 0


COMMANDS = {
    "version": cmd_version,
    "info": cmd_info,
    "events": cmd_events,
    "df": cmd_df,
    "system-prune": cmd_system_prune,
}
