"""The supervisor's guest-event loop with LocalGuest: /proc/net/tcp changes -> host listeners."""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path

from guestagent.protocol import Event
from tests.vmhost.httpserver import unix_http_server
from vmhost.events import EventLog, VMEvent, watch
from vmhost.supervisor import Supervisor, ping_engine
from vmhost.testing import FakeHypervisor, LocalGuest

HEADER = "  sl  local_address rem_address   st\n"


def _listen_line(port: int) -> str:
    return f"   0: 0100007F:{port:04X} 00000000:0000 0A 00000000:00000000 00:00000000 0 0 1 1\n"


def test_events_drive_port_forwards(tmp_path: Path, monkeypatch: object) -> None:
    proc = tmp_path / "tcp"
    proc.write_text(HEADER)
    guest = LocalGuest(str(tmp_path / "engine.sock"), proc_files=(str(proc),))
    events = EventLog(tmp_path / "events.jsonl")
    sup = Supervisor("t", FakeHypervisor(), events)
    t = threading.Thread(target=sup.follow_guest_events, args=(guest,), daemon=True)
    t.start()
    with socket.socket() as s:
        s.bind(("127.0.0.3", 0))
        port = s.getsockname()[1]
    proc.write_text(HEADER + _listen_line(port))
    seen = [e.kind for e in _until(tmp_path / "events.jsonl", "port-forward-open")]
    assert "port-forward-open" in seen
    assert sup.forwarder is not None and port in sup.forwarder.ports
    guest.kill_connection()  # the events stream dies: the supervisor re-execs it
    assert any(
        e.kind == "ssh-reconnect" for e in _until(tmp_path / "events.jsonl", "ssh-reconnect")
    )
    proc.write_text(HEADER)
    _until(tmp_path / "events.jsonl", "port-forward-close")
    sup.stopping.set()
    sup.forwarder.close()
    guest.close()


def _until(path: Path, kind: str, timeout: float = 20) -> list[VMEvent]:
    got = []
    for ev in watch(path, timeout=timeout):
        got.append(ev)
        if ev.kind == kind:
            return got
    raise AssertionError(f"no {kind} event in {timeout}s: {[e.kind for e in got]}")


def test_ping_engine(tmp_path: Path) -> None:
    sock = tmp_path / "engine.sock"
    guest = LocalGuest(str(sock))
    with unix_http_server(sock):
        t0 = time.monotonic()
        assert ping_engine(guest)
        assert time.monotonic() - t0 < 15
    assert Event(type="heartbeat").type == "heartbeat"
