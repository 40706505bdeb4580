"""The docker CLI against Cove vs the same CLI against Debian's dockerd, in one run.

Measures (median wall time of the CLI command; ratio = cove / dockerd, <= 1 is the goal):
``ps -a`` with 50 containers, ``inspect``, ``logs`` of 10 MB, events delivery latency
(from a ``rename`` to its event reaching a running ``docker events``) and
``stats --no-stream`` over 5 running containers. Containers use ``--network none``
so neither engine touches the host's network. Usage (root)::

    .venv/bin/python -m bench.compat_bench [--runs N]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import time
from collections.abc import Callable

from bench.common import DOCKER_CLI, busybox_tarball, cove_engine, dockerd, median_seconds

LOG_BYTES = 10_000_000
CONTAINERS = 50
RUNNING = 5


def cli(host: str) -> tuple[list[str], dict[str, str]]:
    env = {**os.environ, "DOCKER_HOST": host, "DOCKER_CONFIG": "/tmp/cove-bench-docker-config"}
    env.pop("DOCKER_CONTEXT", None)
    return [DOCKER_CLI], env


def _sh(host: str, *args: str) -> str:
    argv, env = cli(host)
    return subprocess.run([*argv, *args], env=env, check=True, capture_output=True,
                          timeout=300).stdout.decode()


def populate(host: str) -> None:
    """50 containers (5 of them running) and one that wrote 10 MB of log."""
    for i in range(CONTAINERS - RUNNING - 1):
        _sh(host, "create", "--network", "none", "--name", f"b{i}", "busybox", "true")
    for i in range(RUNNING):
        _sh(host, "run", "-d", "--network", "none", "--name", f"r{i}", "busybox", "sleep", "600")
    # 100 000 lines of 99 characters + newline.
    _sh(host, "run", "--network", "none", "--name", "logger", "busybox", "sh", "-c",
        f"yes 0123456789012345678901234567890123456789012345678901234567890123456789"
        f"0123456789012345678901234567 | head -n {LOG_BYTES // 100}")


def time_cmd(host: str, runs: int, *args: str) -> float:
    argv, env = cli(host)
    return median_seconds([*argv, *args], runs, env=env)


def event_latency(host: str, runs: int) -> float:
    """Seconds from issuing ``docker rename`` to the rename event arriving at ``docker events``."""
    argv, env = cli(host)
    proc = subprocess.Popen([*argv, "events", "--filter", "event=rename", "--format",
                             "{{.Actor.Attributes.name}}"], env=env, stdout=subprocess.PIPE)
    assert proc.stdout is not None
    time.sleep(1.0)  # the stream is open
    samples = []
    try:
        for i in range(runs + 1):
            old, new = (f"b{0}", "ev-a") if i % 2 == 0 else ("ev-a", "b0")
            started = time.perf_counter()
            subprocess.Popen([*argv, "rename", old, new], env=env,
                             stdout=subprocess.DEVNULL).wait()
            line = proc.stdout.readline().decode().strip()
            assert line == new, line
            if i:
                samples.append(time.perf_counter() - started)
    finally:
        proc.terminate()
        proc.wait()
    return statistics.median(samples)


def measure(host: str, runs: int) -> dict[str, float]:
    populate(host)
    cases: dict[str, Callable[[], float]] = {
        "ps -a (50 containers)": lambda: time_cmd(host, runs, "ps", "-a"),
        "inspect": lambda: time_cmd(host, runs, "inspect", "r0"),
        "logs (10 MB)": lambda: time_cmd(host, runs, "logs", "logger"),
        "events latency": lambda: event_latency(host, runs),
        "stats --no-stream (5 running)": lambda: time_cmd(host, max(1, runs // 3), "stats",
                                                          "--no-stream"),
    }
    return {name: fn() for name, fn in cases.items()}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    tar = busybox_tarball()
    with cove_engine(tar) as cove:
        cove_times = measure(cove.url, args.runs)
    with dockerd(tar) as docker:
        if docker is None:
            print("dockerd is not installed: cove times only")
            docker_times = {}
        else:
            docker_times = measure(docker.host, args.runs)
    print(f"{'case':34} {'cove s':>9} {'dockerd s':>10} {'ratio':>7}")
    for name, t in cove_times.items():
        ref = docker_times.get(name)
        ratio = f"{t / ref:7.2f}" if ref else "    n/a"
        ref_text = f"{ref:10.4f}" if ref else "       n/a"
        print(f"{name:34} {t:9.4f} {ref_text} {ratio}")


if __name__ == "__main__":
    main()
