"""Verbs that stream a container's stdio: start (-a), attach, exec, logs."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any

from runtime.api.client import Hijacked, Waiter
from runtime.api.errors import CoveError
from runtime.api.transport import EngineUnreachable
from runtime.cli import stdio
from runtime.cli.base import Cli, CliError, as_cli_error, error_message
from runtime.cli.run import exit_status, start_container

Resize = Callable[[int, int], None]


def configure(verb: str, p: argparse.ArgumentParser) -> None:
    {"start": _start_flags, "attach": _attach_flags, "exec": _exec_flags, "logs": _logs_flags}[
        verb
    ](p)


def _start_flags(p: argparse.ArgumentParser) -> None:
    a = p.add_argument
    a("-a", "--attach", action="store_true", help="Attach STDOUT/STDERR and forward signals")
    a("-i", "--interactive", action="store_true", help="Attach container's STDIN")
    a("--detach-keys", help="Override the key sequence for detaching a container")
    a("containers", nargs="+", metavar="CONTAINER")
    p.set_defaults(func=cmd_start)


def _attach_flags(p: argparse.ArgumentParser) -> None:
    a = p.add_argument
    a("--no-stdin", action="store_true", help="Do not attach STDIN")
    a("--sig-proxy", default="true", help="Proxy all received signals to the process")
    a("--detach-keys", help="Override the key sequence for detaching a container")
    a("container", metavar="CONTAINER")
    p.set_defaults(func=cmd_attach)


def _exec_flags(p: argparse.ArgumentParser) -> None:
    a = p.add_argument
    a("-d", "--detach", action="store_true", help="Detached mode: run command in the background")
    a("-i", "--interactive", action="store_true", help="Keep STDIN open even if not attached")
    a("-t", "--tty", action="store_true", help="Allocate a pseudo-TTY")
    a("-u", "--user", default="", help="Username or UID (format: <name|uid>[:<group|gid>])")
    a("-w", "--workdir", default="", help="Working directory inside the container")
    a("-e", "--env", action="append", default=[], help="Set environment variables")
    a("--env-file", action="append", default=[], help="Read in a file of environment variables")
    a("--privileged", action="store_true", help="Give extended privileges to the command")
    a("--detach-keys", help="Override the key sequence for detaching a container")
    a("container", metavar="CONTAINER")
    a("command", nargs=argparse.REMAINDER, metavar="COMMAND")
    p.set_defaults(func=cmd_exec)


def _logs_flags(p: argparse.ArgumentParser) -> None:
    a = p.add_argument
    a("-f", "--follow", action="store_true", help="Follow log output")
    a("-t", "--timestamps", action="store_true", help="Show timestamps")
    a("-n", "--tail", default="all", help="Number of lines to show from the end of the logs")
    a(
        "--since",
        help='Show logs since timestamp (e.g. "2013-01-02T13:23:37Z") or relative (e.g. "42m")',
    )
    a("--until", help='Show logs before a timestamp or relative (e.g. "42m")')
    a("--details", action="store_true", help="Show extra details provided to logs")
    a("container", metavar="CONTAINER")
    p.set_defaults(func=cmd_logs)


def pump(
    cli: Cli,
    conn: Hijacked,
    *,
    stdin: bool,
    tty: bool,
    detach_keys: str | None,
    resize: Resize | None = None,
    kill: Callable[[str], None] | None = None,
) -> bool:
    """Run a session on this terminal until the stream ends; True if the user detached."""
    try:
        keys = stdio.parse_detach_keys(detach_keys or stdio.DEFAULT_DETACH_KEYS)
    except ValueError as e:
        conn.close()
        raise CliError(str(e)) from e
    session = stdio.Session(
        conn,
        stdin=stdio.binary(sys.stdin) if stdin else None,
        stdout=stdio.binary(cli.out),
        stderr=stdio.binary(cli.err),
        detach_keys=keys if tty and stdin else b"",
    )
    raw = tty and stdin and stdio.is_tty(sys.stdin)
    with (
        stdio.raw_terminal(0, raw),
        stdio.on_resize(resize or _noop, tty and resize is not None),
        stdio.proxy_signals(kill or _nokill, not tty and kill is not None),
    ):
        return session.run()


def _nokill(_sig: str) -> None:
    pass


def killer(cli: Cli, cid: str, sig_proxy: str) -> Callable[[str], None] | None:
    if str(sig_proxy).lower() in ("false", "0", "no"):
        return None
    return lambda sig: cli.client.kill(cid, sig)


def _noop(_h: int, _w: int) -> None:
    pass


def start_while_attached(
    cli: Cli, cid: str, conn: Hijacked, waiter: Waiter, detach_keys: str | None = None
) -> None:
    """Start a container whose streams and wait are already open (so no output or exit is
    missed); if the start fails, close both before the error goes up."""
    try:
        start_container(cli, cid, detach_keys)
    except BaseException:
        conn.close()
        waiter.close()
        raise


def follow_attached(
    cli: Cli,
    cid: str,
    conn: Hijacked,
    waiter: Waiter,
    *,
    stdin: bool,
    tty: bool,
    detach_keys: str | None,
    sig_proxy: str,
) -> int:
    """Pump an attached container's streams on this terminal: 0 if the user detached,
    otherwise the container's exit status."""
    client = cli.client
    detached = pump(
        cli,
        conn,
        stdin=stdin,
        tty=tty,
        detach_keys=detach_keys,
        resize=lambda h, w: client.resize(cid, h, w),
        kill=killer(cli, cid, sig_proxy),
    )
    if detached:
        waiter.close()
        return 0
    return exit_status(waiter.result())


def cmd_start(cli: Cli, args: argparse.Namespace) -> int:
    if args.attach or args.interactive:
        if len(args.containers) > 1:
            raise CliError("you cannot start and attach multiple containers at once")
        try:
            return _start_attached(cli, args, args.containers[0])
        except (CoveError, EngineUnreachable) as e:
            raise as_cli_error(e, run_like=True) from e
    failed = []
    for name in args.containers:
        try:
            cli.client.start(name, args.detach_keys)
            cli.print(name)
        except CoveError as e:
            cli.warn(error_message(e))
            failed.append(name)
    if failed:
        raise CliError(f"Error: failed to start containers: {', '.join(failed)}")
    return 0


def _start_attached(cli: Cli, args: argparse.Namespace, name: str) -> int:
    """docker start -a: inspect, attach, wait?condition=next-exit, start (compat §a.3)."""
    client = cli.client
    info = client.inspect_container(name)
    cid, tty = str(info["Id"]), bool(info.get("Config", {}).get("Tty"))
    stdin = bool(args.interactive and info.get("Config", {}).get("OpenStdin"))
    return _attach_session(cli, args, cid, stdin=stdin, tty=tty, start=True)


def cmd_attach(cli: Cli, args: argparse.Namespace) -> int:
    client = cli.client
    info = client.inspect_container(args.container)
    state = info.get("State", {})
    if not state.get("Running"):
        raise CliError("You cannot attach to a stopped container, start it first")
    if state.get("Paused"):
        raise CliError("You cannot attach to a paused container, unpause it first")
    cid, config = str(info["Id"]), info.get("Config", {})
    tty, stdin = bool(config.get("Tty")), bool(config.get("OpenStdin")) and not args.no_stdin
    return _attach_session(cli, args, cid, stdin=stdin, tty=tty, start=False)


def _attach_session(
    cli: Cli, args: argparse.Namespace, cid: str, *, stdin: bool, tty: bool, start: bool
) -> int:
    """Attach, register the wait for the next exit, start if asked (in that order, so no
    output or exit is missed), then follow the streams until exit or detach."""
    conn = cli.client.attach(cid, stdin=stdin, detach_keys=args.detach_keys)
    waiter = cli.client.wait_begin(cid, "next-exit")
    if start:
        start_while_attached(cli, cid, conn, waiter, args.detach_keys)
    return follow_attached(
        cli,
        cid,
        conn,
        waiter,
        stdin=stdin,
        tty=tty,
        detach_keys=args.detach_keys,
        sig_proxy=getattr(args, "sig_proxy", "true"),
    )


def cmd_exec(cli: Cli, args: argparse.Namespace) -> int:
    if not args.command:
        raise CliError('"cove exec" requires at least 2 arguments.', 1)
    client = cli.client
    info = client.inspect_container(args.container)
    if not info.get("State", {}).get("Running"):
        raise CliError(f"Error response from daemon: container {info['Id']} is not running")
    console = list(stdio.terminal_size()) if args.tty else [0, 0]
    config = exec_config(args, console)
    exec_id = str(client.exec_create(str(info["Id"]), config)["Id"])
    conn = client.exec_start(
        exec_id, {"Detach": args.detach, "Tty": args.tty, "ConsoleSize": console}
    )
    if conn is None:
        return 0
    detached = pump(
        cli,
        conn,
        stdin=args.interactive,
        tty=args.tty,
        detach_keys=args.detach_keys,
        resize=lambda h, w: client.exec_resize(exec_id, h, w),
    )
    if detached:
        return 0
    return int(client.exec_inspect(exec_id).get("ExitCode") or 0)


def exec_config(args: argparse.Namespace, console: list[int]) -> dict[str, Any]:
    """The exec create body docker sends for these flags."""
    from runtime.cli import opts

    env = [e for path in args.env_file for e in opts.parse_env_file(path)] + opts.parse_env(
        args.env
    )
    return {
        "User": args.user,
        "Privileged": args.privileged,
        "Tty": args.tty,
        "ConsoleSize": console,
        "AttachStdin": args.interactive and not args.detach,
        "AttachStderr": not args.detach,
        "AttachStdout": not args.detach,
        "Detach": args.detach,
        "DetachKeys": args.detach_keys or "",
        "Env": env,
        "WorkingDir": args.workdir,
        "Cmd": args.command,
    }


def cmd_logs(cli: Cli, args: argparse.Namespace) -> int:
    from runtime.api.units import api_time

    try:
        since = api_time(args.since) if args.since else None
        until = api_time(args.until) if args.until else None
    except ValueError as e:
        raise CliError(str(e)) from e
    client = cli.client
    info = client.inspect_container(args.container)
    tty = bool(info.get("Config", {}).get("Tty"))
    out, err = stdio.binary(cli.out), stdio.binary(cli.err)
    for stream, data in client.logs(
        str(info["Id"]),
        follow=args.follow,
        timestamps=args.timestamps,
        tail=args.tail,
        since=since,
        until=until,
        tty=tty,
    ):
        target = err if stream == 2 else out
        target.write(data)
        target.flush()
    return 0
