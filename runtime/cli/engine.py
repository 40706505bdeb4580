"""``cove engine start|stop|status|run``: manage the daemon process on this host.

The engine is spawned as ``python -m runtime.engine`` and never imported here,
so the CLI stays importable on macOS/Windows (tests/test_layering.py).
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from runtime.cli.base import Cli, CliError

DEFAULT_DATA_ROOT = "/var/lib/cove"
DEFAULT_EXEC_ROOT = "/run/cove"
START_TIMEOUT = 30.0
STOP_TIMEOUT = 30.0


def configure(verb: str, p: argparse.ArgumentParser) -> None:
    p.add_argument("--data-root", default=DEFAULT_DATA_ROOT, help="Root of persistent engine state")
    p.add_argument(
        "--exec-root", default=DEFAULT_EXEC_ROOT, help="Root of runtime state (pid file, sockets)"
    )
    if verb in ("start", "run"):
        p.add_argument(
            "--host",
            dest="engine_host",
            help="Socket the engine listens on (default: the -H/--host endpoint)",
        )
        p.add_argument("--pidfile", help="Path of the engine's pid file")
        p.add_argument("engine_args", nargs=argparse.REMAINDER, help="Extra engine flags")
    if verb in ("start", "stop"):
        p.add_argument(
            "--timeout",
            type=float,
            default=START_TIMEOUT if verb == "start" else STOP_TIMEOUT,
            help="Seconds to wait",
        )
    p.set_defaults(
        func={"start": cmd_start, "stop": cmd_stop, "status": cmd_status, "run": cmd_run}[verb]
    )


def _command(cli: Cli, args: argparse.Namespace) -> list[str]:
    host = args.engine_host or cli.host
    cmd = [
        sys.executable,
        "-m",
        "runtime.engine",
        "--host",
        host,
        "--data-root",
        args.data_root,
        "--exec-root",
        args.exec_root,
    ]
    if args.pidfile:
        cmd += ["--pidfile", args.pidfile]
    return cmd + [a for a in args.engine_args if a != "--"]


def _pid_path(args: argparse.Namespace) -> Path:
    return Path(getattr(args, "pidfile", None) or Path(args.exec_root) / "engine.pid")


def engine_pid(args: argparse.Namespace) -> int | None:
    """The pid in the pid file, if that process is alive."""
    try:
        pid = int(_pid_path(args).read_text().strip())
    except (OSError, ValueError):
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        return pid  # alive, owned by someone else
    return pid


def _answers(cli: Cli) -> bool:
    from runtime.api.errors import CoveError
    from runtime.api.transport import EngineUnreachable

    try:
        cli.client.ping()
    except (CoveError, EngineUnreachable, OSError):
        return False
    return True


def _log_tail(path: Path, lines: int = 15) -> str:
    try:
        text = path.read_text(errors="replace").splitlines()[-lines:]
    except OSError:
        return ""
    return "\n".join("  " + line for line in text)


def cmd_start(cli: Cli, args: argparse.Namespace) -> int:
    if args.engine_host:
        cli.host = args.engine_host
        cli.__dict__.pop("client", None)
    if _answers(cli):
        cli.print(f"Cove engine is already running at {cli.host}")
        return 0
    log_path = Path(args.data_root) / "engine.log"
    try:
        log_path.parent.mkdir(parents=True, exist_ok=True)
        log = open(log_path, "ab")  # noqa: SIM115 - the child inherits it; closed after spawn
    except OSError as e:
        raise CliError(f"cannot open {log_path}: {e.strerror or e}") from e
    with log:
        proc = subprocess.Popen(
            _command(cli, args),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            start_new_session=True,
            close_fds=True,
            cwd=_package_root(),
        )
    deadline = time.monotonic() + args.timeout
    while time.monotonic() < deadline:
        if _answers(cli):
            cli.print(f"Cove engine started at {cli.host} (pid {proc.pid})")
            return 0
        if proc.poll() is not None:
            raise CliError(
                f"the engine exited with status {proc.returncode}; "
                f"last lines of {log_path}:\n{_log_tail(log_path)}"
            )
        time.sleep(0.05)
    raise CliError(
        f"the engine did not answer within {args.timeout:g}s; "
        f"last lines of {log_path}:\n{_log_tail(log_path)}"
    )


def _package_root() -> str:
    # `python -m runtime.engine` must find the same package this CLI runs from.
    return str(Path(__file__).resolve().parent.parent.parent)


def cmd_stop(cli: Cli, args: argparse.Namespace) -> int:
    pid = engine_pid(args)
    if pid is None:
        cli.print("Cove engine is not running")
        return 0
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return 0
    except PermissionError as e:
        raise CliError(f"cannot stop the engine (pid {pid}): permission denied") from e
    deadline = time.monotonic() + args.timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            cli.print("Cove engine stopped")
            return 0
        time.sleep(0.05)
    raise CliError(f"the engine (pid {pid}) did not exit within {args.timeout:g}s")


def cmd_status(cli: Cli, args: argparse.Namespace) -> int:
    pid = engine_pid(args)
    if _answers(cli):
        suffix = f" (pid {pid})" if pid else ""
        cli.print(f"Cove engine is running at {cli.host}{suffix}")
        return 0
    if pid:
        cli.print(f"Cove engine process {pid} is running but does not answer at {cli.host}")
        return 1
    cli.print("Cove engine is not running")
    return 3  # LSB "program is not running"


def cmd_run(cli: Cli, args: argparse.Namespace) -> int:
    cmd = _command(cli, args)
    os.chdir(_package_root())
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(cmd[0], cmd)
