"""``cove``: the command line client of the Cove engine (docker's verbs and output).

Startup is kept lean because ``cove run --rm IMAGE true`` is benchmarked: the
verb table below is data, and only the verb being run gets a sub-parser, with
its module imported for its flags (without a known verb, for ``--help`` and
errors, every verb gets a bare sub-parser).
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence
from typing import Any, NoReturn

VERSION = "0.1.0"

# name: (module, canonical verb, help, aliases). A module's configure(verb, parser)
# adds the flags and sets ``func``.
Entry = tuple[str, str, str, tuple[str, ...]]
_C, _R, _X, _I = (
    "runtime.cli.containers",
    "runtime.cli.run",
    "runtime.cli.execs",
    "runtime.cli.images",
)
_S = "runtime.cli.system"

CONTAINER: dict[str, Entry] = {
    "attach": (
        _X,
        "attach",
        "Attach local standard input, output, and error streams to a running container",
        (),
    ),
    "commit": (_I, "commit", "Create a new image from a container's changes", ()),
    "cp": (
        "runtime.cli.cp",
        "cp",
        "Copy files/folders between a container and the local filesystem",
        (),
    ),
    "create": (_R, "create", "Create a new container", ()),
    "diff": (_C, "diff", "Inspect changes to files or directories on a container's filesystem", ()),
    "exec": (_X, "exec", "Execute a command in a running container", ()),
    "export": (_C, "export", "Export a container's filesystem as a tar archive", ()),
    "inspect": (
        _C,
        "container-inspect",
        "Display detailed information on one or more containers",
        (),
    ),
    "kill": (_C, "kill", "Kill one or more running containers", ()),
    "logs": (_X, "logs", "Fetch the logs of a container", ()),
    "ls": (_C, "ps", "List containers", ("ps", "list")),
    "pause": (_C, "pause", "Pause all processes within one or more containers", ()),
    "port": (_C, "port", "List port mappings or a specific mapping for the container", ()),
    "prune": (_C, "container-prune", "Remove all stopped containers", ()),
    "rename": (_C, "rename", "Rename a container", ()),
    "restart": (_C, "restart", "Restart one or more containers", ()),
    "rm": (_C, "rm", "Remove one or more containers", ("remove",)),
    "run": (_R, "run", "Create and run a new container from an image", ()),
    "start": (_X, "start", "Start one or more stopped containers", ()),
    "stats": (
        "runtime.cli.stats",
        "stats",
        "Display a live stream of container(s) resource usage statistics",
        (),
    ),
    "stop": (_C, "stop", "Stop one or more running containers", ()),
    "top": (_C, "top", "Display the running processes of a container", ()),
    "unpause": (_C, "unpause", "Unpause all processes within one or more containers", ()),
    "update": (_C, "update", "Update configuration of one or more containers", ()),
    "wait": (
        _C,
        "wait",
        "Block until one or more containers stop, then print their exit codes",
        (),
    ),
}
IMAGE: dict[str, Entry] = {
    "build": ("runtime.cli.build", "build", "Build an image from a Dockerfile", ()),
    "history": (_I, "history", "Show the history of an image", ()),
    "import": (_I, "import", "Import the contents from a tarball to create a filesystem image", ()),
    "inspect": (_I, "image-inspect", "Display detailed information on one or more images", ()),
    "load": (_I, "load", "Load an image from a tar archive or STDIN", ()),
    "ls": (_I, "images", "List images", ("list",)),
    "prune": (_I, "image-prune", "Remove unused images", ()),
    "pull": (_I, "pull", "Download an image from a registry", ()),
    "push": (_I, "push", "Upload an image to a registry", ()),
    "rm": (_I, "rmi", "Remove one or more images", ("remove",)),
    "save": (
        _I,
        "save",
        "Save one or more images to a tar archive (streamed to STDOUT by default)",
        (),
    ),
    "tag": (_I, "tag", "Create a tag TARGET_IMAGE that refers to SOURCE_IMAGE", ()),
}
_N, _V = "runtime.cli.networks", "runtime.cli.volumes"
NETWORK: dict[str, Entry] = {
    v: (_N, v, h, a)
    for v, h, a in [
        ("connect", "Connect a container to a network", ()),
        ("create", "Create a network", ()),
        ("disconnect", "Disconnect a container from a network", ()),
        ("inspect", "Display detailed information on one or more networks", ()),
        ("ls", "List networks", ("list",)),
        ("prune", "Remove all unused networks", ()),
        ("rm", "Remove one or more networks", ("remove",)),
    ]
}
VOLUME: dict[str, Entry] = {
    v: (_V, v, h, a)
    for v, h, a in [
        ("create", "Create a volume", ()),
        ("inspect", "Display detailed information on one or more volumes", ()),
        ("ls", "List volumes", ("list",)),
        ("prune", "Remove unused local volumes", ()),
        ("rm", "Remove one or more volumes", ("remove",)),
    ]
}
SYSTEM: dict[str, Entry] = {
    "df": (_S, "df", "Show Cove disk usage", ()),
    "events": (_S, "events", "Get real time events from the server", ()),
    "info": (_S, "info", "Display system-wide information", ()),
    "prune": (_S, "system-prune", "Remove unused data", ()),
}
_E = "runtime.cli.engine"
ENGINE: dict[str, Entry] = {
    "start": (_E, "start", "Start the Cove engine in the background", ()),
    "stop": (_E, "stop", "Stop the Cove engine", ()),
    "status": (_E, "status", "Show whether the Cove engine is running", ()),
    "run": (_E, "run", "Run the Cove engine in the foreground", ()),
}
GROUPS: dict[str, tuple[dict[str, Entry], str]] = {
    "container": (CONTAINER, "Manage containers"),
    "image": (IMAGE, "Manage images"),
    "network": (NETWORK, "Manage networks"),
    "volume": (VOLUME, "Manage volumes"),
    "system": (SYSTEM, "Manage Cove"),
    "engine": (ENGINE, "Manage the Cove engine daemon"),
}
TOP: dict[str, Entry] = {
    **{k: v for k, v in CONTAINER.items() if k not in ("ls", "inspect", "prune", "rm")},
    "ps": (*CONTAINER["ls"][:3], ()),
    "rm": (*CONTAINER["rm"][:3], ()),
    **{k: IMAGE[k] for k in ("build", "history", "import", "load", "pull", "push", "save", "tag")},
    "images": (*IMAGE["ls"][:3], ()),
    "rmi": (*IMAGE["rm"][:3], ()),
    "inspect": (_C, "inspect", "Return low-level information on Cove objects", ()),
    "events": SYSTEM["events"],
    "info": SYSTEM["info"],
    "version": (_S, "version", "Show the Cove version information", ()),
    "login": ("runtime.cli.auth", "login", "Authenticate to a registry", ()),
    "logout": ("runtime.cli.auth", "logout", "Log out from a registry", ()),
}
_GLOBAL_WITH_VALUE = {"-H", "--host", "--config", "-l", "--log-level"}


class Parser(argparse.ArgumentParser):
    """Flag errors exit 125 with docker's two-line message."""

    def error(self, message: str) -> NoReturn:
        sys.stderr.write(f"cove: {message}\nSee '{self.prog} --help'.\n")
        sys.exit(125)


def _chosen(argv: Sequence[str], names: Sequence[str], with_value: set[str]) -> str | None:
    skip = False
    for tok in argv:
        if skip:
            skip = False
        elif tok in with_value:
            skip = True
        elif tok == "--" or not tok.startswith("-"):
            return tok if tok in names else None
    return None


def _add_entries(
    sub: Any, table: dict[str, Entry], argv: Sequence[str], with_value: set[str] | None = None
) -> None:
    names = [n for n, e in table.items() for n in (n, *e[3])]
    chosen = _chosen(argv, names, with_value or set())
    for name, (module, verb, help_, aliases) in sorted(table.items()):
        if chosen is not None and chosen != name and chosen not in aliases:
            # Only the verb being run gets a parser: each costs ~0.3 ms (argparse looks
            # up gettext catalogs on disk per parser). Help and errors list them all.
            continue
        # "resolve": run/create reuse -h for --hostname like docker (help stays on --help).
        p = sub.add_parser(
            name, help=help_, aliases=list(aliases), description=help_, conflict_handler="resolve"
        )
        if chosen is not None and (chosen == name or chosen in aliases):
            importlib.import_module(module).configure(verb, p)


def _add_optional(sub: Any, module: str) -> None:
    """Verb groups whose modules import heavier dependencies only when they run."""
    try:
        mod = importlib.import_module(module)
    except ImportError:  # an optional part is not installed
        return
    mod.register(sub)


def build_parser(argv: Sequence[str]) -> argparse.ArgumentParser:
    parser = Parser(
        prog="cove", description="A self-sufficient runtime for containers", allow_abbrev=False
    )
    parser.add_argument("-H", "--host", help="Engine socket to connect to (env COVE_HOST)")
    parser.add_argument("--config", help="Location of client config files (default ~/.docker)")
    parser.add_argument("-D", "--debug", action="store_true", help="Enable debug mode")
    parser.add_argument("-l", "--log-level", help=argparse.SUPPRESS)
    parser.add_argument(
        "-v", "--version", action="store_true", help="Print version information and quit"
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    rest = list(argv)
    chosen = _chosen(rest, [*TOP, *GROUPS, "vm", "desktop"], _GLOBAL_WITH_VALUE)
    for group, (table, help_) in GROUPS.items():
        if chosen is not None and chosen != group:
            continue  # as in _add_entries: no parsers for verbs that are not run
        gp = sub.add_parser(group, help=help_, description=help_)
        if chosen == group:
            gsub = gp.add_subparsers(dest="subcommand", metavar="COMMAND", parser_class=Parser)
            _add_entries(gsub, table, rest[rest.index(group) + 1 :])
    if chosen == "vm" or chosen is None:
        _add_optional(sub, "runtime.cli.vm")
    if chosen == "desktop" or chosen is None:
        _add_optional(sub, "desktop.cli")
    if chosen is None or chosen in TOP:
        _add_entries(sub, TOP, rest, _GLOBAL_WITH_VALUE)
    return parser


def run(argv: Sequence[str] | None = None) -> int:
    from runtime.cli.base import Cli, CliError, error_message

    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(argv)
    args = parser.parse_args(argv)
    if args.version:
        print(f"Cove version {VERSION}")
        return 0
    func = getattr(args, "func", None)
    if func is None:
        sub = _group_parser(parser, args)
        sub.print_help(sys.stderr if args.command else sys.stdout)
        return 1 if args.command else 0
    if args.config:
        os.environ["DOCKER_CONFIG"] = args.config
    cli = Cli(args.host)
    try:
        code: int = func(cli, args)
    except CliError as e:
        e.show(cli.err)
        return e.exit_code
    except BrokenPipeError:
        return 0
    except KeyboardInterrupt:
        return 130
    except Exception as e:  # CoveError, EngineUnreachable, OSError: one line, no traceback
        if args.debug or not _user_facing(e):
            raise
        cli.warn(error_message(e))
        return 1
    return code


def _user_facing(e: Exception) -> bool:
    from runtime.api.errors import CoveError

    return isinstance(e, CoveError | OSError)


def _group_parser(
    parser: argparse.ArgumentParser, args: argparse.Namespace
) -> argparse.ArgumentParser:
    if not args.command:
        return parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            found: argparse.ArgumentParser = action.choices[args.command]
            return found
    return parser


def main() -> None:
    sys.exit(run())


if __name__ == "__main__":
    main()
