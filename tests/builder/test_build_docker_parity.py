"""The classic builder against real clients: docker's output and messages, cache rules,
--pull from a local registry, MAINTAINER, hard links, build prune and a big context."""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.builder.test_build_engine import errors, sh

pytestmark = [pytest.mark.root, pytest.mark.timeout(120)]

ROOT = Path(__file__).resolve().parent.parent.parent
COVE = str(ROOT / ".venv" / "bin" / "cove")


def docker_build(engine: Any, ctx: Path, *args: str,
                 api: str = "") -> subprocess.CompletedProcess[str]:
    """The real docker CLI's classic builder (``DOCKER_BUILDKIT=0``)."""
    env = {**os.environ, "DOCKER_BUILDKIT": "0"}
    if api:
        env["DOCKER_API_VERSION"] = api
    return subprocess.run(["docker", "-H", engine.url, "build", *args, str(ctx)], env=env,
                          capture_output=True, text=True, timeout=60)


def step_lines(out: str) -> list[str]:
    """The build output with IDs replaced by ``<id>`` (they differ run to run)."""
    text = re.sub(r"\b[0-9a-f]{12}\b", "<id>", out)
    return [line for line in text.splitlines() if line and not line.startswith("Sending")]


def test_metadata_steps_print_like_moby(engine: Any, tmp_path: Path) -> None:
    (tmp_path / "Dockerfile").write_text(
        "FROM busybox\nMAINTAINER Jane <j@x>\nENV A=1\nCOPY f /f\nWORKDIR /w\nRUN true\n"
        "CMD [\"sh\"]\n")
    (tmp_path / "f").write_text("f")
    out = docker_build(engine, tmp_path, "--no-cache")
    assert out.returncode == 0, out.stderr
    meta = [" ---> Running in <id>", " ---> Removed intermediate container <id>", " ---> <id>"]
    assert step_lines(out.stdout) == [
        "Step 1/7 : FROM busybox", " ---> <id>",
        "Step 2/7 : MAINTAINER Jane <j@x>", *meta,
        "Step 3/7 : ENV A=1", *meta,
        "Step 4/7 : COPY f /f", " ---> <id>",
        "Step 5/7 : WORKDIR /w", *meta,
        "Step 6/7 : RUN true", *meta,
        "Step 7/7 : CMD [\"sh\"]", *meta,
        "Successfully built <id>"]
    # A client of API 1.41 (docker 20.10) gets dockerd 20.10's words, checked against it.
    old = docker_build(engine, tmp_path, "--no-cache", api="1.41")
    lines = step_lines(old.stdout)
    assert lines[lines.index("Step 3/7 : ENV A=1") + 1:][:3] == [
        " ---> Running in <id>", "Removing intermediate container <id>", " ---> <id>"]
    cached = step_lines(docker_build(engine, tmp_path).stdout)
    assert cached.count(" ---> Using cache") == 6 and "Running in" not in " ".join(cached)


def test_maintainer_sets_author_and_history(docker: Any, build: Any) -> None:
    df = ("FROM busybox\nMAINTAINER Jane <j@x>\nRUN echo > /x\nWORKDIR /w\nENV Z=1\n"
          "EXPOSE 80 90/udp\nVOLUME /v\nSHELL [\"/bin/sh\", \"-c\"]\n")
    msgs, _, image = build({"Dockerfile": df})
    assert image and not errors(msgs)
    info = docker.api.inspect_image(image)
    assert info["Author"] == "Jane <j@x>"
    # The history texts dockerd 20.10 writes (compared against it), which --cache-from
    # matching of docker-built images depends on.
    assert [h["CreatedBy"] for h in docker.api.history(image)[:5]] == [
        "/bin/sh -c #(nop)  SHELL [/bin/sh -c]", "/bin/sh -c #(nop)  VOLUME [/v]",
        "/bin/sh -c #(nop)  EXPOSE 80 90/udp", "/bin/sh -c #(nop)  ENV Z=1",
        "/bin/sh -c #(nop) WORKDIR /w"]  # one blank there, as moby
    _, _, child = build({"Dockerfile": f"FROM {image}\nENV Y=2\n"})
    assert docker.api.inspect_image(child)["Author"] == ""  # a stage's own MAINTAINER only


def test_buildkit_only_copy_flags_are_refused(build: Any, docker: Any) -> None:
    for flag in ("--exclude=*.txt", "--parents"):
        msgs, text, image = build({"Dockerfile": f"FROM busybox\nCOPY {flag} . /x/\n", "a": ""})
        option = flag[2:].split("=")[0]
        assert errors(msgs) == [f"the --{option} option requires BuildKit. Refer to "
                                "https://docs.docker.com/go/buildkit/ to learn how to build "
                                "images with BuildKit enabled"]
        assert f"Step 2/2 : COPY {flag} . /x/" in text and image is None
    msgs, _, image = build({"Dockerfile": "FROM busybox\nCOPY --link a /a\n", "a": "linked"})
    assert image and sh(docker, image, "cat /a") == "linked"  # --link: accepted, as moby


def test_pattern_substitution(build: Any, docker: Any) -> None:
    df = ("FROM busybox\nARG P=/usr/local/lib/local\nENV ONE=${P/local/LOCAL} "
          "ALL=${P//local/L} STAR=${P/*lib/X} SLASH=${P//\\//:}\n")
    msgs, _, image = build({"Dockerfile": df})
    assert image and not errors(msgs)
    env = dict(e.split("=", 1) for e in docker.api.inspect_image(image)["Config"]["Env"])
    assert env["ONE"] == "/usr/LOCAL/lib/local" and env["ALL"] == "/usr/L/lib/L"
    assert env["STAR"] == "X/local" and env["SLASH"] == ":usr:local:lib:local"
    msgs, _, _ = build({"Dockerfile": "FROM busybox\nENV X=${P/a}\n"})
    assert "missing '/' in ${}" in errors(msgs)[0]


def test_hard_links_stay_linked(tmp_path: Path, engine: Any, docker: Any) -> None:
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "a").write_text("same inode\n")
    os.link(tmp_path / "d" / "a", tmp_path / "d" / "b")
    (tmp_path / "Dockerfile").write_text("FROM busybox\nCOPY d /d/\n")
    for client in ("docker", "cove"):
        if client == "docker":
            out = docker_build(engine, tmp_path, "-q")
        else:
            out = subprocess.run([COVE, "-H", engine.url, "build", "-q", str(tmp_path)],
                                 capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        image = out.stdout.strip().splitlines()[-1]
        inodes = sh(docker, image, "stat -c '%i %h' /d/a /d/b").split("\n")
        assert inodes[0] == inodes[1] and inodes[0].endswith(" 2")


def test_cache_follows_content_not_mtime(engine: Any, tmp_path: Path) -> None:
    (tmp_path / "Dockerfile").write_text("FROM busybox\nCOPY data /data\nRUN cat /data\n")
    data = tmp_path / "data"
    data.write_text("version one\n")
    assert docker_build(engine, tmp_path).returncode == 0
    os.utime(data, (1_000_000, 1_000_000))  # touched: new mtime, same bytes
    touched = docker_build(engine, tmp_path)
    assert touched.stdout.count(" ---> Using cache") == 2
    data.write_text("version One\n")  # one byte differs
    edited = docker_build(engine, tmp_path)
    assert edited.stdout.count(" ---> Using cache") == 0 and "version One" in edited.stdout
    again = docker_build(engine, tmp_path, "--no-cache")
    assert " ---> Using cache" not in again.stdout and "version One" in again.stdout


def test_cli_dockerignore_exceptions_and_globstar(engine: Any, docker: Any,
                                                   tmp_path: Path) -> None:
    files = {"Dockerfile": "FROM busybox\nCOPY . /ctx/\n",
             ".dockerignore": "**/*.log\n!keep/**/*.log\nbuild\n!build/dist\n",
             "a.log": "", "x/y/z.log": "", "keep/deep/k.log": "", "build/tmp/t": "",
             "build/dist/app": "", "src/main.c": ""}
    for name, content in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(content)
    want = ["./.dockerignore", "./Dockerfile", "./build/dist/app", "./keep/deep/k.log",
            "./src/main.c"]
    docker_out = docker_build(engine, tmp_path, "-q")
    cove_out = subprocess.run([COVE, "-H", engine.url, "build", "-q", str(tmp_path)],
                              capture_output=True, text=True, timeout=60)
    for out in (docker_out, cove_out):
        assert out.returncode == 0, out.stderr
        image = out.stdout.strip().splitlines()[-1]
        assert sh(docker, image, "cd /ctx && find . -type f | sort").split() == want


def test_errors_read_like_docker(engine: Any, tmp_path: Path, docker: Any) -> None:
    (tmp_path / "Dockerfile").write_text("FROM busybox\nRUN true\nFOO bar\n")
    out = docker_build(engine, tmp_path)
    assert out.returncode == 1
    assert "dockerfile parse error on line 3: unknown instruction: FOO" in out.stderr
    (tmp_path / "Dockerfile").write_text("FROM busybox\nCOPY nosuch /x\n")
    out = docker_build(engine, tmp_path)
    assert out.stderr.strip().splitlines()[-1] == (
        "COPY failed: file not found in build context or excluded by .dockerignore: "
        "stat nosuch: file does not exist")
    before = {c.id for c in docker.containers.list(all=True)}
    (tmp_path / "Dockerfile").write_text("FROM busybox\nRUN echo partial > /p && exit 4\n")
    out = docker_build(engine, tmp_path, "-t", "cove-parity:failed", "--force-rm")
    assert out.returncode == 4 and not docker.images.list(name="cove-parity:failed")
    assert {c.id for c in docker.containers.list(all=True)} == before


def test_prune_removes_dangling_steps(engine: Any, build: Any, docker: Any) -> None:
    keep_df = "FROM busybox\nRUN echo keep > /k\nENV K=1\n"
    _, _, kept = build({"Dockerfile": keep_df}, tag="cove-prune:kept")
    _, _, dangling = build({"Dockerfile": "FROM busybox\nRUN head -c 300000 /dev/zero > /z\n"
                                          "ENV D=1\n"})
    assert kept and dangling
    status, body = engine.request("POST", "/build/prune")
    assert status == 200 and dangling in body["CachesDeleted"]
    assert body["SpaceReclaimed"] >= 300_000 and kept not in body["CachesDeleted"]
    ids = {i.id for i in docker.images.list(all=True)}
    assert dangling not in ids and kept in ids
    parent = docker.api.inspect_image(kept)["Parent"]
    assert parent in ids  # a tagged image's steps are its history: kept
    _, text, again = build({"Dockerfile": keep_df})
    assert again == kept and text.count("Using cache") == 2  # what stays, stays cached


class LocalBase:
    """``<registry>/base/bb:1``: busybox plus a one-file layer, republished on demand."""

    def __init__(self, registry: Any, busybox: bytes, work: Path) -> None:
        self.registry = registry
        self.ref = f"{registry.host}/base/bb:1"
        self._busybox = busybox
        self._work = work

    def publish(self, marker: str) -> None:
        import io
        import tarfile

        from tests.images.registry import docker_archive

        extra = io.BytesIO()
        with tarfile.open(fileobj=extra, mode="w") as tar:
            info = tarfile.TarInfo("marker")
            info.size = len(marker) + 1
            tar.addfile(info, io.BytesIO(marker.encode() + b"\n"))
        archive = self._work / f"{marker}.tar"
        docker_archive(archive, [self._busybox, extra.getvalue()], Cmd=["sh"])
        self.registry.push_archive(archive, "base/bb:1")


@pytest.fixture()
def local_base(tmp_path: Path, busybox_tar: Path) -> Iterator[LocalBase]:
    from tests.images.registry import start_registry

    reg = start_registry(tmp_path / "registry")
    try:
        yield LocalBase(reg, busybox_tar.read_bytes(), tmp_path)
    finally:
        reg.stop()


@pytest.mark.registry
def test_pull_flag_fetches_the_newer_base(local_base: LocalBase, build: Any) -> None:
    ref = local_base.ref
    local_base.publish("one")
    df = {"Dockerfile": f"FROM {ref}\nRUN cat /marker\n"}
    _, text, first = build(df)
    assert f"Status: Downloaded newer image for {ref}" in text and "\none\n" in text
    assert first
    local_base.publish("two")
    _, text, cached = build(df)
    assert "Status:" not in text and cached == first  # the local copy, without --pull
    _, text, pulled = build(df, pull=True)
    assert "Downloaded newer image for" in text and "\ntwo\n" in text and pulled != first


def _hwm_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError("no VmHWM")


def test_big_context_streams_in_bounded_memory(engine: Any, tmp_path: Path) -> None:
    ctx = tmp_path / "big"
    ctx.mkdir()
    for i in range(4):  # 200 MB of sparse files: cheap to make, real bytes on the wire
        with open(ctx / f"zero{i}.bin", "wb") as f:
            f.truncate(50 << 20)
    (ctx / "Dockerfile").write_text("FROM busybox\nCOPY zero0.bin /z\nRUN wc -c /z\n")
    pid = engine.proc.pid
    Path(f"/proc/{pid}/clear_refs").write_text("5")  # reset the peak RSS to the current RSS
    start = _hwm_kib(pid)
    out = docker_build(engine, ctx, "--no-cache")
    assert out.returncode == 0, out.stderr
    assert "52428800 /z" in out.stdout
    growth_mib = (_hwm_kib(pid) - start) / 1024
    print(f"engine peak RSS growth {growth_mib:.1f} MiB")
    assert growth_mib < 100, f"engine peak RSS grew {growth_mib:.0f} MiB"
