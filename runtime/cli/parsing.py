"""The full ``cove`` parser (argparse): only the verb being run gets a sub-parser, with its
module imported for its flags (without a known verb, for ``--help`` and errors, every verb
gets a bare sub-parser). The verb tables are data in :mod:`runtime.cli.main`.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from typing import Any, NoReturn

from runtime.cli.main import GROUPS, TOP, Entry

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


def group_parser(
    parser: argparse.ArgumentParser, args: argparse.Namespace
) -> argparse.ArgumentParser:
    if not args.command:
        return parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            found: argparse.ArgumentParser = action.choices[args.command]
            return found
    return parser
