"""``cove desktop``: the verb the CLI wires in lazily (no Qt import until it runs)."""

from __future__ import annotations

import argparse
from typing import Any


def register(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``desktop`` to an argparse subparsers object; sets ``func``."""
    p: argparse.ArgumentParser = subparsers.add_parser(
        "desktop", help="Open the Cove dashboard and tray")
    p.add_argument("--no-tray", action="store_true", help="run as a plain window")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    try:
        from desktop.app import main
    except ImportError as e:
        print(f"cove desktop: the desktop extra is not installed ({e}); "
              "pip install 'cove[desktop]'")
        return 1
    host = getattr(args, "host", None) or None
    return main(host=host, no_tray=bool(args.no_tray))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="cove")
    parser.add_argument("-H", "--host", default=None)
    sub = parser.add_subparsers(dest="verb", required=True)
    register(sub)
    args = parser.parse_args(argv if argv is not None else ["desktop"])
    return int(args.func(args))
