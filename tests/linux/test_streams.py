"""attach, exec and TTYs through the monitor's socket."""

from __future__ import annotations

import socket
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from runtime.api.errors import CommandNotFound
from runtime.linux.runtime import LinuxRuntime
from runtime.spec import DEFAULT_CAPABILITIES, ProcessSpec
from tests.linux.conftest import PATH_ENV, SpecFactory, log_text
from tests.linux.streams import demux, read_all, read_until

pytestmark = pytest.mark.root


def test_attach_stdin_and_stdout(runtime: LinuxRuntime, make_spec: SpecFactory) -> None:
    spec = make_spec(["sh", "-c", "read line; echo got:$line; echo err >&2"],
                     stdin=True, stdin_once=True)
    runtime.start(spec)
    sock = runtime.attach(spec.id, stdin=True, stdout=True, stderr=True)
    sock.sendall(b"hello\n")
    sock.shutdown(socket.SHUT_WR)
    out = demux(read_all(sock))
    assert out[1] == b"got:hello\n"
    assert out[2] == b"err\n"
    status = runtime.wait(spec.id, timeout=10)
    assert status is not None and status.code == 0
    assert log_text(spec) == "got:hello\nerr\n"


def test_stdin_once_eof_ends_cat(runtime: LinuxRuntime, make_spec: SpecFactory) -> None:
    spec = make_spec(["cat"], stdin=True, stdin_once=True)
    runtime.start(spec)
    sock = runtime.attach(spec.id, stdin=True, stdout=True, stderr=False)
    sock.sendall(b"a" * 200_000)
    sock.shutdown(socket.SHUT_WR)
    assert demux(read_all(sock))[1] == b"a" * 200_000
    assert runtime.wait(spec.id, timeout=10) is not None


@pytest.mark.parametrize("run", range(6))
def test_attach_before_start_sees_everything(runtime: LinuxRuntime, make_spec: SpecFactory,
                                             run: int) -> None:
    # Repeated: the container often exits before its monitor is set up (the launch
    # helper reports the start first), and its output must still reach the attach.
    spec = make_spec(["echo", "early"])
    sock = runtime.attach(spec.id, stdin=False, stdout=True, stderr=True)
    runtime.start(spec)
    assert demux(read_all(sock))[1] == b"early\n"


def test_tty_attach_is_raw(runtime: LinuxRuntime, make_spec: SpecFactory) -> None:
    spec = make_spec(["sh"], stdin=True, process={"terminal": True, "console_size": (30, 100)})
    runtime.start(spec)
    sock = runtime.attach(spec.id, stdin=True, stdout=True, stderr=True)
    sock.sendall(b"tty; stty size; exit 5\n")
    out = read_all(sock)
    assert b"/dev/pts/0" in out
    assert b"30 100" in out
    assert not out.startswith(b"\x01\x00\x00\x00")
    status = runtime.wait(spec.id, timeout=10)
    assert status is not None and status.code == 5


def test_resize(runtime: LinuxRuntime, make_spec: SpecFactory) -> None:
    spec = make_spec(["sh"], stdin=True, process={"terminal": True})
    runtime.start(spec)
    sock = runtime.attach(spec.id, stdin=True, stdout=True, stderr=True)
    runtime.resize(spec.id, 12, 34)
    sock.sendall(b"stty size\n")
    assert b"12 34" in read_until(sock, b"12 34")
    sock.sendall(b"exit\n")
    read_all(sock)


def _exec(runtime: LinuxRuntime, cid: str, args: list[str], **kw: object) -> ProcessSpec:
    values: dict[str, object] = {"args": tuple(args), "env": (PATH_ENV, "FOO=bar"),
                                 "capabilities": DEFAULT_CAPABILITIES}
    values.update(kw)
    return ProcessSpec(**values)  # type: ignore[arg-type]


def test_exec_exit_code_env_user_cwd(runtime: LinuxRuntime, make_spec: SpecFactory) -> None:
    spec = make_spec(["sleep", "100"])
    runtime.start(spec)
    proc = _exec(runtime, spec.id, ["sh", "-c", "echo $FOO $(id -u):$(id -g) $(pwd) $$; exit 7"],
                 user="www-data", cwd="/tmp")
    sock = runtime.exec_start(spec.id, "e1", proc, stdin=False)
    out = demux(read_all(sock))
    foo, ids, cwd, pid = out[1].decode().split()
    assert (foo, ids, cwd) == ("bar", "33:33", "/tmp")
    assert int(pid) > 1  # inside the container's PID namespace
    running, host_pid, code = runtime.exec_status(spec.id, "e1")
    assert (running, code) == (False, 7) and host_pid > 0
    assert "bar" not in log_text(spec)


def test_exec_stdin_and_not_found(runtime: LinuxRuntime, make_spec: SpecFactory) -> None:
    spec = make_spec(["sleep", "100"])
    runtime.start(spec)
    sock = runtime.exec_start(spec.id, "cat", _exec(runtime, spec.id, ["cat"]), stdin=True)
    assert runtime.exec_status(spec.id, "cat")[0] is True
    sock.sendall(b"ping")
    sock.shutdown(socket.SHUT_WR)
    assert demux(read_all(sock))[1] == b"ping"
    assert runtime.exec_status(spec.id, "cat") [2] == 0
    with pytest.raises(CommandNotFound):
        runtime.exec_start(spec.id, "bad", _exec(runtime, spec.id, ["nosuch"]), stdin=False)
    assert runtime.exec_status(spec.id, "bad")[2] == 127


def test_exec_tty(runtime: LinuxRuntime, make_spec: SpecFactory) -> None:
    spec = make_spec(["sleep", "100"])
    runtime.start(spec)
    proc = _exec(runtime, spec.id, ["sh", "-c", "tty; stty size"], terminal=True,
                 console_size=(20, 60))
    out = read_all(runtime.exec_start(spec.id, "t", proc, stdin=False))
    assert out.startswith(b"/dev/pts/")
    assert b"20 60" in out


def test_output_broadcast_to_every_attach(runtime: LinuxRuntime,
                                          make_spec: SpecFactory) -> None:
    spec = make_spec(["sh", "-c", "read x; echo $x; echo bye >&2"], stdin=True)
    runtime.start(spec)
    both = runtime.attach(spec.id, stdin=False, stdout=True, stderr=True)
    only_err = runtime.attach(spec.id, stdin=False, stdout=False, stderr=True)
    writer = runtime.attach(spec.id, stdin=True, stdout=False, stderr=False)
    writer.sendall(b"hi\n")
    assert demux(read_all(both)) == {1: b"hi\n", 2: b"bye\n"}
    assert demux(read_all(only_err)) == {1: b"", 2: b"bye\n"}
    assert read_all(writer) == b""


def test_log_keeps_every_line_of_a_flood(runtime: LinuxRuntime,
                                         make_spec: SpecFactory) -> None:
    spec = make_spec(["seq", "1", "200000"])
    runtime.start(spec)
    sock = runtime.attach(spec.id, stdin=False, stdout=True, stderr=False)
    time.sleep(0.5)  # a slow reader: the container blocks, nothing is dropped
    received = demux(read_all(sock))[1]
    assert runtime.wait(spec.id, timeout=20) is not None
    expected = "".join(f"{i}\n" for i in range(1, 200001))
    assert log_text(spec) == expected
    assert received.decode().endswith("200000\n")


def test_concurrent_starts_from_threads(runtime: LinuxRuntime, make_spec: SpecFactory) -> None:
    specs = [make_spec(["sh", "-c", f"echo {i}"]) for i in range(6)]
    with ThreadPoolExecutor(6) as pool:
        list(pool.map(runtime.start, specs))
    for i, spec in enumerate(specs):
        status = runtime.wait(spec.id, timeout=20)
        assert status is not None and status.code == 0
        assert log_text(spec) == f"{i}\n"
