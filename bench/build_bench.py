"""Build benchmark: FROM busybox + RUN + COPY of 20 MB in 100 files + CMD, cold and cached.

Starts its own engine (tests/harness.py), imports busybox, then times
``DOCKER_BUILDKIT=0 docker build`` (the real CLI: context upload included)
cold (``--no-cache``) and fully cached. When a dockerd is installed
(Debian's docker.io) the same builds run against it with the classic builder
and BuildKit for comparison; otherwise only Cove's numbers are reported.

    sudo python3 bench/build_bench.py [--runs 3]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.harness import EngineProcess  # noqa: E402

DOCKERFILE = """FROM busybox
RUN echo built > /built && mkdir -p /srv
COPY data/ /srv/data/
CMD ["ls", "/srv/data"]
"""


def make_context(root: Path, files: int = 100, total: int = 20 << 20) -> None:
    (root / "data").mkdir(parents=True)
    size = total // files
    for i in range(files):
        (root / "data" / f"f{i:03d}.bin").write_bytes(os.urandom(size))
    (root / "Dockerfile").write_text(DOCKERFILE)


def timed_build(host: str, ctx: Path, *extra: str, buildkit: bool = False) -> float:
    env = {**os.environ, "DOCKER_BUILDKIT": "1" if buildkit else "0"}
    start = time.perf_counter()
    subprocess.run(["docker", "-H", host, "build", "-q", "-t", "bench:latest", *extra,
                    str(ctx)], env=env, check=True, capture_output=True)
    return time.perf_counter() - start


def measure(host: str, ctx: Path, runs: int, buildkit: bool = False) -> tuple[float, float]:
    cold = [timed_build(host, ctx, "--no-cache", buildkit=buildkit) for _ in range(runs)]
    cached = [timed_build(host, ctx, buildkit=buildkit) for _ in range(runs)]
    return statistics.median(cold), statistics.median(cached)


def busybox_tar(work: Path) -> Path:
    tar = work / "busybox.tar"
    with open(tar, "wb") as f:
        subprocess.run(["bash", str(ROOT / "packaging" / "busybox-rootfs.sh")], stdout=f,
                       check=True)
    return tar


def compare_dockerd(work: Path, ctx: Path, runs: int) -> None:
    """A private dockerd (own roots and socket, no iptables, no bridge) with the same build."""
    d = work / "dockerd"
    d.mkdir()
    sock = f"unix://{d}/docker.sock"
    argv = ["dockerd", "-H", sock, "--data-root", str(d / "data"), "--exec-root",
            str(d / "exec"), "--pidfile", str(d / "pid"), "--iptables=false",
            "--ip-masq=false", "--bridge=none", "--containerd-namespace", "cove-bench",
            "--containerd-plugins-namespace", "cove-bench-plugins"]
    with open(d / "log", "wb") as log:
        proc = subprocess.Popen(argv, stdout=log, stderr=log, start_new_session=True)
    try:
        for _ in range(200):
            ping = subprocess.run(["docker", "-H", sock, "version"], capture_output=True)
            if ping.returncode == 0:
                break
            time.sleep(0.1)
        with open(work / "busybox.tar", "rb") as f:
            subprocess.run(["docker", "-H", sock, "import", "-c", 'CMD ["sh"]', "-",
                            "busybox:latest"], stdin=f, check=True, capture_output=True)
        cold, cached = measure(sock, ctx, runs)
        print(f"dockerd {_dockerd_version(sock)} classic builder: cold {cold:.2f}s  "
              f"cached {cached:.2f}s")
        if shutil.which("docker-buildx") is None and not Path(
                "/usr/libexec/docker/cli-plugins/docker-buildx").exists():
            print("BuildKit: not measured - the docker CLI needs the buildx plugin, which is "
                  "not installed (DOCKER_BUILDKIT=1 is a hard error without it)")
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def _dockerd_version(sock: str) -> str:
    out = subprocess.run(["docker", "-H", sock, "version", "-f", "{{.Server.Version}}"],
                         capture_output=True, text=True)
    return out.stdout.strip()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--runs", type=int, default=3)
    args = p.parse_args()
    work = Path(tempfile.mkdtemp(prefix="cove-build-bench-"))
    (work / "engine").mkdir()
    engine = EngineProcess(work / "engine")
    try:
        ctx = work / "ctx"
        make_context(ctx)
        engine.start()
        engine.import_image(busybox_tar(work), "busybox")
        cold, cached = measure(engine.url, ctx, args.runs)
        print(f"cove (classic API, docker CLI): cold {cold:.2f}s  cached {cached:.2f}s  "
              f"(median of {args.runs}; 20 MB in 100 files)")
        if shutil.which("dockerd") is None:
            print("dockerd: not installed (Debian docker.io absent) - no docker comparison")
        else:
            compare_dockerd(work, ctx, args.runs)
    finally:
        engine.cleanup()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
