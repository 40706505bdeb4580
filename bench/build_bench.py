"""Build benchmark: FROM busybox + RUN + COPY of 20 MB in 100 files + CMD, cold and cached.

Starts its own engine and, when Debian's docker.io is installed, a private dockerd
(bench/common.py), imports busybox into both, then times
``DOCKER_BUILDKIT=0 docker build -q`` (the real CLI: context upload included)
cold (``--no-cache``) and fully cached against each, plus ``cove build`` against
Cove (the CLI's own overhead). Runs alternate between the engines, so load from
other work on the machine hits both alike (all cold runs, then all cached ones);
medians and best runs are reported with their ratios.

BuildKit is measured only when the docker CLI has its buildx plugin: with
``DOCKER_BUILDKIT=1`` and no plugin the CLI refuses to build at all.

    sudo .venv/bin/python bench/build_bench.py [--runs 9]
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
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import COVE, busybox_tarball, cove_engine, dockerd, report  # noqa: E402

DOCKERFILE = """FROM busybox
RUN echo built > /built && mkdir -p /srv
COPY data/ /srv/data/
CMD ["ls", "/srv/data"]
"""
BUILDX_PATHS = ("/usr/libexec/docker/cli-plugins/docker-buildx",
                "/usr/lib/docker/cli-plugins/docker-buildx",
                os.path.expanduser("~/.docker/cli-plugins/docker-buildx"))


def make_context(root: Path, files: int = 100, total: int = 20 << 20) -> None:
    (root / "data").mkdir(parents=True)
    size = total // files
    for i in range(files):
        (root / "data" / f"f{i:03d}.bin").write_bytes(os.urandom(size))
    (root / "Dockerfile").write_text(DOCKERFILE)


def timed(argv: list[str], buildkit: bool = False) -> float:
    env = {**os.environ, "DOCKER_BUILDKIT": "1" if buildkit else "0"}
    start = time.perf_counter()
    subprocess.run(argv, env=env, check=True, capture_output=True)
    return time.perf_counter() - start


def docker_build(host: str, ctx: Path, *extra: str, buildkit: bool = False) -> float:
    return timed(["docker", "-H", host, "build", "-q", "-t", "bench:latest", *extra, str(ctx)],
                 buildkit)


def cove_build(host: str, ctx: Path, *extra: str) -> float:
    return timed([COVE, "-H", host, "build", "-q", "-t", "bench:latest", *extra, str(ctx)])


def alternate(runs: int, cases: dict[str, Callable[[], float]]) -> dict[str, list[float]]:
    """Seconds of each run of each case, the cases taking turns run by run (after one
    warm-up run each)."""
    times: dict[str, list[float]] = {name: [] for name in cases}
    for i in range(runs + 1):
        for name, case in cases.items():
            t = case()
            if i:
                times[name].append(t)
    return times


def table(title: str, runs: dict[str, list[float]], pick: Callable[[list[float]], float]) -> None:
    med = {name: pick(ts) for name, ts in runs.items()}
    rows = [("cold build (docker CLI)", med["cove cold"], med.get("docker cold")),
            ("cached build (docker CLI)", med["cove cached"], med.get("docker cached")),
            ("cached build, `cove build` vs `docker build` on Cove",
             med["cove CLI cached"], med["cove cached"])]
    if "buildkit cold" in med:
        rows += [("cold vs BuildKit", med["cove cold"], med["buildkit cold"]),
                 ("cached vs BuildKit", med["cove cached"], med["buildkit cached"])]
    report(title, rows, "s")


def buildx_installed() -> bool:
    return shutil.which("docker-buildx") is not None or any(
        Path(p).exists() for p in BUILDX_PATHS)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--runs", type=int, default=9)
    args = p.parse_args()
    work = Path(tempfile.mkdtemp(prefix="cove-build-bench-"))
    tar = busybox_tarball()
    try:
        ctx = work / "ctx"
        make_context(ctx)
        with cove_engine(tar) as eng, dockerd(tar) as dd:
            cold: dict[str, Callable[[], float]] = {
                "cove cold": lambda: docker_build(eng.url, ctx, "--no-cache")}
            cached: dict[str, Callable[[], float]] = {
                "cove cached": lambda: docker_build(eng.url, ctx),
                "cove CLI cached": lambda: cove_build(eng.url, ctx)}
            if dd is not None:
                cold["docker cold"] = lambda: docker_build(dd.host, ctx, "--no-cache")
                cached["docker cached"] = lambda: docker_build(dd.host, ctx)
            if dd is not None and buildx_installed():
                cold["buildkit cold"] = lambda: docker_build(dd.host, ctx, "--no-cache",
                                                             buildkit=True)
                cached["buildkit cached"] = lambda: docker_build(dd.host, ctx, buildkit=True)
            # Cold runs first, then cached ones: a rebuild right after a cold build also
            # pays for the writeback of the layers that build just wrote.
            med = {**alternate(args.runs, cold), **alternate(args.runs, cached)}
        print(f"{args.runs} alternating runs per case; context 20 MB in 100 files")
        # Medians, and best runs: on a shared machine the best run is the one least
        # disturbed by other work, a fair reading of each engine's own cost.
        table("classic builder, Cove vs dockerd: median", med, statistics.median)
        table("classic builder, Cove vs dockerd: best run", med, min)
        if dd is None:
            print("dockerd: not installed (Debian's docker.io) - no docker comparison")
        elif "buildkit cold" not in med:  # the plugin is missing
            print("BuildKit: not measured - the docker CLI needs its buildx plugin, which is "
                  "not installed; Debian 12 packages none (apt-cache policy docker-buildx "
                  "docker-buildx-plugin finds nothing), and DOCKER_BUILDKIT=1 is a hard error "
                  "without it")
    finally:
        shutil.rmtree(work, ignore_errors=True)
        shutil.rmtree(tar.parent, ignore_errors=True)


if __name__ == "__main__":
    main()
