"""End to end under TCG: ONE VM boot shared by the module (a few minutes in all).

Boots the guest through libvirt + the supervisor, with the user's home shared (virtiofs, at
the same path), imports busybox through the relay socket, runs a container with a published
port and reaches it on host 127.0.0.1, drives the real docker CLI (incl. exec -it) through
the relay, bind-mounts a directory of the host's home into a container (read and write back),
drops the SSH connection mid-stream and recovers, then restarts the VM and finds the image
and the home share still there (data disk, share mounted again at boot).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from runtime.cli.vm import env_vars
from tests.harness import in_pty
from vmhost import control, instance, layout

pytestmark = [pytest.mark.vm, pytest.mark.timeout(1200)]
ROOT = Path(__file__).resolve().parents[2]
DOCKER = shutil.which("docker") or "/usr/bin/docker"
NAME = "e2e-boot"  # the libvirt domain name is host-wide: not the relay tests' VM
HOME = Path.home()


def _why_not() -> str | None:
    for tool in ("qemu-system-x86_64", "qemu-img", "mmdebstrap", "mke2fs"):
        if shutil.which(tool) is None:
            return f"{tool} not installed (see packaging/guest/README.md)"
    if not os.path.exists("/usr/sbin/libvirtd"):
        return "libvirt-daemon-system not installed"
    try:
        import libvirt  # noqa: F401
        import paramiko  # noqa: F401
    except ImportError:
        return "pip extras [vm] (paramiko, libvirt-python) not installed"
    if os.geteuid() != 0:
        return "the guest image build unpacks a root tree: needs root"
    return None


@pytest.fixture(scope="module")
def vm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    why = _why_not()
    if why:
        pytest.skip(why)
    home = tmp_path_factory.mktemp("vmhome")
    mp = pytest.MonkeyPatch()
    mp.setenv("COVE_VM_HOME", str(home))
    from vmhost import guestimage

    image = guestimage.build()  # cached in /var/cache/cove/guest; ~75 s cold, ~15 s per checkout
    mp.setenv("COVE_GUEST_IMAGE", str(image.root.parent))
    config = instance.InstanceConfig(
        name=NAME, cpus=2, memory_mib=1024, disk_gib=4, shares=(str(HOME),)
    )
    try:
        sock = control.start(config, timeout=900)
        yield sock
    finally:
        try:
            control.remove(NAME, force=True)
        finally:
            mp.undo()


def cove(sock: str, *args: str, stdin: bytes | None = None, timeout: float = 180) -> str:
    out = subprocess.run(
        [sys.executable, "-m", "runtime.cli.main", "-H", sock, *args],
        input=stdin,
        capture_output=True,
        timeout=timeout,
        cwd=ROOT,
        check=False,
    )
    assert out.returncode == 0, out.stderr.decode()
    return out.stdout.decode()


def docker(sock: str, *args: str, timeout: float = 180) -> str:
    if not os.path.exists(DOCKER):
        pytest.skip(f"{DOCKER} not installed")
    out = subprocess.run(
        [DOCKER, "-H", sock, *args], capture_output=True, timeout=timeout, check=False
    )
    assert out.returncode == 0, out.stderr.decode()
    return out.stdout.decode()


def _http_get(port: int, path: str, deadline: float) -> bytes:
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
                body: bytes = r.read()
                return body
        except OSError as e:
            last = e
            time.sleep(0.5)
    raise AssertionError(f"127.0.0.1:{port} never answered: {last}")


@pytest.fixture(scope="module")
def web(vm: str) -> tuple[str, int]:
    rootfs = subprocess.run(
        ["bash", str(ROOT / "packaging/busybox-rootfs.sh")], capture_output=True, check=True
    ).stdout
    cove(vm, "import", "-", "busybox:latest", stdin=rootfs)
    port = instance.free_port()
    cid = cove(
        vm,
        "run",
        "-d",
        "--name",
        "web",
        "-p",
        f"{port}:80",
        "busybox",
        "httpd",
        "-f",
        "-p",
        "80",
        "-h",
        "/etc",
    ).strip()
    assert cid
    return cid, port


def test_published_port_reachable_on_host(vm: str, web: tuple[str, int]) -> None:
    _, port = web
    assert b"root:x:0:0" in _http_get(port, "/passwd", time.monotonic() + 60)


def test_docker_cli_through_relay(vm: str, web: tuple[str, int]) -> None:
    assert docker(vm, "version", "--format", "{{.Server.Version}}").strip()
    assert "web" in docker(vm, "ps", "--format", "{{.Names}}")
    assert "busybox" in docker(vm, "images", "--format", "{{.Repository}}")


def test_exec_it_through_relay(vm: str, web: tuple[str, int]) -> None:
    if not os.path.exists(DOCKER):
        pytest.skip(f"{DOCKER} not installed")
    code, out = in_pty([DOCKER, "-H", vm, "exec", "-it", "web", "sh", "-c",
                        "tty && echo exec-$((6*7))"], timeout=120)
    assert code == 0, out
    assert b"exec-42" in out and b"/dev/pts/" in out


def _bind_mount_roundtrip(sock: str) -> None:
    """A container reads a file the host wrote under $HOME and writes one back."""
    with tempfile.TemporaryDirectory(prefix=".cove-e2e-share-", dir=HOME) as tmp:
        host_dir = Path(tmp)
        (host_dir / "from-host.txt").write_text("written on the host\n")
        out = docker(
            sock,
            "run",
            "--rm",
            "-v",
            f"{host_dir}:/shared",
            "busybox",
            "sh",
            "-c",
            "cat /shared/from-host.txt && echo written in the container > /shared/back.txt",
        )
        assert out == "written on the host\n"
        assert (host_dir / "back.txt").read_text() == "written in the container\n"


def test_home_share_bind_mount(vm: str, web: tuple[str, int]) -> None:
    _bind_mount_roundtrip(vm)


def test_ssh_connection_killed_mid_stream_recovers(vm: str, web: tuple[str, int]) -> None:
    _, port = web
    argv = [sys.executable, "-m", "runtime.cli.main", "-H", vm, "events"]
    logs = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    time.sleep(3)
    pid = control.supervisor_pid(NAME)
    assert pid
    os.kill(pid, signal.SIGUSR1)  # the supervisor drops its SSH TCP connection
    try:
        logs.wait(timeout=60)  # the open stream ends with the connection
    finally:
        logs.kill()
    lay = layout.InstanceLayout.named(NAME)
    deadline = time.monotonic() + 90
    while b"ssh-reconnect" not in lay.events.read_bytes() and time.monotonic() < deadline:
        time.sleep(0.5)
    assert "web" in cove(vm, "ps", "--format", "{{.Names}}")  # a new connection reconnects
    assert b"root:x:0:0" in _http_get(port, "/passwd", time.monotonic() + 90)


def test_restart_keeps_images(vm: str, web: tuple[str, int]) -> None:
    control.stop(NAME)
    assert control.status(NAME).state == "stopped"
    t0 = time.monotonic()
    sock = control.start(instance.load(NAME), timeout=300)
    restart = time.monotonic() - t0
    print(f"\nrestart to engine-ready: {restart:.1f}s")
    assert sock == vm
    assert "busybox" in cove(vm, "images", "--format", "{{.Repository}}")
    assert cove(vm, "run", "--rm", "busybox", "echo", "again").strip() == "again"
    _bind_mount_roundtrip(vm)  # the share is mounted again at boot


def test_windows_relay_shape(
    vm: str, web: tuple[str, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The relay a Windows host runs (a loopback TCP port guarded by a token), on the same VM
    after another restart: the docker CLI gets in with what `cove vm env` prints, and
    without the token it is refused."""
    if not os.path.exists(DOCKER):
        pytest.skip(f"{DOCKER} not installed")
    control.stop(NAME)
    monkeypatch.setenv("COVE_VM_RELAY", "tcp")
    url = control.start(instance.load(NAME), timeout=300)
    assert url.startswith("tcp://127.0.0.1:")
    assert control.status(NAME).host == url
    env = {**os.environ, **env_vars(NAME)}
    env.pop("DOCKER_CONTEXT", None)
    out = subprocess.run([DOCKER, "run", "--rm", "busybox", "echo", "tcp-relay"], env=env,
                         capture_output=True, timeout=180, check=False)
    assert out.returncode == 0 and out.stdout == b"tcp-relay\n", out.stderr
    env.pop("DOCKER_CUSTOM_HEADERS")
    out = subprocess.run([DOCKER, "ps"], env=env, capture_output=True, timeout=60, check=False)
    assert out.returncode != 0 and b"X-Cove-Token" in out.stderr, out.stderr
