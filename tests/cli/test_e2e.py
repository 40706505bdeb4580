"""The cove CLI against a real engine (python -m runtime.engine on tmp dirs). Needs root."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(not (ROOT / "runtime/engine/__main__.py").exists(), reason="no engine yet"),
]


class Cove:
    def __init__(self, host: str, data: Path, run: Path) -> None:
        self.host, self.data, self.run_dir = host, data, run

    def __call__(
        self, *args: str, input: bytes | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[bytes]:
        env = {**os.environ, "COVE_HOST": self.host}
        proc = subprocess.run(
            [sys.executable, "-m", "runtime.cli.main", *args],
            cwd=ROOT,
            env=env,
            input=input,
            capture_output=True,
            timeout=120,
            check=False,
        )
        if check and proc.returncode != 0:
            raise AssertionError(f"cove {' '.join(args)} -> {proc.returncode}: {proc.stderr!r}")
        return proc

    def out(self, *args: str) -> str:
        return self(*args).stdout.decode()


@pytest.fixture(scope="module")
def cove(tmp_path_factory: pytest.TempPathFactory, busybox_tar: Path) -> Iterator[Cove]:
    tmp = tmp_path_factory.mktemp("engine")
    c = Cove(f"unix://{tmp}/engine.sock", tmp / "data", tmp / "run")
    roots = ["--data-root", str(c.data), "--exec-root", str(c.run_dir)]
    c(
        "engine",
        "start",
        *roots,
        "--",
        "--bridge",
        f"cvt{os.getpid() % 10000}",
        "--bip",
        "10.213.7.1/24",
    )
    try:
        c("import", str(busybox_tar), "busybox:latest")
        yield c
    finally:
        c("engine", "stop", *roots, check=False)


def test_version_and_info(cove: Cove) -> None:
    assert "Server:" in cove.out("version")
    assert cove.out("info", "--format", "{{.OSType}}").strip() == "linux"


def test_run_output_and_exit_code(cove: Cove) -> None:
    proc = cove("run", "--rm", "busybox", "sh", "-c", "echo out; echo err >&2; exit 3", check=False)
    assert (proc.returncode, proc.stdout, proc.stderr) == (3, b"out\n", b"err\n")


def test_run_piped_stdin(cove: Cove) -> None:
    assert cove("run", "--rm", "-i", "busybox", "cat", input=b"piped\n").stdout == b"piped\n"


def test_run_missing_command_exits_127(cove: Cove) -> None:
    proc = cove("run", "--rm", "busybox", "/no/such/thing", check=False)
    assert proc.returncode == 127
    assert proc.stderr.count(b"\n") == 1


def test_detached_lifecycle(cove: Cove) -> None:
    cid = cove.out("run", "-d", "busybox", "sleep", "300").strip()
    assert len(cid) == 64
    assert cove.out("inspect", "--format", "{{.State.Status}}", cid).strip() == "running"
    assert cid[:12] in cove.out("ps", "-q")
    assert cove("exec", cid, "sh", "-c", "exit 4", check=False).returncode == 4
    assert cove.out("stop", "-t", "1", cid).strip() == cid
    assert cove.out("wait", cid).strip() in ("137", "143")
    cove("rm", cid)
    proc = cove("rm", cid, check=False)
    assert proc.returncode == 1
    assert proc.stderr.startswith(b"Error response from daemon: No such container")


def test_unknown_image_errors(cove: Cove) -> None:
    proc = cove("run", "--rm", "--pull", "never", "nosuchimage:1", "true", check=False)
    assert proc.returncode == 125
    assert b"No such image" in proc.stderr
