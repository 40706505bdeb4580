"""``cove volume create|ls|inspect|rm|prune``."""

from __future__ import annotations

import argparse

from runtime.cli.base import (
    Cli,
    add_format,
    confirmed,
    each,
    filters_from,
    inspect_each,
    print_reclaimed,
    render_rows,
)

TABLE = "table {{.Driver}}\t{{.Name}}"
HEADERS = {
    "Driver": "DRIVER",
    "Name": "VOLUME NAME",
    "Mountpoint": "MOUNTPOINT",
    "Scope": "SCOPE",
    "Labels": "LABELS",
    "CreatedAt": "CREATED AT",
}


def configure(verb: str, p: argparse.ArgumentParser) -> None:
    a = p.add_argument
    if verb == "create":
        a("-d", "--driver", default="local", help="Specify volume driver name")
        a("--label", action="append", default=[], help="Set metadata for a volume")
        a("-o", "--opt", action="append", default=[], help="Set driver specific options")
        a("name", nargs="?", metavar="VOLUME")
        a("--name", dest="name_flag", help=argparse.SUPPRESS)
    elif verb == "ls":
        a("-f", "--filter", action="append", default=[], help="Provide filter values")
        a("-q", "--quiet", action="store_true", help="Only display volume names")
        add_format(p)
    elif verb == "inspect":
        add_format(p, short=True)
        a("volumes", nargs="+", metavar="VOLUME")
    elif verb == "rm":
        a("-f", "--force", action="store_true", help="Force the removal of one or more volumes")
        a("volumes", nargs="+", metavar="VOLUME")
    elif verb == "prune":
        a(
            "-a",
            "--all",
            action="store_true",
            help="Remove all unused volumes, not just anonymous ones",
        )
        a("-f", "--force", action="store_true", help="Do not prompt for confirmation")
        a("--filter", action="append", default=[], help="Provide filter values")
    p.set_defaults(func=COMMANDS[verb])


def cmd_create(cli: Cli, args: argparse.Namespace) -> int:
    from runtime.cli.opts import parse_kv

    body = {
        "Name": args.name or args.name_flag or "",
        "Driver": args.driver,
        "DriverOpts": parse_kv(args.opt, "option"),
        "Labels": parse_kv(args.label),
    }
    cli.print(cli.client.create_volume(body).get("Name", ""))
    return 0


def cmd_ls(cli: Cli, args: argparse.Namespace) -> int:
    result = cli.client.volumes(filters_from(args.filter))
    vols = sorted(result.get("Volumes") or [], key=lambda v: v.get("Name", ""))
    if args.quiet:
        for v in vols:
            cli.print(v.get("Name", ""))
        return 0
    rows = [
        {
            "Driver": v.get("Driver", ""),
            "Name": v.get("Name", ""),
            "Mountpoint": v.get("Mountpoint", ""),
            "Scope": v.get("Scope", ""),
            "CreatedAt": v.get("CreatedAt", ""),
            "Labels": ",".join(f"{k}={x}" for k, x in (v.get("Labels") or {}).items()),
        }
        for v in vols
    ]
    render_rows(cli, args.format, TABLE, rows, HEADERS)
    return 0


def cmd_inspect(cli: Cli, args: argparse.Namespace) -> int:
    return inspect_each(cli, args.volumes, cli.client.inspect_volume, args.format)


def cmd_rm(cli: Cli, args: argparse.Namespace) -> int:
    return each(cli, args.volumes, lambda n: cli.client.remove_volume(n, args.force))


def cmd_prune(cli: Cli, args: argparse.Namespace) -> int:
    what = (
        "all local volumes not used by at least one container"
        if args.all
        else "all anonymous local volumes not used by at least one container"
    )
    if not confirmed(cli, args.force, f"WARNING! This will remove {what}."):
        return 0
    filters = filters_from(args.filter)
    if args.all:
        filters.setdefault("all", ["true"])
    report = cli.client.prune_volumes(filters)
    print_reclaimed(
        cli, "Deleted Volumes", report.get("VolumesDeleted"), report.get("SpaceReclaimed")
    )
    return 0


COMMANDS = {
    "create": cmd_create,
    "ls": cmd_ls,
    "inspect": cmd_inspect,
    "rm": cmd_rm,
    "prune": cmd_prune,
}
