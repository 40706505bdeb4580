"""What ``cove pull/push/images --digests/image inspect`` print against a real registry,
checked line for line against the docker CLI on the same engine; ``cove pull`` draws
progress bars on a terminal (run under a pty) and plain lines otherwise."""

from __future__ import annotations

import os
import pty
import re
import select
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.images.layers import file, tar_bytes
from tests.images.registry import Registry, docker_archive, start_registry

pytestmark = pytest.mark.registry

ROOT = Path(__file__).resolve().parents[2]
COVE = ROOT / ".venv" / "bin" / "cove"
BASE = tar_bytes([file("bin/sh", b"#!", 0o755)])
# Big enough that the engine reports download progress before it completes.
BIG = tar_bytes([file("big", os.urandom(8_000_000))])


@pytest.fixture(scope="module")
def registry() -> Iterator[Registry]:
    with tempfile.TemporaryDirectory(prefix="cove-outreg-") as tmp:
        reg = start_registry(Path(tmp) / "registry")
        try:
            docker_archive(Path(tmp) / "two.tar", [BASE, BIG], Cmd=["sh"])
            reg.push_archive(Path(tmp) / "two.tar", "out/two:1")
            yield reg
        finally:
            reg.stop()


def _run(engine: Any, tool: str, *argv: str) -> subprocess.CompletedProcess[str]:
    cmd = [str(COVE), "-H", engine.url] if tool == "cove" else ["docker"]
    out = subprocess.run([*cmd, *argv], env={**os.environ, "DOCKER_HOST": engine.url},
                         cwd=ROOT, capture_output=True, text=True, timeout=120, check=False)
    assert out.returncode == 0, f"{tool} {' '.join(argv)}: {out.stderr}"
    return out


def _pull_lines(engine: Any, tool: str, ref: str) -> list[str]:
    lines = _run(engine, tool, "pull", ref).stdout.splitlines()
    _run(engine, "cove", "rmi", ref)
    return lines


def test_pull_prints_docker_lines_and_records_the_digest(engine: Any, registry: Registry
                                                         ) -> None:
    ref = f"{registry.host}/out/two:1"
    theirs, ours = _pull_lines(engine, "docker", ref), _pull_lines(engine, "cove", ref)
    # Layers download in parallel, so only the order within a layer is fixed.
    assert ours[0] == theirs[0] == "1: Pulling from out/two"
    assert ours[-3:] == theirs[-3:]
    assert sorted(ours) == sorted(theirs)
    assert "\x1b" not in "".join(ours) and not any("Downloading" in line for line in ours)
    digest = str(registry.inspect("out/two:1")["Digest"])
    assert ours[-3] == f"Digest: {digest}"
    _run(engine, "cove", "pull", ref)
    try:
        inspected = _run(engine, "cove", "image", "inspect", "-f", "{{json .RepoDigests}}", ref)
        assert inspected.stdout == f'["{registry.host}/out/two@{digest}"]\n'
        assert inspected.stdout == _run(engine, "docker", "image", "inspect", "-f",
                                        "{{json .RepoDigests}}", ref).stdout
        repo = f"{registry.host}/out/two"
        ours_table = _run(engine, "cove", "images", "--digests", repo).stdout
        assert ours_table == _run(engine, "docker", "images", "--digests", repo).stdout
        assert digest in ours_table.splitlines()[1].split()
    finally:
        _run(engine, "cove", "rmi", ref)


def test_push_prints_docker_lines(engine: Any, registry: Registry) -> None:
    first, again, theirs = (f"{registry.host}/out/pushed:{t}" for t in ("a", "b", "c"))
    for ref in (first, again, theirs):
        _run(engine, "cove", "tag", "busybox", ref)
    try:
        pushed = _run(engine, "cove", "push", first).stdout.splitlines()
        digest = str(registry.inspect("out/pushed:a")["Digest"])
        layer = pushed[1].split(":")[0]
        size = len(subprocess.run(
            ["skopeo", "inspect", "--raw", "--tls-verify=false",
             f"docker://{registry.host}/out/pushed:a"], capture_output=True, check=True).stdout)
        assert pushed == [f"The push refers to repository [{registry.host}/out/pushed]",
                          f"{layer}: Preparing", f"{layer}: Pushed",
                          f"a: digest: {digest} size: {size}"]
        # Pushed again under other tags: cove and docker print the same, tag aside.
        ours = _run(engine, "cove", "push", again).stdout.replace("b: digest", "c: digest")
        assert ours == _run(engine, "docker", "push", theirs).stdout
        assert f"{layer}: Layer already exists" in ours
        assert re.fullmatch(r"c: digest: sha256:[0-9a-f]{64} size: \d+", ours.splitlines()[-1])
    finally:
        _run(engine, "cove", "rmi", first, again, theirs)


def _under_pty(argv: list[str], env: dict[str, str]) -> tuple[int, str]:
    """Run *argv* with a terminal for stdout (and stdin), returning what it drew."""
    master, slave = pty.openpty()
    try:
        proc = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=subprocess.PIPE,
                                env=env, cwd=ROOT)
        os.close(slave)
        slave = -1
        chunks = []
        while True:
            ready, _, _ = select.select([master], [], [], 120)
            if not ready:
                proc.kill()
                break
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: the child closed the terminal
                break
            if not data:
                break
            chunks.append(data)
        return proc.wait(60), b"".join(chunks).decode(errors="replace")
    finally:
        os.close(master)
        if slave >= 0:
            os.close(slave)


def test_pull_draws_progress_bars_on_a_terminal(engine: Any, registry: Registry) -> None:
    ref = f"{registry.host}/out/two:1"
    code, drawn = _under_pty([str(COVE), "-H", engine.url, "pull", ref],
                             {**os.environ, "TERM": "xterm"})
    try:
        assert code == 0, drawn
        # Each layer's line is redrawn in place: cursor up, clear line, status, bar.
        bar = r"\x1b\[\d+A\x1b\[2K\r[0-9a-f]{12}: Downloading +\[=*>? *\] +[\d.]+[kM]?B/"
        assert re.search(bar, drawn), drawn
        assert re.search(r"[0-9a-f]{12}: Pull complete", drawn)
        assert drawn.rstrip().endswith(ref)
    finally:
        _run(engine, "cove", "rmi", ref)
