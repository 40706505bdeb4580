"""``cove``: the command line client of the Cove engine (docker's verbs and output).

Startup is kept lean because ``cove run --rm IMAGE true`` and ``cove exec C true`` are
benchmarked against docker's Go CLI: :func:`main` first offers the command line to
:mod:`runtime.cli.fast` (those two verbs in their everyday shapes, without argparse);
everything else goes to the full parser in :mod:`runtime.cli.parsing`, which this module
imports only then. The verb table below is data for that parser.
"""

from __future__ import annotations

import os
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    import argparse
    from collections.abc import Sequence

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


def build_parser(argv: Sequence[str]) -> argparse.ArgumentParser:
    """The full parser, with a sub-parser for the verb in argv (see runtime.cli.parsing)."""
    from runtime.cli.parsing import build_parser as build

    return build(argv)


def run(argv: Sequence[str] | None = None) -> int:
    """The full CLI: parse with argparse, run the verb's handler, map failures to exit codes."""
    from runtime.cli.base import Cli
    from runtime.cli.parsing import group_parser

    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(argv)
    args = parser.parse_args(argv)
    if args.version:
        print(f"Cove version {VERSION}")
        return 0
    func = getattr(args, "func", None)
    if func is None:
        sub = group_parser(parser, args)
        sub.print_help(sys.stderr if args.command else sys.stdout)
        return 1 if args.command else 0
    if args.config:
        os.environ["DOCKER_CONFIG"] = args.config
    cli = Cli(args.host)
    try:
        code: int = func(cli, args)
    except BrokenPipeError:
        return 0
    except KeyboardInterrupt:
        return 130
    except Exception as e:
        return failure_code(e, debug=args.debug)
    return code


def failure_code(e: Exception, *, debug: bool) -> int:
    """A failed verb's exit code after its one-line message on stderr (no traceback):
    CliError knows both; CoveError, EngineUnreachable and OSError print and exit 1;
    anything else (a bug), or anything with --debug, raises on."""
    from runtime.api.errors import CoveError
    from runtime.cli.base import CliError, error_message

    if isinstance(e, CliError):
        e.show(sys.stderr)
        return e.exit_code
    if debug or not isinstance(e, CoveError | OSError):
        raise e
    print(error_message(e), file=sys.stderr)
    return 1


def main() -> None:
    argv = sys.argv[1:]
    from runtime.cli import fast

    code = fast.main(argv)
    sys.exit(run(argv) if code is None else code)


if __name__ == "__main__":
    main()
