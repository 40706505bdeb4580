"""PortForwarder driven by events, with LocalGuest's "guest" ports on the host's 127.0.0.1."""

from __future__ import annotations

import socket
import socketserver
import threading
from collections.abc import Iterator

import pytest

from guestagent.protocol import Event, Port
from vmhost.portforward import PortForwarder
from vmhost.testing import LocalGuest

HOST = "127.0.0.2"  # host side listens here: "guest" services own the port on 127.0.0.1


class _Echo(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        while data := self.request.recv(4096):
            self.request.sendall(data.upper())


@pytest.fixture
def echo_port() -> Iterator[int]:
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _Echo)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


def _roundtrip(port: int) -> bytes:
    with socket.create_connection((HOST, port), timeout=10) as s:
        s.sendall(b"hello")
        s.shutdown(socket.SHUT_WR)
        out = b""
        while data := s.recv(100):
            out += data
        return out


def test_open_forward_close(echo_port: int) -> None:
    notes: list[tuple[str, int]] = []
    fwd = PortForwarder(
        LocalGuest("/nonexistent"), host=HOST, notify=lambda a, p, e: notes.append((a, p))
    )
    fwd.apply(Event(type="port", action="open", port=Port(proto="tcp", port=echo_port)))
    assert _roundtrip(echo_port) == b"HELLO"
    fwd.apply(Event(type="port", action="close", port=Port(proto="tcp", port=echo_port)))
    with pytest.raises(OSError):
        socket.create_connection((HOST, echo_port), timeout=2)
    assert notes == [("port-forward-open", echo_port), ("port-forward-close", echo_port)]


def test_snapshot_reconciles(echo_port: int) -> None:
    fwd = PortForwarder(LocalGuest("/nonexistent"), host=HOST)
    fwd.apply(Event(type="snapshot", ports=(Port(proto="tcp", port=echo_port),)))
    assert fwd.ports == {echo_port}
    fwd.apply(Event(type="snapshot", ports=()))
    assert fwd.ports == set()


def test_unbindable_port_is_reported_not_fatal() -> None:
    notes: list[str] = []
    with socket.socket() as busy:
        busy.bind((HOST, 0))
        busy.listen()
        port = busy.getsockname()[1]
        fwd = PortForwarder(LocalGuest("/x"), host=HOST, notify=lambda a, p, e: notes.append(a))
        fwd.apply(Event(type="port", action="open", port=Port(proto="tcp", port=port)))
    assert notes == ["port-forward-failed"] and fwd.ports == set()
