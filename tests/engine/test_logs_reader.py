"""The json-file log reader behind ``GET /containers/{id}/logs`` (no engine needed)."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from runtime.engine import logs
from runtime.linux.jsonlog import encode_entry

T0 = 1_790_000_000 * 1_000_000_000


def _write(path: Path, lines: list[tuple[bytes, str, int]]) -> None:
    with open(path, "ab") as f:
        for data, stream, ns in lines:
            f.write(encode_entry(data, stream, ns))


def _read(path: Path, **kw: object) -> list[logs.LogEntry]:
    args: dict[str, object] = {"tail": None, "since_ns": None, "until_ns": None,
                               "follow": False, "is_running": lambda: False, **kw}
    return list(logs.read(path, **args))  # type: ignore[arg-type]


def test_rotated_files_oldest_first_and_escapes_survive(tmp_path: Path) -> None:
    log = tmp_path / "c-json.log"
    _write(tmp_path / "c-json.log.2", [(b"one\n", "stdout", T0)])
    _write(tmp_path / "c-json.log.1", [(b'two "quoted"\t\\\n', "stderr", T0 + 1)])
    _write(log, [("drei ü\n".encode(), "stdout", T0 + 2)])
    got = _read(log)
    assert [(e.stream, e.data) for e in got] == [
        (logs.STDOUT, b"one\n"), (logs.STDERR, b'two "quoted"\t\\\n'),
        (logs.STDOUT, "drei ü\n".encode())]


def test_a_torn_line_does_not_cost_the_rest_of_its_block(tmp_path: Path) -> None:
    log = tmp_path / "c-json.log"
    _write(log, [(b"a\n", "stdout", T0)])
    with open(log, "ab") as f:
        f.write(b'{"log":"garbage\n')
    _write(log, [(b"b\n", "stdout", T0 + 1)])
    assert [e.data for e in _read(log)] == [b"a\n", b"b\n"]


def test_tail_since_and_until(tmp_path: Path) -> None:
    log = tmp_path / "c-json.log"
    _write(log, [(f"{i}\n".encode(), "stdout", T0 + i * 1000) for i in range(10)])
    assert [e.data for e in _read(log, tail=2)] == [b"8\n", b"9\n"]
    assert _read(log, tail=0) == []
    window = _read(log, since_ns=T0 + 3000, until_ns=T0 + 5000)
    assert [e.data for e in window] == [b"3\n", b"4\n", b"5\n"]
    assert [e.data for e in _read(log, tail=1, since_ns=T0, until_ns=T0 + 5000)] == [b"5\n"]


def test_chunks_gather_frames_up_to_the_chunk_size(tmp_path: Path) -> None:
    log = tmp_path / "c-json.log"
    lines = [(b"x" * 99 + b"\n", "stderr" if i % 3 == 0 else "stdout", T0 + i)
             for i in range(5000)]
    _write(log, lines)
    batches = logs.read_batches(log, tail=None, since_ns=None, until_ns=None, follow=False,
                                is_running=lambda: False)
    chunks = list(logs.chunks(batches, streams=frozenset({logs.STDOUT, logs.STDERR}),
                              tty=False, timestamps=False))
    expected = b"".join(logs.frame(2 if s == "stderr" else 1, d) for d, s, _ in lines)
    assert b"".join(chunks) == expected
    assert len(chunks) < 20 and all(len(c) < logs.CHUNK + 200 for c in chunks)
    only_err = logs.chunks([_read(log)], streams=frozenset({logs.STDERR}), tty=True,
                           timestamps=True)
    first = next(iter(only_err))
    assert first.startswith(b"20") and b"Z " + b"x" * 99 + b"\n" in first


def test_follow_picks_up_a_line_that_was_half_written(tmp_path: Path) -> None:
    log = tmp_path / "c-json.log"
    _write(log, [(b"first\n", "stdout", T0)])
    whole = encode_entry(b"second\n", "stdout", T0 + 1)
    with open(log, "ab") as f:
        f.write(whole[:10])
    running = threading.Event()
    running.set()

    def finish() -> None:
        time.sleep(0.2)
        with open(log, "ab") as f:
            f.write(whole[10:])
        time.sleep(0.2)
        running.clear()

    threading.Thread(target=finish, daemon=True).start()
    got = _read(log, follow=True, is_running=running.is_set)
    assert [e.data for e in got] == [b"first\n", b"second\n"]
