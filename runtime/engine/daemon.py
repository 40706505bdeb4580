"""Runs the engine: parse dockerd-like flags, take the pid file, serve until SIGTERM/SIGINT.

Stopping the daemon never stops containers: their monitors are separate
processes, and the next daemon adopts them (``Engine.restore``).
"""

from __future__ import annotations

import argparse
import fcntl
import gc
import json
import logging
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

from runtime.api.errors import CoveError
from runtime.engine import userns
from runtime.engine.engine import Engine, EngineConfig, preload
from runtime.engine.http import UnixHTTPServer
from runtime.layout import (
    DEFAULT_DATA_ROOT,
    DEFAULT_EXEC_ROOT,
    ENGINE_PID,
    SOCKET_GROUP,
    EngineLayout,
)

log = logging.getLogger("runtime.engine")
START_AFTER_TIMEOUT = 120.0
GC_YOUNG_THRESHOLD = 10_000  # allocations between young-generation collections (default 700)


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="cove engine run", description="Run the Cove engine.")
    p.add_argument("-H", "--host", default="", help="unix://PATH to listen on")
    p.add_argument("--data-root", default=str(DEFAULT_DATA_ROOT))
    p.add_argument("--exec-root", default=str(DEFAULT_EXEC_ROOT))
    p.add_argument("-p", "--pidfile", default="")
    p.add_argument("--group", default=SOCKET_GROUP)
    p.add_argument("--cgroup-parent", default="cove")
    p.add_argument("--bridge", default="cove0", help="name of the default bridge device")
    p.add_argument("--bip", default="172.17.0.1/16", help="default bridge address/prefix")
    p.add_argument("--insecure-registry", action="append", default=[])
    p.add_argument("--registry-mirror", action="append", default=[])
    p.add_argument("--userns-remap", default="",
                   help="default|uid:gid|user[:group]: containers' root is that user's "
                        "first subordinate id (default: user cove-remap, created if missing)")
    p.add_argument("-D", "--debug", action="store_true")
    # The VM guest's init: import everything now, open the data root once PATH exists.
    p.add_argument("--start-after", default="", help=argparse.SUPPRESS)
    return p.parse_args(argv)


def _wait_for(path: Path, timeout: float) -> None:
    """Block until *path* exists; after *timeout*, log and go on (better a running engine
    on the wrong disk than none: the VM's supervisor reports what the log says)."""
    deadline = time.monotonic() + timeout
    while not path.exists():
        if time.monotonic() > deadline:
            log.warning("%s did not appear in %.0fs; starting anyway", path, timeout)
            return
        time.sleep(0.05)


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        if record.exc_info:
            entry["error"] = self.formatException(record.exc_info)
        return json.dumps(entry)


def _setup_logging(debug: bool) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if debug else logging.INFO)


def _take_pidfile(path: Path) -> int:
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise CoveError(f"pid file {path} is locked: is another engine running?") from None
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())
    return fd  # held open (and locked) for the daemon's lifetime


def main(argv: list[str]) -> int:
    gc.disable()  # until listening: see __main__.py
    args = parse_args(argv)
    _setup_logging(args.debug)
    if args.start_after:
        preload()
        _wait_for(Path(args.start_after), START_AFTER_TIMEOUT)
    layout = EngineLayout(Path(args.data_root), Path(args.exec_root))
    socket_path = args.host.removeprefix("unix://") if args.host else str(
        layout.exec_root / "engine.sock")
    if args.host and not args.host.startswith("unix://"):
        print(f"cove engine: only unix:// hosts are supported, not {args.host}", file=sys.stderr)
        return 2
    try:
        remap = userns.resolve(args.userns_remap) if args.userns_remap else None
    except CoveError as e:
        print(f"cove engine: {e}", file=sys.stderr)
        return 1
    config = EngineConfig(
        layout=layout, socket_path=socket_path, cgroup_parent=args.cgroup_parent,
        bridge_name=args.bridge, bridge_cidr=args.bip,
        insecure_registries=tuple(args.insecure_registry),
        registry_mirrors=tuple(args.registry_mirror), debug=args.debug,
        uid_mappings=remap.uid_mappings if remap else (),
        gid_mappings=remap.gid_mappings if remap else (),
    )
    try:
        layout.exec_root.mkdir(parents=True, exist_ok=True)
        pid_fd = _take_pidfile(Path(args.pidfile) if args.pidfile else
                               layout.exec_root / ENGINE_PID)
        engine = Engine(config)
        engine.restore()
        Path(socket_path).parent.mkdir(parents=True, exist_ok=True)
        server = UnixHTTPServer(socket_path, engine.router.dispatch, group=args.group)
    except CoveError as e:
        print(f"cove engine: {e}", file=sys.stderr)
        return 1
    finally:
        # What start-up built lives as long as the daemon: keep it out of every collection.
        gc.freeze()
        # A request allocates a few hundred container objects (an inspect's nested dicts)
        # and frees them all by refcount: at the default 700 allocations per young
        # collection one ran every few requests for nothing.
        gc.set_threshold(GC_YOUNG_THRESHOLD, *gc.get_threshold()[1:])
        gc.enable()
    _serve(server, engine)
    os.close(pid_fd)
    return 0


def _serve(server: UnixHTTPServer, engine: Engine) -> None:
    stop = threading.Event()

    def on_signal(signum: int, frame: object) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGPIPE, signal.SIG_IGN)
    thread = threading.Thread(target=server.serve_forever, name="http", daemon=True)
    thread.start()
    log.info("engine listening on unix://%s", server.path)
    engine.events.publish("daemon", "start", engine.id, name=engine.name)
    # Poll: a process-directed SIGTERM may land on another thread, and then a main thread
    # blocked in a plain wait() is never interrupted to run the Python handler (it hung).
    while not stop.wait(0.5):
        pass
    log.info("engine stopping; containers keep running")
    server.shutdown()
    engine.shutdown()
