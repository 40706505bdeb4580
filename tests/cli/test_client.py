"""Client against our own socket peer: query conventions, errors, streams, hijack."""

from __future__ import annotations

import json
import socket
import threading
from pathlib import Path

import pytest

from runtime.api.client import Client, DaemonResponse
from runtime.api.errors import Conflict, NotFound
from runtime.api.streams import MULTIPLEXED, StreamError, encode_frame, read_http_head
from runtime.api.transport import EngineUnreachable

from .peer import Request, chunked_response, json_response, serve


def test_json_call_uses_versioned_path_and_docker_query_conventions(tmp_path: Path) -> None:
    def respond(req: Request, sock: socket.socket) -> None:
        json_response(sock, 200, [{"Id": "abc"}])

    with serve(tmp_path, respond) as (host, seen):
        out = Client(host).containers(all=True, filters={"label": ["a=b"], "status": ["exited"]})
    assert out == [{"Id": "abc"}]
    req = seen[0]
    assert req.path == "/v1.44/containers/json"
    assert req.query["all"] == ["1"]
    assert json.loads(req.query["filters"][0]) == {
        "label": {"a=b": True},
        "status": {"exited": True},
    }


def test_json_body_and_error_mapping(tmp_path: Path) -> None:
    def respond(req: Request, sock: socket.socket) -> None:
        if req.path.endswith("/create"):
            assert json.loads(req.body)["Image"] == "busybox"
            json_response(sock, 409, {"message": "name in use"})
        else:
            json_response(sock, 404, {"message": "No such container: x"})

    with serve(tmp_path, respond) as (host, _):
        client = Client(host)
        with pytest.raises(Conflict, match="name in use"):
            client.create_container({"Image": "busybox"}, name="x")
        with pytest.raises(NotFound) as info:
            client.inspect_container("x")
    assert isinstance(info.value.__cause__, DaemonResponse)
    assert str(info.value) == "No such container: x"


def test_unreachable_engine(tmp_path: Path) -> None:
    with pytest.raises(EngineUnreachable):
        Client(f"unix://{tmp_path}/nothing.sock").version()


def test_json_lines_stream_and_in_band_error(tmp_path: Path) -> None:
    lines = [
        b'{"status":"Pulling fs layer","id":"abc"}\r\n',
        b'{"status":"Down',
        b'load complete","id":"abc"}\r\n{"errorDetail":{"message":"boom"},"error":"boom"}\r\n',
    ]

    def respond(req: Request, sock: socket.socket) -> None:
        assert req.headers["x-registry-auth"] == "e30="
        chunked_response(sock, lines, "application/json")

    with serve(tmp_path, respond) as (host, seen):
        got = []
        with pytest.raises(StreamError, match="boom"):
            for msg in Client(host).pull("busybox", "latest"):
                got.append(msg["status"])
    assert got == ["Pulling fs layer", "Download complete"]
    assert seen[0].query == {"fromImage": ["busybox"], "tag": ["latest"]}


def test_logs_demultiplexes_frames_split_across_chunks(tmp_path: Path) -> None:
    data = encode_frame(1, b"out\n") + encode_frame(2, b"err\n") + encode_frame(1, b"x" * 70000)

    def respond(req: Request, sock: socket.socket) -> None:
        chunked_response(sock, [data[:3], data[3:10], data[10:]], MULTIPLEXED)

    with serve(tmp_path, respond) as (host, seen):
        frames = list(Client(host).logs("c1", tail="10"))
    assert frames[0] == (1, b"out\n")
    assert frames[1] == (2, b"err\n")
    assert b"".join(d for s, d in frames[2:]) == b"x" * 70000
    assert seen[0].query["tail"] == ["10"]


def test_hijack_reads_101_byte_exactly(tmp_path: Path) -> None:
    """Frames sent in the same write as the 101 headers must not be lost (docker-py#3332)."""

    def respond(req: Request, sock: socket.socket) -> None:
        assert req.headers["upgrade"] == "tcp"
        assert req.headers["connection"] == "Upgrade"
        head = (
            b"HTTP/1.1 101 UPGRADED\r\nContent-Type: "
            + MULTIPLEXED.encode()
            + b"\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n\r\n"
        )
        sock.sendall(head + encode_frame(1, b"hello "))
        stdin = b""
        while chunk := sock.recv(100):  # until the client half-closes
            stdin += chunk
        sock.sendall(encode_frame(1, stdin) + encode_frame(2, b"bye"))
        sock.shutdown(socket.SHUT_WR)

    with serve(tmp_path, respond) as (host, seen):
        conn = Client(host).attach("c1", stdin=True)
        assert conn.multiplexed
        conn.send(b"typed")
        conn.close_write()
        out = list(conn.output())
        conn.close()
    assert out == [(1, b"hello "), (1, b"typed"), (2, b"bye")]
    assert seen[0].query == {"stream": ["1"], "stdin": ["1"], "stdout": ["1"], "stderr": ["1"]}


def test_hijack_error_answer_raises(tmp_path: Path) -> None:
    def respond(req: Request, sock: socket.socket) -> None:
        json_response(sock, 404, {"message": "No such exec instance: e1"})

    with serve(tmp_path, respond) as (host, _), pytest.raises(NotFound, match="e1"):
        Client(host).exec_start("e1", {"Detach": False, "Tty": True})


def test_streamed_upload_is_chunked(tmp_path: Path) -> None:
    def respond(req: Request, sock: socket.socket) -> None:
        assert req.headers["transfer-encoding"] == "chunked"
        assert req.body == b"a" * 100_000
        sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")

    with serve(tmp_path, respond) as (host, seen):
        Client(host).put_archive("c1", "/tmp", iter([b"a" * 60_000, b"a" * 40_000]))
    assert seen[0].query == {"path": ["/tmp"], "noOverwriteDirNonDir": ["1"]}


def test_wait_registers_before_returning(tmp_path: Path) -> None:
    release = threading.Event()

    def respond(req: Request, sock: socket.socket) -> None:
        if req.path.endswith("/wait"):
            sock.sendall(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                b"Transfer-Encoding: chunked\r\n\r\n"
            )
            release.wait(5)
            body = b'{"StatusCode":3,"Error":null}\n'
            sock.sendall(b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body))
        else:
            sock.sendall(b"HTTP/1.1 204 No Content\r\n\r\n")
            release.set()

    with serve(tmp_path, respond) as (host, seen):
        client = Client(host)
        waiter = client.wait_begin("c1", "removed")
        client.start("c1")
        assert waiter.result() == {"StatusCode": 3, "Error": None}
    assert [r.path for r in seen] == ["/v1.44/containers/c1/wait", "/v1.44/containers/c1/start"]
    assert seen[0].query == {"condition": ["removed"]}


@pytest.mark.parametrize("split", [1, 20, 36, 37, 38, 39, 41])
def test_http_head_is_taken_off_exactly_wherever_the_writes_split(split: int) -> None:
    """read_http_head peeks: the bytes after the blank line stay on the socket, even when
    the blank line arrives in two pieces."""
    head = b"HTTP/1.1 101 UPGRADED\r\nUpgrade: tcp\r\n\r\n"
    ours, theirs = socket.socketpair()
    with ours, theirs:
        data = head + b"stream bytes"
        theirs.sendall(data[:split])
        sender = threading.Timer(0.05, theirs.sendall, (data[split:],))
        sender.start()
        try:
            assert read_http_head(ours) == head
        finally:
            sender.join()
        assert ours.recv(100) == b"stream bytes"
