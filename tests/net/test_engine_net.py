"""Networking, volumes and cp end to end through a real engine and docker-py (needs root)."""

from __future__ import annotations

import io
import tarfile
from typing import Any

import pytest

from tests.harness import wait_http

pytestmark = pytest.mark.root

HTTPD = "mkdir -p /www && echo hi-from-$(hostname) > /www/index.html && exec httpd -f -p 80 -h /www"


def test_containers_reach_each_other_by_name_on_a_user_network(docker: Any) -> None:
    net = docker.networks.create("e2e-net")
    web = docker.containers.run("busybox", ["sh", "-c", HTTPD], detach=True, name="e2e-web",
                                network="e2e-net", hostname="web1")
    try:
        client = docker.containers.run(
            "busybox", ["sh", "-c", "sleep 0.3; wget -qO- http://e2e-web/ && ping -c1 e2e-web"],
            detach=True, network="e2e-net")
        assert client.wait(timeout=30)["StatusCode"] == 0, client.logs()
        assert b"hi-from-web1" in client.logs()
        client.remove()
        info = docker.api.inspect_network(net.id)
        assert web.id in info["Containers"]
    finally:
        web.remove(force=True)
        net.remove()


def test_host_reaches_a_published_port_on_127_0_0_1(docker: Any) -> None:
    web = docker.containers.run("busybox", ["sh", "-c", HTTPD], detach=True,
                                ports={"80/tcp": None}, hostname="pub")
    try:
        web.reload()
        port = web.attrs["NetworkSettings"]["Ports"]["80/tcp"][0]["HostPort"]
        assert port and int(port) > 0
        assert wait_http(f"http://127.0.0.1:{port}/").startswith(b"hi-from-pub")
    finally:
        web.remove(force=True)


def test_named_volume_outlives_its_container(docker: Any) -> None:
    c = docker.containers.run("busybox", ["sh", "-c", "echo kept > /data/f"], detach=True,
                              volumes={"e2e-vol": {"bind": "/data", "mode": "rw"}},
                              network_mode="none")
    assert c.wait(timeout=30)["StatusCode"] == 0
    c.remove(v=True)
    d = docker.containers.run("busybox", ["cat", "/data/f"], detach=True, network_mode="none",
                              volumes={"e2e-vol": {"bind": "/data", "mode": "ro"}})
    d.wait(timeout=30)
    assert d.logs() == b"kept\n"
    d.remove()
    vol = docker.volumes.get("e2e-vol")
    assert vol.attrs["Scope"] == "local" and vol.attrs["CreatedAt"].endswith("Z")
    vol.remove()


def _tar(name: str, data: bytes) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        ti = tarfile.TarInfo(name)
        ti.size = len(data)
        tar.addfile(ti, io.BytesIO(data))
    return buf.getvalue()


@pytest.mark.parametrize("running", [True, False])
def test_cp_in_and_out(docker: Any, running: bool) -> None:
    c = docker.containers.run("busybox", ["sleep", "60"] if running else ["true"], detach=True,
                              network_mode="none")
    try:
        if not running:
            c.wait(timeout=30)
        assert c.put_archive("/tmp", _tar("hello.txt", b"payload"))
        stream, stat = c.get_archive("/tmp/hello.txt")
        data = b"".join(stream)
        assert stat["name"] == "hello.txt" and stat["size"] == 7
        with tarfile.open(fileobj=io.BytesIO(data)) as tar:
            member = tar.extractfile("hello.txt")
            assert member is not None and member.read() == b"payload"
        _, dstat = c.get_archive("/etc")
        assert dstat["mode"] & (1 << 31)
        import docker as docker_py

        with pytest.raises(docker_py.errors.NotFound):
            c.get_archive("/no/such/path")
    finally:
        c.remove(force=True)
