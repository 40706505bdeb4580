"""Container verbs that are one request per container: ps, stop, kill, rm, inspect, ..."""

from __future__ import annotations

import argparse
import time
from typing import Any

from runtime.api.errors import CoveError, NotFound
from runtime.cli.base import (
    Cli,
    CliError,
    add_format,
    confirmed,
    each,
    error_message,
    filters_from,
    inspect_each,
    print_reclaimed,
    render_rows,
    short_id,
)

PS_TABLE = (
    "table {{.ID}}\t{{.Image}}\t{{.Command}}\t{{.RunningFor}}\t{{.Status}}\t{{.Ports}}\t{{.Names}}"
)
PS_HEADERS = {
    "ID": "CONTAINER ID",
    "Image": "IMAGE",
    "Command": "COMMAND",
    "CreatedAt": "CREATED AT",
    "RunningFor": "CREATED",
    "Ports": "PORTS",
    "State": "STATE",
    "Status": "STATUS",
    "Size": "SIZE",
    "Names": "NAMES",
    "Labels": "LABELS",
    "Label": "LABEL",
    "Mounts": "MOUNTS",
    "Networks": "NETWORKS",
    "LocalVolumes": "LOCAL VOLUMES",
    "Platform": "PLATFORM",
}


def configure(verb: str, p: argparse.ArgumentParser) -> None:
    a = p.add_argument
    if verb == "ps":
        a(
            "-a",
            "--all",
            action="store_true",
            help="Show all containers (default shows just running)",
        )
        a("-q", "--quiet", action="store_true", help="Only display container IDs")
        a("-n", "--last", type=int, default=-1, help="Show n last created containers")
        a("-l", "--latest", action="store_true", help="Show the latest created container")
        a("-s", "--size", action="store_true", help="Display total file sizes")
        a("-f", "--filter", action="append", default=[], help="Filter output based on conditions")
        a("--no-trunc", action="store_true", help="Don't truncate output")
        add_format(p)
    elif verb in ("stop", "restart"):
        a(
            "-t",
            "--timeout",
            "--time",
            type=int,
            help="Seconds to wait before killing the container",
        )
        a("-s", "--signal", help="Signal to send to the container")
        a("containers", nargs="+", metavar="CONTAINER")
    elif verb == "kill":
        a("-s", "--signal", help="Signal to send to the container")
        a("containers", nargs="+", metavar="CONTAINER")
    elif verb in ("pause", "unpause", "wait"):
        a("containers", nargs="+", metavar="CONTAINER")
    elif verb == "rm":
        a("-f", "--force", action="store_true", help="Force the removal of a running container")
        a("-v", "--volumes", action="store_true", help="Remove anonymous volumes")
        a("-l", "--link", action="store_true", help="Remove the specified link")
        a("containers", nargs="+", metavar="CONTAINER")
    elif verb == "rename":
        a("container", metavar="CONTAINER")
        a("new_name", metavar="NEW_NAME")
    elif verb in ("inspect", "container-inspect"):
        add_format(p, short=True)
        a("-s", "--size", action="store_true", help="Display total file sizes")
        if verb == "inspect":
            a(
                "--type",
                choices=["container", "image", "network", "volume"],
                help="Only inspect objects of the given type",
            )
        a("names", nargs="+", metavar="NAME")
    elif verb == "top":
        a("container", metavar="CONTAINER")
        a("ps_args", nargs=argparse.REMAINDER)
    elif verb == "port":
        a("container", metavar="CONTAINER")
        a("private", nargs="?", metavar="PRIVATE_PORT[/PROTO]")
    elif verb in ("diff", "export"):
        if verb == "export":
            a("-o", "--output", help="Write to a file, instead of STDOUT")
        a("container", metavar="CONTAINER")
    elif verb == "update":
        _update_flags(p)
    elif verb == "container-prune":
        a("-f", "--force", action="store_true", help="Do not prompt for confirmation")
        a("--filter", action="append", default=[], help="Provide filter values")
    p.set_defaults(func=COMMANDS[verb], verb=verb)


# --- ps --------------------------------------------------------------------------


def _image_text(c: dict[str, Any], trunc: bool) -> str:
    image = str(c.get("Image") or "")
    if not image:
        return "<no image>"
    if trunc and image.startswith("sha256:"):
        return short_id(image)
    if trunc and "@" in image:
        return image.split("@", 1)[0]
    return image


def ps_row(c: dict[str, Any], trunc: bool = True, now: float | None = None) -> dict[str, Any]:
    """The fields docker's ps template sees (ContainerContext), as strings."""
    from runtime.api.units import human_size, time_ago
    from runtime.cli.opts import format_ports

    names = [n.lstrip("/") for n in c.get("Names") or []]
    if trunc:
        names = [n for n in names if "/" not in n][:1] or names[:1]
    command = str(c.get("Command") or "")
    if trunc and len(command) > 20:
        command = command[:19] + "…"
    labels = c.get("Labels") or {}
    created = float(c.get("Created") or 0)
    size = ""
    if "SizeRw" in c or "SizeRootFs" in c:
        rw, root = human_size(c.get("SizeRw") or 0, 3), human_size(c.get("SizeRootFs") or 0, 3)
        size = f"{rw} (virtual {root})"
    networks = (c.get("NetworkSettings") or {}).get("Networks") or {}
    mounts = [m.get("Name") or m.get("Source", "") for m in c.get("Mounts") or []]
    return {
        "ID": short_id(str(c.get("Id", "")), trunc),
        "Image": _image_text(c, trunc),
        "Command": '"' + command.replace('"', '\\"') + '"',
        "CreatedAt": time.strftime("%Y-%m-%d %H:%M:%S %z %Z", time.localtime(created)),
        "RunningFor": time_ago(created, now),
        "Ports": format_ports(c.get("Ports") or []),
        "State": c.get("State", ""),
        "Status": c.get("Status", ""),
        "Size": size,
        "Names": ",".join(names),
        "Labels": ",".join(f"{k}={v}" for k, v in labels.items()),
        "Label": lambda key: labels.get(key, ""),
        "Mounts": ",".join(mounts),
        "Networks": ",".join(sorted(networks)),
        "LocalVolumes": str(sum(1 for m in c.get("Mounts") or [] if m.get("Driver") == "local")),
    }


def cmd_ps(cli: Cli, args: argparse.Namespace) -> int:
    limit = 1 if args.latest else args.last
    show_all = args.all or limit > 0
    size = args.size or (args.format or "").strip() == "json"
    items = cli.client.containers(
        all=show_all,
        limit=limit if limit > 0 else None,
        size=size,
        filters=filters_from(args.filter),
    )
    if args.quiet:
        for c in items:
            cli.print(short_id(str(c["Id"]), not args.no_trunc))
        return 0
    rows = [ps_row(c, not args.no_trunc) for c in items]
    default = PS_TABLE + ("\t{{.Size}}" if args.size else "")
    render_rows(cli, args.format, default, rows, PS_HEADERS)
    return 0


# --- lifecycle ---------------------------------------------------------------------


def cmd_stop(cli: Cli, args: argparse.Namespace) -> int:
    return each(cli, args.containers, lambda n: cli.client.stop(n, args.timeout, args.signal))


def cmd_restart(cli: Cli, args: argparse.Namespace) -> int:
    return each(cli, args.containers, lambda n: cli.client.restart(n, args.timeout, args.signal))


def cmd_kill(cli: Cli, args: argparse.Namespace) -> int:
    return each(cli, args.containers, lambda n: cli.client.kill(n, args.signal))


def cmd_pause(cli: Cli, args: argparse.Namespace) -> int:
    return each(cli, args.containers, cli.client.pause)


def cmd_unpause(cli: Cli, args: argparse.Namespace) -> int:
    return each(cli, args.containers, cli.client.unpause)


def cmd_wait(cli: Cli, args: argparse.Namespace) -> int:
    def wait(name: str) -> None:
        cli.print(cli.client.wait(name).get("StatusCode", 0))

    return each(cli, args.containers, wait, echo=False)


def cmd_rm(cli: Cli, args: argparse.Namespace) -> int:
    return each(
        cli,
        args.containers,
        lambda n: cli.client.remove_container(n, args.force, args.volumes, args.link),
    )


def cmd_rename(cli: Cli, args: argparse.Namespace) -> int:
    if not args.new_name.strip():
        raise CliError("Error: new name cannot be blank")
    cli.client.rename(args.container, args.new_name)
    return 0


# --- inspect -----------------------------------------------------------------------


def _inspect_one(cli: Cli, name: str, kind: str | None, size: bool) -> dict[str, Any]:
    """docker tries container, then image (then network, volume) unless --type says."""
    client = cli.client
    getters = {
        "container": lambda: client.inspect_container(name, size),
        "image": lambda: client.inspect_image(name),
        "network": lambda: client.inspect_network(name),
        "volume": lambda: client.inspect_volume(name),
    }
    for k in [kind] if kind else list(getters):
        try:
            return getters[k]()
        except NotFound:
            continue
    raise NotFound(f"No such object: {name}")


def cmd_inspect(cli: Cli, args: argparse.Namespace) -> int:
    kind = getattr(args, "type", None) or (
        "container" if args.verb == "container-inspect" else None
    )

    def describe(name: str, e: CoveError) -> str:
        if isinstance(e, NotFound):
            return f"Error: {f'No such {kind}' if kind else 'No such object'}: {name}"
        return error_message(e)

    def fetch(name: str) -> dict[str, Any]:
        return _inspect_one(cli, name, kind, args.size)

    return inspect_each(cli, args.names, fetch, args.format, describe)


# --- misc --------------------------------------------------------------------------


def cmd_top(cli: Cli, args: argparse.Namespace) -> int:
    from runtime.api.formatting import tabwrite

    top = cli.client.top(args.container, " ".join(args.ps_args) or None)
    lines = ["\t".join(top.get("Titles") or [])]
    lines += ["\t".join(row) for row in top.get("Processes") or []]
    cli.out.write(tabwrite(lines, minwidth=20, padding=3))
    return 0


def cmd_port(cli: Cli, args: argparse.Namespace) -> int:
    info = cli.client.inspect_container(args.container)
    ports: dict[str, Any] = (info.get("NetworkSettings") or {}).get("Ports") or {}
    if args.private:
        key = args.private if "/" in args.private else args.private + "/tcp"
        bindings = ports.get(key)
        if not bindings:
            raise CliError(f"Error: No public port '{key}' published for {args.container}")
        for b in bindings:
            cli.print(_host_port(b))
        return 0
    for key in sorted(ports, key=_port_key):
        for b in ports[key] or []:
            cli.print(f"{key} -> {_host_port(b)}")
    return 0


def _port_key(key: str) -> tuple[int, str]:
    port, _, proto = key.partition("/")
    return (int(port) if port.isdigit() else 0, proto)


def _host_port(binding: dict[str, Any]) -> str:
    ip = binding.get("HostIp") or "0.0.0.0"
    return f"[{ip}]:{binding.get('HostPort')}" if ":" in ip else f"{ip}:{binding.get('HostPort')}"


def cmd_diff(cli: Cli, args: argparse.Namespace) -> int:
    for change in cli.client.changes(args.container):
        cli.print(f"{'CAD'[int(change.get('Kind', 0))]} {change.get('Path')}")
    return 0


def cmd_export(cli: Cli, args: argparse.Namespace) -> int:
    from runtime.cli.stdio import is_tty

    if not args.output and is_tty(cli.out):
        raise CliError("cowardly refusing to save to a terminal. Use the -o flag or redirect")
    chunks = cli.client.export(args.container)
    if args.output:
        with open(args.output, "wb") as f:
            for chunk in chunks:
                f.write(chunk)
    else:
        for chunk in chunks:
            cli.out_binary.write(chunk)
        cli.out_binary.flush()
    return 0


def _update_flags(p: argparse.ArgumentParser) -> None:
    a = p.add_argument
    a("--cpus", type=float, help="Number of CPUs")
    a("-c", "--cpu-shares", type=int, help="CPU shares (relative weight)")
    a("--cpuset-cpus", help="CPUs in which to allow execution (0-3, 0,1)")
    a("-m", "--memory", help="Memory limit")
    a("--memory-swap", help="Swap limit equal to memory plus swap")
    a("--memory-reservation", help="Memory soft limit")
    a("--pids-limit", type=int, help="Tune container pids limit (set -1 for unlimited)")
    a("--restart", help="Restart policy to apply when a container exits")
    a("containers", nargs="+", metavar="CONTAINER")


def cmd_update(cli: Cli, args: argparse.Namespace) -> int:
    from runtime.api.units import ram_in_bytes
    from runtime.cli.opts import parse_restart

    def size(v: str | None) -> int | None:
        if v is None:
            return None
        try:
            return -1 if v == "-1" else ram_in_bytes(v)
        except ValueError:
            raise CliError(f"invalid size: '{v}'") from None

    body: dict[str, Any] = {
        "NanoCpus": int(args.cpus * 1e9) if args.cpus is not None else None,
        "CpuShares": args.cpu_shares,
        "CpusetCpus": args.cpuset_cpus,
        "Memory": size(args.memory),
        "MemorySwap": size(args.memory_swap),
        "MemoryReservation": size(args.memory_reservation),
        "PidsLimit": args.pids_limit,
        "RestartPolicy": parse_restart(args.restart) if args.restart else None,
    }
    body = {k: v for k, v in body.items() if v is not None}
    if not body:
        raise CliError("you must provide one or more flags when using this command")

    def update(name: str) -> None:
        for warning in cli.client.update_container(name, body).get("Warnings") or []:
            cli.warn(f"WARNING: {warning}")

    return each(cli, args.containers, update)


def cmd_container_prune(cli: Cli, args: argparse.Namespace) -> int:
    if not confirmed(cli, args.force, "WARNING! This will remove all stopped containers."):
        return 0
    report = cli.client.prune_containers(filters_from(args.filter))
    print_reclaimed(
        cli, "Deleted Containers", report.get("ContainersDeleted"), report.get("SpaceReclaimed")
    )
    return 0


COMMANDS = {
    "ps": cmd_ps,
    "stop": cmd_stop,
    "restart": cmd_restart,
    "kill": cmd_kill,
    "pause": cmd_pause,
    "unpause": cmd_unpause,
    "wait": cmd_wait,
    "rm": cmd_rm,
    "rename": cmd_rename,
    "inspect": cmd_inspect,
    "container-inspect": cmd_inspect,
    "top": cmd_top,
    "port": cmd_port,
    "diff": cmd_diff,
    "export": cmd_export,
    "update": cmd_update,
    "container-prune": cmd_container_prune,
}
