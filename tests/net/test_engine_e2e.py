"""Networking end to end through the session engine, with the real docker CLI 28 and docker-py.

Traffic stays on 127.0.0.1 and on the engine's own bridges (10.213.x.0/24 and the
user networks it creates); every container and network is removed at the end.
"""

from __future__ import annotations

import contextlib
import http.server
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.net.helpers import cli, http_get

pytestmark = [pytest.mark.root,
              pytest.mark.skipif(shutil.which("docker") is None, reason="no docker CLI")]

HERE = Path(__file__).resolve().parent
HTTPD = "mkdir -p /www && echo hi-from-$(hostname) > /www/index.html && exec httpd -f -p 80 -h /www"


def sh(engine: Any, *run_args: str, script: str) -> subprocess.CompletedProcess[str]:
    """``docker run --rm ... busybox sh -c script`` (not checked: callers look at rc)."""
    return cli(engine, "run", "--rm", *run_args, "busybox", "sh", "-c", script, check=False)


def fetch(address: str) -> str:
    """Shell that GETs http://ADDRESS/ within 2 s: busybox nc. (busybox 1.35's ``wget -T``
    crashes, and a lone ``timeout wget`` becomes PID 1, which SIGTERM does not stop.)"""
    host, _, port = address.partition(":")
    return rf"printf 'GET / HTTP/1.0\r\n\r\n' | nc -w 2 {host} {port or 80}"


def free_ports(n: int) -> int:
    """The first of *n* consecutive host ports that are free right now (above 20000)."""
    for base in range(20000 + (time.monotonic_ns() // 1000) % 20000, 60000, 7):
        socks = []
        try:
            for p in range(base, base + n):
                s = socket.socket()
                socks.append(s)
                s.bind(("0.0.0.0", p))
            return base
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise AssertionError("no free ports")


@contextlib.contextmanager
def cleanup(engine: Any) -> Iterator[list[str]]:
    """Collects container and network names; removes them whatever happens."""
    names: list[str] = []
    try:
        yield names
    finally:
        for n in names:
            cli(engine, "rm", "-f", "-v", n, check=False)
        for n in names:
            cli(engine, "network", "rm", n, check=False)


@contextlib.contextmanager
def host_listener(address: str) -> Iterator[int]:
    """An HTTP server of this test on *address* (a bridge gateway of the engine)."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = b"hello-from-host\n"
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    srv = http.server.ThreadingHTTPServer((address, 0), Handler)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    try:
        yield srv.server_address[1]
    finally:
        srv.shutdown()
        srv.server_close()


def test_names_aliases_connect_disconnect_and_dns_updates(engine: Any) -> None:
    with cleanup(engine) as names:
        names += ["e2n-web", "e2n-cli", "e2n-net", "e2n-net2"]
        cli(engine, "network", "create", "--subnet", "10.213.240.0/24", "e2n-net")
        cli(engine, "network", "create", "e2n-net2")
        cli(engine, "run", "-d", "--name", "e2n-web", "--hostname", "web1", "--network",
            "e2n-net", "--network-alias", "www", "busybox", "sh", "-c", HTTPD)
        cli(engine, "run", "-d", "--name", "e2n-cli", "--network", "e2n-net2", "busybox",
            "sleep", "120")
        # Not on the same network: neither the name nor the address is reachable.
        out = cli(engine, "exec", "e2n-cli", "nslookup", "e2n-web", check=False)
        assert "10.213.240." not in out.stdout
        cli(engine, "network", "connect", "--alias", "kli", "--ip", "10.213.240.77", "e2n-net",
            "e2n-cli")
        for name in ("e2n-web", "www"):
            got = cli(engine, "exec", "e2n-cli", "wget", "-qO-", f"http://{name}/").stdout
            assert got == "hi-from-web1\n"
        assert "10.213.240.77" in cli(engine, "exec", "e2n-web", "nslookup", "kli").stdout
        ptr = cli(engine, "exec", "e2n-web", "nslookup", "10.213.240.77").stdout
        assert "e2n-cli.e2n-net" in ptr
        ip = cli(engine, "inspect", "-f",
                 "{{(index .NetworkSettings.Networks \"e2n-net\").IPAddress}}", "e2n-cli").stdout
        assert ip.strip() == "10.213.240.77"
        cli(engine, "network", "disconnect", "e2n-net", "e2n-cli")
        out = cli(engine, "exec", "e2n-web", "nslookup", "kli", check=False)
        assert "10.213.240.77" not in out.stdout
        ip_web = cli(engine, "inspect", "-f", "{{range .NetworkSettings.Networks}}{{.IPAddress}}"
                     "{{end}}", "e2n-web").stdout.strip()
        assert cli(engine, "exec", "e2n-cli", "sh", "-c", fetch(ip_web),
                   check=False).returncode != 0


def test_container_reaches_the_host_on_the_bridge_gateway(engine: Any) -> None:
    gateway = engine.bip.split("/")[0]
    with host_listener(gateway) as port:
        out = sh(engine, "--add-host", "host.docker.internal:host-gateway",
                 script=f"grep host.docker.internal /etc/hosts && "
                        f"wget -qO- http://host.docker.internal:{port}/")
        assert out.returncode == 0, out.stderr
        assert f"{gateway}\thost.docker.internal" in out.stdout
        assert "hello-from-host" in out.stdout


def test_isolation_and_internal(engine: Any) -> None:
    gateway = engine.bip.split("/")[0]
    with cleanup(engine) as names, host_listener(gateway) as port:
        names += ["e2i-a", "e2i-b", "e2i-in", "e2i-one", "e2i-two", "e2i-inner"]
        cli(engine, "network", "create", "e2i-one")
        cli(engine, "network", "create", "e2i-two")
        cli(engine, "network", "create", "--internal", "e2i-inner")
        cli(engine, "run", "-d", "--name", "e2i-a", "--network", "e2i-one", "busybox", "sh",
            "-c", HTTPD)
        ip_a = cli(engine, "inspect", "-f", "{{range .NetworkSettings.Networks}}{{.IPAddress}}"
                   "{{end}}", "e2i-a").stdout.strip()
        cli(engine, "run", "-d", "--name", "e2i-in", "--network", "e2i-inner", "busybox", "sh",
            "-c", HTTPD)
        # Another network: no route through the host to e2i-one.
        out = sh(engine, "--network", "e2i-two", script=fetch(ip_a))
        assert out.returncode != 0 and "hi-from" not in out.stdout
        out = sh(engine, "--network", "e2i-one", script=fetch(ip_a))
        assert "hi-from" in out.stdout
        # --internal: no default route, not even to the host's listener; its own peers work.
        out = sh(engine, "--network", "e2i-inner",
                 script=f"ip route; {fetch(f'{gateway}:{port}')} || echo BLOCKED; "
                        "wget -qO- http://e2i-in/")
        assert "default" not in out.stdout and "BLOCKED" in out.stdout, out.stdout
        assert "hello-from-host" not in out.stdout and "hi-from" in out.stdout


@pytest.fixture(scope="module")
def udpecho(tmp_path_factory: pytest.TempPathFactory) -> str:
    """udpecho.c built static: busybox has no UDP server applet."""
    if shutil.which("gcc") is None:
        pytest.skip("gcc is needed to build the UDP echo server")
    out = tmp_path_factory.mktemp("udpecho") / "udpecho"
    subprocess.run(["gcc", "-static", "-O2", "-o", str(out), str(HERE / "udpecho.c")],
                   check=True, capture_output=True)
    return str(out)


def udp_roundtrip(port: int, timeout: float = 10) -> bytes:
    deadline = time.monotonic() + timeout
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
        u.settimeout(0.3)
        while time.monotonic() < deadline:
            u.sendto(b"datagram", ("127.0.0.1", port))
            with contextlib.suppress(TimeoutError):
                return u.recv(100)
    raise AssertionError(f"no UDP echo from 127.0.0.1:{port}")


def test_published_ports_tcp_udp_ranges_and_formatting(engine: Any, udpecho: str) -> None:
    base = free_ports(6)
    with cleanup(engine) as names:
        names += ["e2p-web", "e2p-udp", "e2p-all", "e2p-range"]
        cli(engine, "run", "-d", "--name", "e2p-web", "-p", f"127.0.0.1:{base}:80", "-p",
            "8081", "busybox", "sh", "-c", HTTPD)
        cli(engine, "run", "-d", "--name", "e2p-udp", "-p", f"{base + 1}:5353/udp", "-v",
            f"{udpecho}:/udpecho:ro", "busybox", "/udpecho", "5353")
        cli(engine, "run", "-d", "--name", "e2p-all", "--expose", "80", "--expose", "9/udp",
            "-P", "busybox", "sh", "-c", HTTPD)
        cli(engine, "run", "-d", "--name", "e2p-range", "-p",
            f"{base + 2}-{base + 3}:7000-7001", "-p",
            f"{base + 4}-{base + 5}:{base + 4}-{base + 5}", "busybox", "sleep", "120")
        assert b"hi-from" in http_get(base, timeout=10)
        assert udp_roundtrip(base + 1) == b"echo:datagram"
        ps = cli(engine, "ps", "--format", "{{.Names}}\t{{.Ports}}").stdout
        rows = dict(line.split("\t", 1) for line in ps.splitlines())
        assert rows["e2p-web"].startswith(f"127.0.0.1:{base}->80/tcp, 0.0.0.0:")
        assert rows["e2p-web"].endswith("->8081/tcp")
        assert rows["e2p-udp"] == f"0.0.0.0:{base + 1}->5353/udp"
        # The CLI folds a range only where host and container ports are equal (as with dockerd).
        assert rows["e2p-range"] == (
            f"0.0.0.0:{base + 4}-{base + 5}->{base + 4}-{base + 5}/tcp, "
            f"0.0.0.0:{base + 2}->7000/tcp, 0.0.0.0:{base + 3}->7001/tcp")
        all_port = cli(engine, "port", "e2p-all", "80/tcp").stdout.strip()
        assert all_port.startswith("0.0.0.0:")
        assert b"hi-from" in http_get(int(all_port.rsplit(":", 1)[1]), timeout=10)
        listing = cli(engine, "port", "e2p-web").stdout.splitlines()
        assert f"80/tcp -> 127.0.0.1:{base}" in listing
        assert "9/udp -> 0.0.0.0:" in cli(engine, "port", "e2p-all").stdout


def test_network_container_mode_shares_the_namespace(engine: Any) -> None:
    with cleanup(engine) as names:
        names.append("e2c-web")
        cli(engine, "run", "-d", "--name", "e2c-web", "--hostname", "shared", "busybox", "sh",
            "-c", HTTPD)
        out = sh(engine, "--network", "container:e2c-web",
                 script="sleep 0.3; wget -qO- http://127.0.0.1/")
        assert out.stdout == "hi-from-shared\n", out.stderr
