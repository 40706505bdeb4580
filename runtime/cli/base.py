"""What every verb module shares: the invocation context, errors that render themselves,
and output helpers (click's ``ClickException`` shape on argparse)."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from functools import cached_property
from typing import IO, TYPE_CHECKING, Any, TextIO

from runtime.api.errors import CoveError
from runtime.api.transport import EngineUnreachable, resolve_host

if TYPE_CHECKING:
    from runtime.api.client import Client

Handler = Callable[["Cli", argparse.Namespace], int]


class CliError(Exception):
    """A user-facing failure: one line on stderr and an exit code (docker's StatusError)."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.message = message
        self.exit_code = exit_code

    def show(self, file: IO[str]) -> None:
        if self.message:
            print(self.message, file=file)


def unreachable_message(endpoint: str, reason: str = "") -> str:
    msg = (
        f"Cannot connect to the Cove engine at {endpoint}. Is the engine running? "
        "(start it with: cove engine start)"
    )
    if "ermission denied" in reason:
        msg = f"permission denied while trying to connect to the Cove engine at {endpoint}"
    return msg


def error_message(e: BaseException) -> str:
    """docker's wording: daemon answers get "Error response from daemon: " in front."""
    from runtime.api.client import DaemonResponse

    if isinstance(e, EngineUnreachable):
        return unreachable_message(e.endpoint, e.reason)
    if isinstance(e.__cause__, DaemonResponse):
        return f"Error response from daemon: {e}"
    return str(e)


def as_cli_error(e: CoveError | EngineUnreachable, run_like: bool = False) -> CliError:
    """Map an error to its exit code: 1 like docker, or the run codes (125/126/127)."""
    if isinstance(e, EngineUnreachable):
        return CliError(error_message(e), 1)  # docker exits 1 here, even for run
    return CliError(error_message(e), e.exit_code if run_like else 1)


class Cli:
    """One invocation: where the engine is, the streams, a lazily built client."""

    def __init__(
        self,
        host: str | None = None,
        *,
        stdout: TextIO | None = None,
        stderr: TextIO | None = None,
        config_dir: str | None = None,
    ) -> None:
        self.host = resolve_host(host)
        self.out = stdout or sys.stdout
        self.err = stderr or sys.stderr
        self.config_dir = config_dir

    @cached_property
    def client(self) -> Client:
        from runtime.api.client import Client

        return Client(self.host)

    def print(self, *parts: object) -> None:
        print(*parts, file=self.out)

    def warn(self, message: str) -> None:
        print(message, file=self.err)

    def write_json(self, value: Any) -> None:
        """Inspect-style output: a 4-space indented JSON array, like docker's."""
        self.out.write(json.dumps(value, indent=4, ensure_ascii=False) + "\n")

    @property
    def out_binary(self) -> IO[bytes]:
        buf: IO[bytes] = getattr(self.out, "buffer", sys.stdout.buffer)
        return buf


def filters_from(values: Iterable[str] | None) -> dict[str, list[str]]:
    """Repeated ``--filter key=value`` flags to the engine's filter map."""
    out: dict[str, list[str]] = {}
    for item in values or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise CliError(f"bad format of filter (expected name=value): {item}")
        out.setdefault(key, []).append(value)
    return out


def add_format(p: argparse.ArgumentParser, what: str = "", *, short: bool = False) -> None:
    """``--format``; inspect, version and info also take docker's ``-f`` shorthand."""
    names = ("-f", "--format") if short else ("--format",)
    p.add_argument(*names, help=f"Format output using a custom template{what}")


def render_rows(
    cli: Cli, fmt: str | None, default: str, rows: Sequence[Any], headers: Mapping[str, str]
) -> None:
    from runtime.api.formatting import Format, TemplateError

    try:
        cli.out.write(Format.parse(fmt, default).render(rows, headers))
    except TemplateError as e:
        raise CliError(f"template parsing error: {e}") from e


def render_each(cli: Cli, fmt: str, objects: Sequence[Any]) -> None:
    """``inspect --format``: the template once per object, one line each."""
    from runtime.api.formatting import TemplateError, execute, parse

    try:
        tmpl = parse(fmt.replace("\\n", "\n").replace("\\t", "\t"))
        for obj in objects:
            cli.out.write(execute(tmpl, obj) + "\n")
    except TemplateError as e:
        raise CliError(f"template parsing error: {e}") from e


def short_id(ident: str, trunc: bool = True) -> str:
    ident = ident.removeprefix("sha256:") if trunc else ident
    return ident[:12] if trunc else ident


def each(cli: Cli, names: Sequence[str], action: Callable[[str], object], echo: bool = True) -> int:
    """Run ``action`` per name like docker's multi-target verbs: print names, report errors,
    exit 1 if any failed."""
    failed = False
    for name in names:
        try:
            action(name)
        except CoveError as e:
            cli.warn(error_message(e))
            failed = True
        else:
            if echo:
                cli.print(name)
    return 1 if failed else 0


def inspect_each(
    cli: Cli,
    names: Sequence[str],
    fetch: Callable[[str], Any],
    fmt: str | None,
    describe: Callable[[str, CoveError], str] | None = None,
) -> int:
    """docker's multi-target ``inspect``: report each failure, print what was found (as JSON
    or once per ``--format``), exit 1 if any failed. ``describe`` words a failure."""
    found: list[Any] = []
    failed = False
    for name in names:
        try:
            found.append(fetch(name))
        except CoveError as e:
            cli.warn(describe(name, e) if describe else error_message(e))
            failed = True
    if fmt:
        render_each(cli, fmt, found)
    else:
        cli.write_json(found)
    return 1 if failed else 0


def confirmed(cli: Cli, force: bool, warning: str) -> bool:
    """A destructive verb goes ahead with ``--force`` or a "y" on stdin."""
    if force:
        return True
    cli.out.write(f"{warning}\nAre you sure you want to continue? [y/N] ")
    cli.out.flush()
    answer = sys.stdin.readline().strip().lower()
    return answer in ("y", "yes")


def print_titled(
    cli: Cli, title: str, items: Iterable[str] | None, *, blank_after: bool = True
) -> None:
    """A prune report's section: the title and one item a line; nothing when empty."""
    items = list(items or [])
    if items:
        cli.print(f"{title}:")
        for item in items:
            cli.print(item)
        if blank_after:
            cli.print("")


def print_reclaimed(cli: Cli, title: str, items: Iterable[str] | None, space: float | None) -> None:
    from runtime.api.units import human_size

    print_titled(cli, title, items)
    cli.print(f"Total reclaimed space: {human_size(float(space or 0))}")


def deleted_image_lines(report: Mapping[str, Any]) -> list[str]:
    """An image prune's ``ImagesDeleted`` entries as docker prints them ("untagged: x")."""
    return [
        f"{k.lower()}: {v}" for item in report.get("ImagesDeleted") or [] for k, v in item.items()
    ]
