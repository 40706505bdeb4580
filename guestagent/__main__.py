"""``guestagent VERB``: what the host runs over SSH (and what PID 1 is, via ``init``).

Verbs: ``dial-stdio`` (stdin/stdout <-> engine socket), ``events`` (JSON lines), ``info``
(health and disk usage as JSON), ``version``, ``set-clock EPOCH``, ``poweroff``, ``init``.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from collections.abc import Sequence

from guestagent import __version__
from guestagent.protocol import ENGINE_SOCKET
from runtime.api.errors import CoveError


def _dial_stdio(args: argparse.Namespace) -> int:
    from guestagent.relay import dial_stdio

    return dial_stdio(args.socket, wait=args.wait)


def _events(args: argparse.Namespace) -> int:
    from guestagent.clock import SystemClock
    from guestagent.engineports import EngineEvents, published_ports
    from guestagent.events import Timing, watch
    from guestagent.ports import PROC_FILES, listening_ports

    files = tuple(args.proc_file) if args.proc_file else PROC_FILES
    clock = SystemClock()
    feed = EngineEvents(args.socket, clock).start()
    events = watch(
        clock,
        feed,
        lambda: listening_ports(files),
        lambda: published_ports(args.socket),
        Timing(resync=args.resync, heartbeat=args.heartbeat),
    )
    for event in events:
        try:
            sys.stdout.write(event.to_line())
            sys.stdout.flush()
        except BrokenPipeError:
            return 0
    return 0


def _info(args: argparse.Namespace) -> int:
    from guestagent.health import collect

    print(collect(args.socket, tuple(args.disk)).to_json())
    return 0


def _set_clock(args: argparse.Namespace) -> int:
    from guestagent.clock import set_wall_clock

    set_wall_clock(args.epoch)
    return 0


def _poweroff(args: argparse.Namespace) -> int:
    os.kill(1, signal.SIGTERM)
    return 0


def _init(args: argparse.Namespace) -> int:
    from guestagent.init import main

    adopt = {}
    for item in args.adopt:
        name, _, pid = item.partition("=")
        adopt[name] = int(pid or 0)
    main(adopt or None)
    return 0


def _version(args: argparse.Namespace) -> int:
    print(__version__)
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="guestagent")
    sub = p.add_subparsers(dest="verb", required=True)
    d = sub.add_parser("dial-stdio", help="relay stdin/stdout to the engine socket")
    d.add_argument("--socket", default=ENGINE_SOCKET)
    d.add_argument("--wait", type=float, default=60.0, help="seconds to wait for the engine")
    d.set_defaults(func=_dial_stdio)
    e = sub.add_parser("events", help="JSON-lines stream of port and engine events")
    e.add_argument("--socket", default=ENGINE_SOCKET)
    # --interval was the poll period; a periodic full re-read is what is left of it
    # (vmhost.testing.LocalGuest still passes it to see fake /proc files change quickly).
    e.add_argument(
        "--resync",
        "--interval",
        dest="resync",
        type=float,
        default=30.0,
        help="seconds between full re-reads of the ports (engine events trigger one at once)",
    )
    e.add_argument("--heartbeat", type=float, default=5.0, help="seconds between heartbeats")
    e.add_argument("--proc-file", action="append", help=argparse.SUPPRESS)
    e.set_defaults(func=_events)
    i = sub.add_parser("info", help="health and disk usage as JSON")
    i.add_argument("--socket", default=ENGINE_SOCKET)
    i.add_argument("--disk", action="append", default=["/", "/var/lib/cove"])
    i.set_defaults(func=_info)
    c = sub.add_parser("set-clock", help="step the wall clock to EPOCH seconds")
    c.add_argument("epoch", type=float)
    c.set_defaults(func=_set_clock)
    sub.add_parser("poweroff", help="ask PID 1 to power off").set_defaults(func=_poweroff)
    init = sub.add_parser("init", help="run as PID 1")
    init.add_argument("--adopt", action="append", default=[], help="NAME=PID started by stage 1")
    init.set_defaults(func=_init)
    sub.add_parser("version").set_defaults(func=_version)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        rc: int = args.func(args)
    except CoveError as e:
        print(f"guestagent: {e}", file=sys.stderr)
        return e.exit_code
    return rc


if __name__ == "__main__":
    sys.exit(main())
