from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from guestagent.ports import diff, listening_ports, parse_proc_net_tcp
from guestagent.protocol import Port

# Recorded from a Debian 12 guest: sshd on 0.0.0.0:22, a container port on 0.0.0.0:8080,
# one ESTABLISHED connection (ignored), and 127.0.0.1:631 listening.
TCP = """\
  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000:0016 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1
   1: 00000000:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 2 1
   2: 0100007F:0277 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 3 1
   3: 0F02000A:0016 0202000A:D4A6 01 00000000:00000000 02:00098B1C 00000000     0        0 4 4
"""
TCP6 = """\
  sl  local_address                         remote_address                        st tx_queue
   0: 00000000000000000000000000000000:0016 00000000000000000000000000000000:0000 0A 00000000
   1: 00000000000000000000000000000000:1F90 00000000000000000000000000000000:0000 0A 00000000
"""


def test_parse_listen_only() -> None:
    assert parse_proc_net_tcp(TCP) == {Port(proto="tcp", port=p) for p in (22, 8080, 631)}


def test_same_port_on_v4_and_v6_is_one_port(tmp_path: Path) -> None:
    (tmp_path / "tcp").write_text(TCP)
    (tmp_path / "tcp6").write_text(TCP6)
    ports = listening_ports([tmp_path / "tcp", tmp_path / "tcp6", tmp_path / "missing"])
    assert sorted(p.port for p in ports) == [22, 631, 8080]


def test_diff() -> None:
    a = {Port(proto="tcp", port=1), Port(proto="tcp", port=2)}
    b = {Port(proto="tcp", port=2), Port(proto="tcp", port=3)}
    assert diff(a, b) == ([Port(proto="tcp", port=3)], [Port(proto="tcp", port=1)])


def test_real_proc_parses() -> None:
    assert isinstance(listening_ports(), set)


def test_published_ports_from_engine_listing() -> None:
    from guestagent.engineports import parse_containers, published_ports

    body = b"""[{"Id":"a","Ports":[{"PrivatePort":80,"PublicPort":8080,"Type":"tcp","IP":"0.0.0.0"},
        {"PrivatePort":53,"PublicPort":5353,"Type":"udp"},{"PrivatePort":9000,"Type":"tcp"}]},
        {"Id":"b","Ports":null}]"""
    assert parse_containers(body) == {Port(proto="tcp", port=8080)}
    # None, not an empty set: the agent keeps the last answer while the engine is away
    assert published_ports("/nonexistent/engine.sock", timeout=0.5) is None


@pytest.mark.root
def test_published_ports_from_a_real_engine(docker: Any, engine: Any) -> None:
    from guestagent.engineports import published_ports

    c = docker.containers.run("busybox", ["sleep", "60"], detach=True, ports={"80/tcp": None})
    try:
        c.reload()
        host_port = int(c.attrs["NetworkSettings"]["Ports"]["80/tcp"][0]["HostPort"])
        assert Port(proto="tcp", port=host_port) in (published_ports(engine.socket) or set())
    finally:
        c.remove(force=True)
