"""runtime.cli.fast against the full CLI: the same request bodies for every command line it
accepts, no acceptance where argparse would mean something else, and (against a real
engine) the same output, errors and exit codes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from runtime.api import transport, wire
from runtime.cli import fast
from runtime.cli import main as cli_main
from runtime.cli.execs import exec_config
from runtime.cli.run import build_config
from tests.harness import ROOT, EngineProcess

H = ["-H", "unix:///tmp/x.sock"]

ACCEPTED = [
    [*H, "exec", "c1", "true"],
    ["exec", "c1", "sh", "-c", "echo -- hi"],
    ["--host", "/tmp/x.sock", "exec", "-d", "c1", "sleep", "1"],
    ["--host=unix:///tmp/x.sock", "exec", "-u", "root", "-w", "/tmp", "c1", "pwd"],
    [*H, "exec", "--user=1:2", "--workdir=/", "--privileged", "c1", "id"],
    [*H, "exec", "-e", "A=1", "--env", "B", "--env=C=3", "c1", "env"],
    [*H, "exec", "c1", "ls", "-h", "--help", "-it", "-H", "x"],  # after CONTAINER: all command
    [*H, "exec", "--detach", "c1", "-d", "x"],
    [*H, "run", "--rm", "--network", "none", "busybox", "true"],
    [*H, "run", "busybox"],
    ["run", "-d", "--name", "web", "--net", "n1", "busybox", "sleep", "9"],
    [*H, "run", "--rm", "--init", "--privileged", "-u", "nobody", "-w", "/tmp", "busybox", "id"],
    [*H, "run", "--name=x_1.2-3", "--network=host", "-e", "A=1", "-e", "HOME", "busybox"],
    [*H, "run", "--rm", "busybox", "sh", "-c", "exit 3", "-d", "--rm"],
    [*H, "run", "--name", "", "busybox", "true"],
]

DECLINED = [
    [],
    ["ps"],
    [*H, "container", "exec", "c1", "true"],
    ["-D", "exec", "c1", "true"],  # --debug changes error handling
    ["-H", "tcp://127.0.0.1:2375", "exec", "c1", "true"],
    ["-H", "unix:///tmp/x.sock?x=1", "exec", "c1", "true"],
    ["-Hunix:///tmp/x.sock", "exec", "c1", "true"],
    [*H, "exec", "c1"],  # the full parser reports the missing command
    [*H, "exec"],
    [*H, "exec", "-it", "c1", "sh"],
    [*H, "exec", "-i", "c1", "sh"],
    [*H, "exec", "-t", "c1", "sh"],
    [*H, "exec", "-dt", "c1", "sh"],
    [*H, "exec", "--priv", "c1", "true"],  # argparse abbreviations
    [*H, "exec", "-uroot", "c1", "true"],
    [*H, "exec", "-u=root", "c1", "true"],
    [*H, "exec", "-u", "-1", "c1", "true"],
    [*H, "exec", "-u"],
    [*H, "exec", "--env-file", "f", "c1", "true"],
    [*H, "exec", "--detach-keys", "ctrl-a", "c1", "true"],
    [*H, "exec", "--", "c1", "true"],
    [*H, "exec", "c1", "--", "true"],
    [*H, "exec", "-", "true"],
    [*H, "exec", "--privileged=1", "c1", "true"],
    [*H, "exec", "--help"],
    [*H, "run", "-it", "busybox", "sh"],
    [*H, "run", "-h", "host1", "busybox"],
    [*H, "run", "-p", "80:80", "busybox"],
    [*H, "run", "--rm"],
    [*H, "run", "--sig-proxy=false", "busybox", "true"],
    [*H, "run", "--rm=true", "busybox", "true"],
    [*H, "run", "--network", "--rm", "busybox", "true"],
]


def full_args(argv: list[str]) -> Any:
    return cli_main.build_parser(argv).parse_args(argv)


@pytest.mark.parametrize("argv", ACCEPTED, ids=" ".join)
def test_accepted_lines_build_the_full_parsers_requests(
    argv: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOME", "/root")
    monkeypatch.delenv("B", raising=False)
    inv = fast.parse(argv)
    assert inv is not None
    args = full_args(argv)
    assert args.func.__name__ == f"cmd_{inv.verb}"
    assert inv.host == transport.resolve_host(args.host)
    if inv.verb == "exec":
        assert inv.target == args.container
        assert fast.exec_config(inv) == exec_config(args, [0, 0])
    else:
        assert inv.name == args.name
        assert fast.create_config(inv) == build_config(args)
        assert (inv.detach, inv.rm) == (args.detach, args.rm)


@pytest.mark.parametrize("argv", DECLINED, ids=" ".join)
def test_other_lines_go_to_the_full_parser(argv: list[str]) -> None:
    assert fast.parse(argv) is None


def test_host_comes_from_the_environment_like_the_full_cli(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COVE_HOST", "unix:///tmp/env.sock")
    inv = fast.parse(["exec", "c1", "true"])
    assert inv is not None and inv.host == "unix:///tmp/env.sock"
    monkeypatch.delenv("COVE_HOST")
    inv = fast.parse(["exec", "c1", "true"])
    assert inv is not None and inv.host == transport.DEFAULT_HOST


def test_constants_mirror_the_full_client() -> None:
    assert fast.API_VERSION == wire.API_VERSION
    assert (fast.DEFAULT_HOST, fast.HOST_ENV) == (transport.DEFAULT_HOST, transport.HOST_ENV)


@pytest.mark.parametrize(
    "value",
    [
        {"Cmd": ["sh", "-c", 'echo "q" \\ \t\n'], "Env": ["Ü=ß", "☃"], "Tty": False},
        {"A": None, "B": True, "C": -1, "D": [], "E": {}, "F": [0, 0], "G": {"x": {}}},
    ],
)
def test_json_matches_the_json_module(value: dict[str, Any]) -> None:
    text = fast.dumps(value)
    assert text == json.dumps(value)
    assert fast.loads(f" {text}\n".encode()) == value
    with pytest.raises(ValueError):
        fast.loads(text.encode() + b" x")
    with pytest.raises(ValueError):
        fast.loads(b"{")


# --- against a real engine: fast path and full path side by side -----------------------


def _cli(engine: EngineProcess, full: bool, *args: str) -> tuple[int, str, str]:
    code, out, err, _ = _cli_bytes(engine, full, *args)
    return code, out.decode(errors="replace"), err.decode()


# main()'s two steps apart, to report which path answered ("fast"/"full") on a pipe.
_MAIN = """import os, sys
from runtime.cli import fast
from runtime.cli.main import run
mode, report, argv = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
code = None if mode == "full" else fast.main(argv)
os.write(report, b"full" if code is None else b"fast")
os.close(report)
sys.exit(run(argv) if code is None else code)
"""


def _cli_bytes(engine: EngineProcess, full: bool, *args: str) -> tuple[int, bytes, bytes, str]:
    """One CLI run in a fresh interpreter, fast path first (unless full); also which answered."""
    read, write = os.pipe()
    try:
        proc = subprocess.run(
            [
                sys.executable,
                "-c",
                _MAIN,
                "full" if full else "main",
                str(write),
                "-H",
                engine.url,
                *args,
            ],
            cwd=ROOT,
            capture_output=True,
            timeout=60,
            stdin=subprocess.DEVNULL,
            pass_fds=(write,),
            check=False,
        )
        os.close(write)
        write = -1
        path = os.read(read, 16).decode()
    finally:
        os.close(read)
        if write >= 0:
            os.close(write)
    return proc.returncode, proc.stdout, proc.stderr, path


@pytest.fixture(scope="module")
def running(engine: EngineProcess) -> Iterator[str]:
    code, out, err = _cli(engine, True, "run", "-d", "--name", "fast-c1", "busybox", "sleep", "600")
    assert code == 0, err
    yield out.strip()
    _cli(engine, True, "rm", "-f", "fast-c1")


# (argv, which path answers: "fast", or "full" after a failure that changed nothing)
SAME_RESULT = [
    (["exec", "fast-c1", "sh", "-c", "echo out; echo err >&2; exit 3"], "fast"),
    (
        [
            "exec",
            "-u",
            "nobody",
            "-w",
            "/tmp",
            "-e",
            "A=1",
            "fast-c1",
            "sh",
            "-c",
            "id -u; pwd; echo $A",
        ],
        "fast",
    ),
    (["exec", "fast-c1", "nosuchcommand"], "fast"),
    (["exec", "fast-c1", "head", "-c", "200000", "/bin/busybox"], "fast"),
    (["exec", "no-such-container", "true"], "full"),
    (["exec", "-d", "fast-c1", "true"], "fast"),
    (
        [
            "run",
            "--rm",
            "--network",
            "none",
            "busybox",
            "sh",
            "-c",
            "echo out; echo err >&2; exit 5",
        ],
        "fast",
    ),
    (["run", "--rm", "busybox", "nosuchcommand"], "fast"),
    (["run", "--rm", "--network", "no-such-network", "busybox", "true"], "fast"),  # start fails
    (["run", "--rm", "127.0.0.1:9/no-such-image:1", "true"], "full"),  # pulls from loopback only
    (["run", "--rm", "--name", "fast-c1", "busybox", "true"], "full"),
]


@pytest.mark.root
@pytest.mark.parametrize(
    ("args", "path"), SAME_RESULT, ids=lambda v: " ".join(v) if isinstance(v, list) else v
)
def test_fast_and_full_paths_answer_alike(
    engine: EngineProcess, running: str, args: list[str], path: str
) -> None:
    *fast_result, fast_path = _cli_bytes(engine, False, *args)
    *full_result, full_path = _cli_bytes(engine, True, *args)
    assert (fast_result, fast_path, full_path) == (full_result, path, "full")


@pytest.mark.root
def test_exec_on_a_stopped_container_and_detached_run(engine: EngineProcess) -> None:
    code, cid, err = _cli(engine, False, "run", "-d", "--network", "none", "busybox", "true")
    assert code == 0 and len(cid.strip()) == 64, err
    _cli(engine, True, "wait", cid.strip())
    try:
        fast_result = _cli(engine, False, "exec", cid.strip(), "true")
        assert fast_result == _cli(engine, True, "exec", cid.strip(), "true")
        assert fast_result[0] == 1 and "is not running" in fast_result[2]
    finally:
        _cli(engine, True, "rm", "-f", cid.strip())


@pytest.mark.root
def test_run_forwards_signals_to_the_container(engine: EngineProcess) -> None:
    """No TTY: SIGTERM to the CLI reaches the container (docker's --sig-proxy default)."""
    script = "trap 'echo got-term; exit 7' TERM; echo ready; while :; do sleep 0.1; done"
    argv = [
        sys.executable,
        "-c",
        "from runtime.cli.main import main; main()",
        "-H",
        engine.url,
        "run",
        "--rm",
        "--network",
        "none",
        "busybox",
        "sh",
        "-c",
        script,
    ]
    proc = subprocess.Popen(
        argv, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline() == b"ready\n"
        proc.terminate()
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert (proc.returncode, out) == (7, b"got-term\n"), err


@pytest.mark.root
def test_the_fast_path_imports_none_of_the_heavy_modules(
    engine: EngineProcess, running: str
) -> None:
    """What the fast path exists for: exec and run answer without argparse, re, typing,
    json, socket or enum (each of which the full CLI's start-up pays for)."""
    heavy = ("argparse", "re", "typing", "json", "socket", "enum", "urllib.parse", "threading")
    code = (
        "import sys\nimport runtime.cli.main\nfrom runtime.cli import fast\n"
        "codes = [fast.main(['-H', sys.argv[1], *a.split()]) for a in sys.argv[2:]]\n"
        f"print(codes, sorted(m for m in {heavy!r} if m in sys.modules))"
    )
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            code,
            engine.url,
            "exec fast-c1 true",
            "run --rm --network none busybox true",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.stdout.strip() == "[0, 0] []", proc.stderr
