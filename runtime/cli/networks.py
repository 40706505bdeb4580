"""``cove network create|ls|inspect|rm|prune|connect|disconnect``."""

from __future__ import annotations

import argparse
from typing import Any

from runtime.cli import opts
from runtime.cli.base import (
    Cli,
    CliError,
    add_format,
    confirmed,
    each,
    filters_from,
    inspect_each,
    print_titled,
    render_rows,
    short_id,
)

TABLE = "table {{.ID}}\t{{.Name}}\t{{.Driver}}\t{{.Scope}}"
HEADERS = {
    "ID": "NETWORK ID",
    "Name": "NAME",
    "Driver": "DRIVER",
    "Scope": "SCOPE",
    "IPv6": "IPV6",
    "Internal": "INTERNAL",
    "Labels": "LABELS",
    "CreatedAt": "CREATED AT",
}


def configure(verb: str, p: argparse.ArgumentParser) -> None:
    a = p.add_argument
    if verb == "create":
        a("-d", "--driver", default="bridge", help="Driver to manage the Network")
        for flag in ("--subnet", "--gateway", "--ip-range"):
            a(flag, action="append", default=[], help=f"{flag[2:]} in CIDR format")
        a("--internal", action="store_true", help="Restrict external access to the network")
        a("--attachable", action="store_true", help="Enable manual container attachment")
        a("--ipv6", action="store_true", help="Enable or disable IPv6 networking")
        a("--label", action="append", default=[], help="Set metadata on a network")
        a("-o", "--opt", action="append", default=[], help="Set driver specific options")
        a("--ipam-driver", default="default", help="IP Address Management Driver")
        a("name", metavar="NETWORK")
    elif verb == "ls":
        a("-f", "--filter", action="append", default=[], help="Provide filter values")
        a("-q", "--quiet", action="store_true", help="Only display network IDs")
        a("--no-trunc", action="store_true", help="Do not truncate the output")
        add_format(p)
    elif verb == "inspect":
        add_format(p, short=True)
        a("-v", "--verbose", action="store_true", help="Verbose output for diagnostics")
        a("networks", nargs="+", metavar="NETWORK")
    elif verb == "rm":
        a("-f", "--force", action="store_true", help="Do not error if the network does not exist")
        a("networks", nargs="+", metavar="NETWORK")
    elif verb == "prune":
        a("-f", "--force", action="store_true", help="Do not prompt for confirmation")
        a("--filter", action="append", default=[], help="Provide filter values")
    elif verb in ("connect", "disconnect"):
        if verb == "connect":
            a(
                "--alias",
                action="append",
                default=[],
                help="Add network-scoped alias for the container",
            )
            a("--ip", default="", help="IPv4 address")
            a("--ip6", default="", help="IPv6 address")
        else:
            a("-f", "--force", action="store_true", help="Force the container to disconnect")
        a("network", metavar="NETWORK")
        a("container", metavar="CONTAINER")
    p.set_defaults(func=COMMANDS[verb])


def cmd_create(cli: Cli, args: argparse.Namespace) -> int:
    from runtime.cli.opts import parse_kv

    if len(args.gateway) > len(args.subnet) or len(args.ip_range) > len(args.subnet):
        raise CliError("every --gateway and --ip-range needs a matching --subnet")
    pools: list[dict[str, Any]] = []
    for i, subnet in enumerate(args.subnet):
        pool = {"Subnet": subnet}
        if i < len(args.gateway):
            pool["Gateway"] = args.gateway[i]
        if i < len(args.ip_range):
            pool["IPRange"] = args.ip_range[i]
        pools.append(pool)
    body = {
        "Name": args.name,
        "Driver": args.driver,
        "IPAM": {"Driver": args.ipam_driver, "Options": {}, "Config": pools},
        "Internal": args.internal,
        "Attachable": args.attachable,
        "EnableIPv6": args.ipv6,
        "Options": parse_kv(args.opt, "option"),
        "Labels": parse_kv(args.label),
    }
    result = cli.client.create_network(body)
    if result.get("Warning"):
        cli.warn(f"WARNING: {result['Warning']}")
    cli.print(result.get("Id", ""))
    return 0


def cmd_ls(cli: Cli, args: argparse.Namespace) -> int:
    nets = sorted(cli.client.networks(filters_from(args.filter)), key=lambda n: n.get("Name", ""))
    trunc = not args.no_trunc
    if args.quiet:
        for n in nets:
            cli.print(short_id(str(n.get("Id", "")), trunc))
        return 0
    rows = [
        {
            "ID": short_id(str(n.get("Id", "")), trunc),
            "Name": n.get("Name", ""),
            "Driver": n.get("Driver", ""),
            "Scope": n.get("Scope", ""),
            "IPv6": str(bool(n.get("EnableIPv6"))).lower(),
            "Internal": str(bool(n.get("Internal"))).lower(),
            "CreatedAt": n.get("Created", ""),
            "Labels": ",".join(f"{k}={v}" for k, v in (n.get("Labels") or {}).items()),
        }
        for n in nets
    ]
    render_rows(cli, args.format, TABLE, rows, HEADERS)
    return 0


def cmd_inspect(cli: Cli, args: argparse.Namespace) -> int:
    return inspect_each(
        cli, args.networks, lambda name: cli.client.inspect_network(name, args.verbose), args.format
    )


def cmd_rm(cli: Cli, args: argparse.Namespace) -> int:
    from runtime.api.errors import NotFound

    def remove(name: str) -> None:
        try:
            net = cli.client.inspect_network(name)  # docker's CLI looks before it deletes
            cli.client.remove_network(str(net.get("Id") or name))
        except NotFound:
            if not args.force:
                raise

    return each(cli, args.networks, remove)


def cmd_prune(cli: Cli, args: argparse.Namespace) -> int:
    warning = "WARNING! This will remove all custom networks not used by at least one container."
    if not confirmed(cli, args.force, warning):
        return 0
    deleted = cli.client.prune_networks(filters_from(args.filter)).get("NetworksDeleted")
    print_titled(cli, "Deleted Networks", deleted, blank_after=False)  # docker: no blank line
    return 0


def cmd_connect(cli: Cli, args: argparse.Namespace) -> int:
    endpoint: dict[str, Any] = {"Aliases": args.alias} if args.alias else {}
    if ipam := opts.ipam_config(args.ip, args.ip6):
        endpoint["IPAMConfig"] = ipam
    cli.client.connect_network(args.network, args.container, endpoint)
    return 0


def cmd_disconnect(cli: Cli, args: argparse.Namespace) -> int:
    cli.client.disconnect_network(args.network, args.container, args.force)
    return 0


COMMANDS = {
    "create": cmd_create,
    "ls": cmd_ls,
    "inspect": cmd_inspect,
    "rm": cmd_rm,
    "prune": cmd_prune,
    "connect": cmd_connect,
    "disconnect": cmd_disconnect,
}
