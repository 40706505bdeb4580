"""``cove engine start|stop|status|run`` and the daemon's flags, against real processes."""

from __future__ import annotations

import contextlib
import grp
import os
import signal
import stat
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.harness import ROOT, EngineProcess

pytestmark = pytest.mark.root
COVE = str(ROOT / ".venv" / "bin" / "cove")


class Daemon:
    """Paths and flags of one engine managed through ``cove engine``."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.harness = EngineProcess(base)  # its cleanup: cgroups, mounts, bridge
        self.url = self.harness.url

    def engine_flags(self) -> list[str]:
        h = self.harness
        return ["--data-root", str(h.data_root), "--exec-root", str(h.exec_root),
                "--host", self.url, "--", "--cgroup-parent", h.cgroup_parent,
                "--bridge", h.bridge, "--bip", h.bip]

    def cove(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "COVE_DNS_UPSTREAMS": "127.0.0.1:9"}
        return subprocess.run([COVE, "-H", self.url, *args], capture_output=True, text=True,
                              timeout=timeout, env=env, stdin=subprocess.DEVNULL)

    def roots(self) -> list[str]:
        h = self.harness
        return ["--data-root", str(h.data_root), "--exec-root", str(h.exec_root)]


@pytest.fixture()
def daemon(tmp_path: Path) -> Iterator[Daemon]:
    d = Daemon(tmp_path / "d")
    try:
        yield d
    finally:
        d.cove("rm", "-f", "kept")
        d.cove("engine", "stop", *d.roots())
        d.harness.cleanup()


@pytest.fixture()
def cove_group() -> Iterator[int]:
    """The ``cove`` group, created for the test if the host has none (and removed after)."""
    try:
        yield grp.getgrnam("cove").gr_gid
        return
    except KeyError:
        pass
    subprocess.run(["groupadd", "--system", "cove"], check=True, capture_output=True)
    try:
        yield grp.getgrnam("cove").gr_gid
    finally:
        subprocess.run(["groupdel", "cove"], check=False, capture_output=True)


def test_start_status_stop_keep_containers(daemon: Daemon, busybox_tar: Path,
                                           cove_group: int) -> None:
    assert daemon.cove("engine", "status", *daemon.roots()).returncode == 3
    started = time.monotonic()
    res = daemon.cove("engine", "start", *daemon.engine_flags())
    assert res.returncode == 0, res.stderr
    assert time.monotonic() - started < 30
    # start returns once the engine answers, and the CLI is not its parent any more
    assert daemon.cove("version").returncode == 0
    sock = os.stat(daemon.url.removeprefix("unix://"))
    assert stat.S_IMODE(sock.st_mode) == 0o660 and sock.st_gid == cove_group
    assert (daemon.harness.data_root / "containers").is_dir()
    status = daemon.cove("engine", "status", *daemon.roots())
    assert status.returncode == 0 and "running" in status.stdout
    pid = int((daemon.harness.exec_root / "engine.pid").read_text())
    assert "is already running" in daemon.cove("engine", "start",
                                               *daemon.engine_flags()).stdout
    daemon.harness.import_image(busybox_tar, "busybox")
    assert daemon.cove("run", "-d", "--name", "kept", "--network", "none", "busybox",
                       "sleep", "300").returncode == 0
    cpid = int(daemon.cove("inspect", "-f", "{{.State.Pid}}", "kept").stdout)
    res = daemon.cove("engine", "stop", *daemon.roots())
    assert res.returncode == 0 and "stopped" in res.stdout
    assert not Path(f"/proc/{pid}").exists()
    assert Path(f"/proc/{cpid}").exists()  # the container outlives the engine
    assert daemon.cove("engine", "status", *daemon.roots()).returncode == 3
    assert daemon.cove("engine", "start", *daemon.engine_flags()).returncode == 0
    assert daemon.cove("inspect", "-f", "{{.State.Pid}}", "kept").stdout.strip() == str(cpid)
    assert daemon.cove("rm", "-f", "kept").returncode == 0
    assert not Path(f"/proc/{cpid}").exists()


def test_run_in_the_foreground(daemon: Daemon) -> None:
    env = {**os.environ, "COVE_DNS_UPSTREAMS": "127.0.0.1:9"}
    proc = subprocess.Popen([COVE, "-H", daemon.url, "engine", "run", *daemon.engine_flags()],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    try:
        deadline = time.monotonic() + 30
        while daemon.cove("version").returncode != 0 and time.monotonic() < deadline:
            assert proc.poll() is None
            time.sleep(0.1)
        assert daemon.cove("engine", "status", *daemon.roots()).returncode == 0
        # exec'd in place: the CLI's pid is the engine's
        assert int((daemon.harness.exec_root / "engine.pid").read_text()) == proc.pid
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    finally:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        proc.wait()
        assert proc.stderr is not None
        proc.stderr.close()


def test_only_unix_hosts(daemon: Daemon) -> None:
    res = daemon.cove("engine", "run", "--data-root", str(daemon.harness.data_root),
                      "--exec-root", str(daemon.harness.exec_root), "--host",
                      "tcp://127.0.0.1:2375")
    assert res.returncode != 0 and "unix://" in res.stderr


def test_userns_remap_of_an_unknown_user_is_refused_clearly(daemon: Daemon) -> None:
    res = daemon.cove("engine", "run", *daemon.roots(), "--host", daemon.url, "--",
                      "--userns-remap", "no-such-user-cove")
    assert res.returncode == 1
    assert res.stderr.strip() == "cove engine: --userns-remap: no such user 'no-such-user-cove'"
    assert not Path(daemon.url.removeprefix("unix://")).exists()
