"""Real builds against a real engine: docker-py, raw API and the docker CLI's classic builder."""

from __future__ import annotations

import http.server
import io
import os
import re
import subprocess
import tarfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.builder.conftest import context_tar

pytestmark = [pytest.mark.root, pytest.mark.timeout(120)]


def sh(docker: Any, image: str, script: str) -> str:
    out: bytes = docker.containers.run(image, ["sh", "-c", script], entrypoint=[],
                                       network_mode="none", remove=True)
    return out.decode()


def errors(msgs: list[dict[str, Any]]) -> list[str]:
    return [m["error"] for m in msgs if "error" in m]


def test_docker_py_build_tags_and_runs(docker: Any, tmp_path: Path) -> None:
    (tmp_path / "Dockerfile").write_text(
        "FROM busybox\nENV GREETING=hi\nRUN echo \"$GREETING\" > /g\nCOPY f.txt /app/\n"
        "WORKDIR /app\nCMD [\"cat\", \"f.txt\"]\n")
    (tmp_path / "f.txt").write_text("from context\n")
    image, logs = docker.images.build(path=str(tmp_path), tag="cove-build-test:one", rm=True)
    lines = "".join(x.get("stream", "") for x in logs)
    assert "Step 1/6 : FROM busybox" in lines and "Successfully tagged cove-build-test:one" in lines
    assert image.tags == ["cove-build-test:one"]
    assert docker.containers.run(image.id, network_mode="none", remove=True) == b"from context\n"
    assert sh(docker, image.id, "cat /g; pwd") == "hi\n/app\n"
    assert not docker.containers.list(all=True)  # intermediate containers removed


def test_multistage_target_and_unused_stage(build: Any, docker: Any) -> None:
    df = ("ARG V=busybox\nFROM $V AS base\nRUN echo base > /b\n"
          "FROM busybox AS unused\nRUN echo UNUSED-STAGE-RAN\n"
          "FROM base AS mid\nRUN echo mid > /m\n"
          "FROM busybox\nCOPY --from=mid /m /b /out/\n")
    msgs, text, image = build({"Dockerfile": df})
    assert image and not errors(msgs)
    assert "UNUSED-STAGE-RAN" not in text and "Step 1/6 :" in text
    assert sh(docker, image, "cat /out/b /out/m") == "base\nmid\n"
    msgs, text, target = build({"Dockerfile": df}, target="mid")
    assert target and "Step 4/4" in text
    assert sh(docker, target, "cat /m") == "mid\n"
    msgs, _, none = build({"Dockerfile": df}, target="nope")
    assert errors(msgs) == ["failed to reach build target nope in Dockerfile"] and not none


def test_cache_hits_and_invalidation(build: Any, docker: Any) -> None:
    df = "FROM busybox\nRUN echo one > /1\nCOPY a.txt /a.txt\nRUN cat /a.txt > /2\nCMD [\"x\"]\n"
    _, first, img1 = build({"Dockerfile": df, "a.txt": "v1"})
    assert "Using cache" not in first.split("Step 2/5")[1]
    _, again, img2 = build({"Dockerfile": df, "a.txt": "v1"})
    assert img1 == img2 and again.count(" ---> Using cache\n") == 4
    _, edited, img3 = build({"Dockerfile": df, "a.txt": "v2"})
    step2, rest = edited.split("Step 2/5")[1].split("Step 3/5")
    assert "Using cache" in step2 and "Using cache" not in rest and img3 != img1
    assert sh(docker, img3, "cat /2") == "v2"
    _, nocache, img4 = build({"Dockerfile": df, "a.txt": "v2"}, nocache=True)
    assert "Using cache" not in nocache and img4 != img3
    build({"Dockerfile": "FROM busybox\nARG X\nRUN echo $X\n"}, buildargs={"X": "1"})
    _, args2, _ = build({"Dockerfile": "FROM busybox\nARG X\nRUN echo $X\n"}, buildargs={"X": "2"})
    assert "Running in" in args2 and "\n2\n" in args2


def test_failing_run_reports_code_and_tags_nothing(build: Any, docker: Any) -> None:
    msgs, text, image = build({"Dockerfile": "FROM busybox\nRUN echo out; exit 3\n"},
                              tag="cove-build-test:fail", forcerm=True)
    err = [m for m in msgs if "error" in m]
    assert err[0]["error"] == ("The command '/bin/sh -c echo out; exit 3' returned a non-zero "
                               "code: 3")
    assert err[0]["errorDetail"]["code"] == 3 and "out\n" in text and image is None
    assert not docker.images.list(name="cove-build-test:fail")
    assert not docker.containers.list(all=True)


def test_parse_errors_and_missing_sources(docker: Any, build: Any) -> None:
    import docker as docker_py

    with pytest.raises(docker_py.errors.APIError, match="line 3: unknown instruction: FOO"):
        list(docker.api.build(fileobj=context_tar({"Dockerfile": "FROM busybox\nRUN true\nFOO\n"}),
                              custom_context=True))
    msgs, _, _ = build({"Dockerfile": "FROM busybox\nCOPY missing.txt /\n"})
    assert "file not found in build context or excluded by .dockerignore" in errors(msgs)[0]
    msgs, _, _ = build({"Dockerfile": "FROM busybox\nCOPY a b /dest\n", "a": "", "b": ""})
    assert "must be a directory and end with a /" in errors(msgs)[0]


def test_dockerignore_server_side(build: Any, docker: Any) -> None:
    files = {"Dockerfile": "FROM busybox\nCOPY . /ctx/\n", ".dockerignore": "*.log\n!keep.log\n"
             "secret/\n**/*.tmp\n", "a.log": "x", "keep.log": "k", "secret/s": "s",
             "d/x.tmp": "t", "d/y.txt": "y"}
    _, _, image = build(files)
    assert image
    listing = sh(docker, image, "cd /ctx && find . -type f | sort")
    assert listing.split() == ["./.dockerignore", "./Dockerfile", "./d/y.txt", "./keep.log"]


def test_heredocs_args_and_metadata(build: Any, docker: Any) -> None:
    df = ("ARG G=global\nFROM busybox\nARG G\nARG L=local\nENV E=env-$L\n"
          "RUN <<EOF\necho \"$G $L $E\" > /run.txt\necho two >> /run.txt\nEOF\n"
          "RUN <<EOF\n#!/bin/sh\necho script > /script.txt\nEOF\n"
          "COPY <<EOF /cfg.txt\nvalue=$E\nEOF\nCOPY --chown=1:2 --chmod=640 <<EOF /owned\nx\nEOF\n"
          "USER 1000\nEXPOSE 80 90/udp\nVOLUME /vol\nLABEL a=b \"c d\"=e\nSTOPSIGNAL SIGINT\n"
          "HEALTHCHECK --interval=5s --retries=2 CMD true\nSHELL [\"/bin/sh\", \"-ec\"]\n"
          "ENTRYPOINT [\"sh\"]\nONBUILD RUN echo trig > /tmp/trig\n")
    msgs, _, image = build({"Dockerfile": df}, buildargs={"L": "cli"})
    assert image and not errors(msgs)
    assert sh(docker, image, "cat /run.txt /script.txt /cfg.txt; ls / | grep -c cove-heredoc; "
              "stat -c '%u %g %a' /owned") == (
                  "global cli env-cli\ntwo\nscript\nvalue=env-cli\n0\n1 2 640\n")
    cfg = docker.api.inspect_image(image)["Config"]
    assert cfg["User"] == "1000" and cfg["Entrypoint"] == ["sh"] and cfg["Cmd"] is None
    assert set(cfg["ExposedPorts"]) == {"80/tcp", "90/udp"} and "/vol" in cfg["Volumes"]
    assert cfg["Labels"] == {"a": "b", "c d": "e"} and cfg["StopSignal"] == "SIGINT"
    assert cfg["Healthcheck"] == {"Test": ["CMD-SHELL", "true"], "Interval": 5_000_000_000,
                                  "Retries": 2}
    assert cfg["OnBuild"] == ["RUN echo trig > /tmp/trig"] and "E=env-cli" in cfg["Env"]
    msgs, text, child = build({"Dockerfile": f"FROM {image}\n"})
    assert "# Executing 1 build trigger" in text and child
    assert sh(docker, child, "cat /tmp/trig") == "trig\n"


@pytest.fixture()
def http_server(tmp_path: Path) -> Iterator[str]:
    (tmp_path / "dl.txt").write_text("downloaded\n")
    handler = lambda *a: http.server.SimpleHTTPRequestHandler(  # noqa: E731
        *a, directory=str(tmp_path))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()


def test_add_url_and_archive(build: Any, docker: Any, http_server: str) -> None:
    archive = io.BytesIO()
    with tarfile.open(fileobj=archive, mode="w:gz") as tar:
        info = tarfile.TarInfo("top/inner.txt")
        info.size, info.uid = 6, 7
        tar.addfile(info, io.BytesIO(b"inner\n"))
    df = f"FROM busybox\nADD {http_server}/dl.txt /dl/\nADD a.tgz /x\nADD a.tgz /\n"
    msgs, _, image = build({"Dockerfile": df, "a.tgz": archive.getvalue()})
    assert image and not errors(msgs)
    assert sh(docker, image, "cat /dl/dl.txt /x/top/inner.txt; stat -c '%a %u' /dl/dl.txt "
              "/top/inner.txt") == "downloaded\ninner\n600 0\n644 7\n"


def test_cache_from_and_prune(build: Any, docker: Any, engine: Any) -> None:
    df = "FROM busybox\nRUN echo cf > /cf\nENV Z=1\n"
    _, _, image = build({"Dockerfile": df})
    saved = b"".join(docker.images.get(image).save())
    status, body = engine.request("POST", "/build/prune")  # dangling: deleted, uncached
    assert status == 200 and image in body["CachesDeleted"]
    docker.images.load(saved)  # back, without its steps' images: only --cache-from can match
    _, text, again = build({"Dockerfile": df}, cache_from=[image])
    assert text.count("Using cache") == 2 and again == image


def test_docker_cli_classic_build(engine: Any, tmp_path: Path) -> None:
    (tmp_path / "Dockerfile").write_text("FROM busybox\nCOPY hello /hello\nRUN cat /hello\n")
    (tmp_path / "hello").write_text("hello from the CLI\n")
    env = {**os.environ, "DOCKER_BUILDKIT": "0"}
    cmd = ["docker", "-H", engine.url, "build", "-t", "cove-cli-build", str(tmp_path)]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "hello from the CLI" in out.stdout
    assert re.search(r"Successfully built [0-9a-f]{12}\nSuccessfully tagged cove-cli-build:latest",
                     out.stdout)
    again = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60)
    assert again.stdout.count(" ---> Using cache") == 2
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "Dockerfile").write_text("FROM busybox\nRUN exit 7\n")
    out = subprocess.run(["docker", "-H", engine.url, "build", str(bad)], env=env,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 7  # the CLI exits with errorDetail.code, as with dockerd
    assert "The command '/bin/sh -c exit 7' returned a non-zero code: 7" in out.stderr + out.stdout
