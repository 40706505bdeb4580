"""The docker CLI against Cove vs the same CLI against Debian's dockerd, side by side.

Measures the wall time of the CLI command (ratio = cove / dockerd, <= 1 is the goal):
``ps -a`` with 50 containers, ``inspect``, ``logs`` of 10 MB, events delivery latency
(from a ``rename`` to its event reaching a running ``docker events``) and
``stats --no-stream`` over 5 running containers. Containers use ``--network none``
so neither engine touches the host's network.

Both engines run at once and every run times one command against each, in
alternating order, so load from whatever else shares this 2-core machine falls on
both alike. The report gives the median and the minimum of each side and their
ratios. Cove runs without ``--debug``, as dockerd runs without ``-D``
(``--debug`` to compare with Cove's per-request debug log on). Usage (root)::

    .venv/bin/python -m bench.compat_bench [--runs N] [--debug] [--cases inspect,events]

Besides medians and minima, each case reports the median of the per-pair ratios with a 95 %
bootstrap interval: a case whose interval lies below 1 is faster than dockerd beyond this
machine's noise, one whose interval straddles 1 is at parity.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from bench.common import DOCKER_CLI, busybox_tarball, cove_engine, dockerd

LOG_BYTES = 10_000_000
CONTAINERS = 50
RUNNING = 5


def cli_env(host: str) -> dict[str, str]:
    env = {**os.environ, "DOCKER_HOST": host, "DOCKER_CONFIG": "/tmp/cove-bench-docker-config"}
    env.pop("DOCKER_CONTEXT", None)
    return env


def _sh(host: str, *args: str) -> str:
    return subprocess.run([DOCKER_CLI, *args], env=cli_env(host), check=True,
                          capture_output=True, timeout=300).stdout.decode()


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


def time_once(host: str, *args: str) -> float:
    started = time.perf_counter()
    subprocess.run([DOCKER_CLI, *args], check=True, stdout=subprocess.DEVNULL,
                   env=cli_env(host))
    return time.perf_counter() - started


class EventWatcher:
    """A running ``docker events`` for renames; times a rename until its event arrives."""

    def __init__(self, host: str) -> None:
        self.host = host
        self.proc = subprocess.Popen(
            [DOCKER_CLI, "events", "--filter", "event=rename", "--format",
             "{{.Actor.Attributes.name}}"], env=cli_env(host), stdout=subprocess.PIPE)
        self.renames = 0

    def latency(self) -> float:
        old, new = ("b0", "ev-a") if self.renames % 2 == 0 else ("ev-a", "b0")
        self.renames += 1
        assert self.proc.stdout is not None
        started = time.perf_counter()
        subprocess.Popen([DOCKER_CLI, "rename", old, new], env=cli_env(self.host),
                         stdout=subprocess.DEVNULL).wait()
        line = self.proc.stdout.readline().decode().strip()
        elapsed = time.perf_counter() - started
        assert line == new, line
        return elapsed

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait()


@dataclass
class Samples:
    cove: list[float] = field(default_factory=list)
    docker: list[float] = field(default_factory=list)


def alternate(runs: int, cove: Callable[[], float], docker: Callable[[], float]) -> Samples:
    """One warm-up each, then *runs* pairs, the engine that goes first alternating."""
    cove()
    docker()
    out = Samples()
    for i in range(runs):
        if i % 2 == 0:
            out.cove.append(cove())
            out.docker.append(docker())
        else:
            out.docker.append(docker())
            out.cove.append(cove())
    return out


CASES = ("ps", "inspect", "logs", "stats", "events")


def measure(
    cove: str, docker: str, runs: int, cases: tuple[str, ...] = CASES
) -> dict[str, Samples]:
    results: dict[str, Samples] = {}
    for key, name, args, n in (
        ("ps", "ps -a (50 containers)", ("ps", "-a"), runs),
        ("inspect", "inspect", ("inspect", "r0"), runs),
        ("logs", "logs (10 MB)", ("logs", "logger"), runs),
        ("stats", "stats --no-stream (5 running)", ("stats", "--no-stream"), max(3, runs // 3)),
    ):
        if key not in cases:
            continue
        results[name] = alternate(n, lambda a=args: time_once(cove, *a),  # type: ignore[misc]
                                  lambda a=args: time_once(docker, *a))  # type: ignore[misc]
    if "events" not in cases:
        return results
    watchers = EventWatcher(cove), EventWatcher(docker)
    try:
        time.sleep(1.0)  # both streams are open
        results["events latency"] = alternate(runs, watchers[0].latency, watchers[1].latency)
    finally:
        for w in watchers:
            w.close()
    return results


def ratio_interval(pairs: list[float], rounds: int = 2000) -> tuple[float, float]:
    """95 % bootstrap interval of the median per-pair ratio (a fixed seed: runs repeat)."""
    rng = random.Random(7)
    medians = sorted(statistics.median(rng.choices(pairs, k=len(pairs))) for _ in range(rounds))
    return medians[int(rounds * 0.025)], medians[int(rounds * 0.975) - 1]


def report(results: dict[str, Samples], runs: int) -> None:
    print(f"runs per case: {runs} (stats: {max(3, runs // 3)}), engines alternating")
    print(f"{'case':32} {'cove med':>9} {'dockerd med':>11} {'ratio':>6}   "
          f"{'cove min':>9} {'dockerd min':>11} {'ratio':>6}   {'ratio range':>12}   "
          f"{'pair ratio (95% CI)':>20}")
    for name, s in results.items():
        c_med, d_med = statistics.median(s.cove), statistics.median(s.docker)
        c_min, d_min = min(s.cove), min(s.docker)
        pairs = sorted(c / d for c, d in zip(s.cove, s.docker, strict=True))
        quart = len(pairs) // 4
        spread = f"{pairs[quart]:.2f}-{pairs[-1 - quart]:.2f}"
        low, high = ratio_interval(pairs)
        ci = f"{statistics.median(pairs):.3f} ({low:.3f}-{high:.3f})"
        print(f"{name:32} {c_med:9.4f} {d_med:11.4f} {c_med / d_med:6.2f}   "
              f"{c_min:9.4f} {d_min:11.4f} {c_min / d_min:6.2f}   {spread:>12}   {ci:>20}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=61)
    parser.add_argument("--debug", action="store_true", help="run Cove with --debug")
    parser.add_argument("--cases", default=",".join(CASES),
                        help=f"comma-separated subset of {','.join(CASES)}")
    args = parser.parse_args()
    cases = tuple(args.cases.split(","))
    if unknown := set(cases) - set(CASES):
        parser.error(f"unknown cases: {', '.join(sorted(unknown))}")
    tar = busybox_tarball()
    with cove_engine(tar, args.debug) as cove, dockerd(tar) as docker:
        if docker is None:
            raise SystemExit("dockerd is not installed: nothing to compare with")
        populate(cove.url)
        populate(docker.host)
        report(measure(cove.url, docker.host, args.runs, cases), args.runs)


if __name__ == "__main__":
    main()
