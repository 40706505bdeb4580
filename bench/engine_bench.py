"""Engine-core benchmarks (issue 2), cove side by side with dockerd and podman.

- ``run --rm --network none busybox true`` wall time (target: cove <= 0.5 x docker)
- ``run --rm busybox true`` on the default bridge (docker too with ``--docker-bridge``)
- ``exec C true`` (target: ≤ docker)
- the real ``docker ps -a`` CLI against each engine with 50 containers (target: ≤ dockerd)
- memory: engine + per-container helpers with 10 running ``sleep`` containers, PSS
  (target: <= 0.5 x dockerd + containerd + 10 shims) and the PSS each further container adds

Usage: ``.venv/bin/python bench/engine_bench.py [--runs 15] [--memory-only | --run-exec-only]``
as root.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import time

from bench.common import (
    COVE,
    DOCKER_CLI,
    Dockerd,
    busybox_tarball,
    cove_engine,
    dockerd,
    median_seconds,
    pids_by_name,
    pss_kib,
    report,
    rss_kib,
)


def _podman_run(tar: object, run: list[str], runs: int) -> float:
    """podman with private storage, the busybox image imported from the same tarball."""
    import tempfile

    base = tempfile.mkdtemp(prefix="podman-bench-")
    podman = ["podman", "--root", f"{base}/root", "--runroot", f"{base}/run",
              "--cgroup-manager", "cgroupfs", "--events-backend", "none"]
    try:
        _run([*podman, "import", "--change", 'CMD ["sh"]', str(tar), "busybox:latest"])
        # --ulimit host: this sandbox lacks CAP_SYS_RESOURCE for podman's raised nofile
        return median_seconds([*podman, *run[:-2], "--ulimit", "host",
                               "localhost/busybox:latest", "true"], runs)
    finally:
        subprocess.run([*podman, "system", "reset", "-f"], capture_output=True, check=False)
        shutil.rmtree(base, ignore_errors=True)


def _docker_bridge_run(tar: object, run: list[str], runs: int) -> float | None:
    """docker on its own bridge (NAT and iptables rules), from a dockerd of its own."""
    from pathlib import Path

    assert isinstance(tar, Path)
    try:
        with dockerd(tar, bridge_ip="10.231.7.1/24") as dk:
            return median_seconds([DOCKER_CLI, "-H", dk.host, *run], runs) if dk else None
    except (RuntimeError, subprocess.CalledProcessError) as e:
        print(f"docker on its bridge could not run here: {e}")
        return None


def _run(argv: list[str]) -> str:
    return subprocess.run(argv, check=True, capture_output=True, text=True).stdout.strip()


def _alternating(cove: list[str], docker: list[str] | None,
                 runs: int) -> tuple[float, float | None]:
    """Medians of cove and docker runs taken in turns, so load from other work on this
    shared machine hits both alike (one warm-up each)."""
    c_times: list[float] = []
    d_times: list[float] = []
    for i in range(runs + 1):
        for argv, times in ((cove, c_times), (docker, d_times)):
            if argv is None:
                continue
            started = time.perf_counter()
            subprocess.run(argv, check=True, stdout=subprocess.DEVNULL)
            if i:
                times.append(time.perf_counter() - started)
    return statistics.median(c_times), statistics.median(d_times) if d_times else None


def _exec_times(cove_cli: list[str], docker_cli: list[str] | None,
                runs: int) -> tuple[float, float | None]:
    """``exec C true`` in a running sleep container of each engine, alternating."""
    sleeper = ["run", "-d", "--network", "none", "busybox", "sleep", "600"]
    cid = _run([*cove_cli, *sleeper])
    did = _run([*docker_cli, *sleeper]) if docker_cli else None
    return _alternating([*cove_cli, "exec", cid, "true"],
                        [*docker_cli, "exec", did, "true"] if docker_cli and did else None, runs)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=15)
    ap.add_argument("--docker-bridge", action="store_true",
                    help="also time docker on its default bridge: a second private dockerd "
                         "with iptables on, which rewrites the host's firewall (FORWARD DROP)")
    ap.add_argument("--memory-only", action="store_true",
                    help="only the memory measurement (no timings)")
    ap.add_argument("--run-exec-only", action="store_true",
                    help="only the run --rm --network none and exec timings")
    args = ap.parse_args()
    tar = busybox_tarball()
    with cove_engine(tar) as cove, dockerd(tar) as dk:
        cove_cli = [COVE, "-H", cove.url]
        docker_cli = [DOCKER_CLI, "-H", dk.host] if dk else None
        if args.memory_only:
            sleeper = ["run", "-d", "--network", "none", "busybox", "sleep", "600"]
            _run([*cove_cli, *sleeper])
            if docker_cli:
                _run([*docker_cli, *sleeper])
            memory(cove, cove_cli, docker_cli, dk)
            return
        rows: list[tuple[str, float, float | None]] = []

        run = ["run", "--rm", "--network", "none", "busybox", "true"]
        c_run, d_run = _alternating([*cove_cli, *run],
                                    [*docker_cli, *run] if docker_cli else None, args.runs)
        rows.append(("run --rm --network none busybox true", c_run, d_run))
        if args.run_exec_only:
            rows.append(("exec C true", *_exec_times(cove_cli, docker_cli, args.runs)))
            report(f"Engine core: wall time (median of {args.runs}, alternating)", rows, "s")
            return
        if shutil.which("podman"):
            try:
                p_run = _podman_run(tar, run, args.runs)
                print(f"podman run --rm: {p_run:.3f} s (cove/podman {c_run / p_run:.2f})")
            except subprocess.CalledProcessError as e:
                print(f"podman could not run here: {e}")

        bridged = ["run", "--rm", "busybox", "true"]
        rows.append(("run --rm busybox true (default bridge)",
                     median_seconds([*cove_cli, *bridged], args.runs),
                     _docker_bridge_run(tar, bridged, args.runs) if args.docker_bridge else None))

        rows.append(("exec C true", *_exec_times(cove_cli, docker_cli, args.runs)))

        for i in range(49):
            _run([*cove_cli, "create", "--network", "none", "--name", f"ps{i}", "busybox",
                  "true"])
            if docker_cli:
                _run([*docker_cli, "create", "--network", "none", "--name", f"ps{i}",
                      "busybox", "true"])
        rows.append(("docker ps -a, 50 containers",
                     *_alternating([DOCKER_CLI, "-H", cove.url, "ps", "-a"],
                                   [*docker_cli, "ps", "-a"] if docker_cli else None,
                                   args.runs)))
        report(f"Engine core: wall time (median of {args.runs})", rows, "s")
        memory(cove, cove_cli, docker_cli, dk)


def memory(cove: object, cove_cli: list[str], docker_cli: list[str] | None,
           dk: Dockerd | None) -> None:
    from tests.harness import EngineProcess

    assert isinstance(cove, EngineProcess) and cove.proc is not None
    engine_pid = cove.proc.pid
    for _ in range(9):  # one is already running from the exec benchmark
        _run([*cove_cli, "run", "-d", "--network", "none", "busybox", "sleep", "600"])
    time.sleep(1)
    helpers = sorted({engine_pid, *_monitor_pids(cove)})
    c_pss, c_rss = pss_kib(helpers), rss_kib(helpers)
    monitors = _monitor_pids(cove)
    engine_pss, monitors_pss = pss_kib([engine_pid]), pss_kib(monitors)
    for _ in range(10):
        _run([*cove_cli, "run", "-d", "--network", "none", "busybox", "sleep", "600"])
    time.sleep(1)
    monitors = _monitor_pids(cove)
    per_container = (pss_kib(sorted({engine_pid, *monitors})) - c_pss) / 10
    engine_growth = (pss_kib([engine_pid]) - engine_pss) / 10
    helpers_growth = (pss_kib(monitors) - monitors_pss) / 10
    d_pss = d_rss = None
    if docker_cli:
        for _ in range(9):
            _run([*docker_cli, "run", "-d", "--network", "none", "busybox", "sleep", "600"])
        time.sleep(1)
        assert dk is not None
        dpids = _docker_pids(dk)
        d_pss, d_rss = pss_kib(dpids), rss_kib(dpids)
    print("\n## Memory with 10 running sleep containers (engine + per-container helpers)")
    print(f"cove: {c_pss / 1024:.1f} MiB PSS, {c_rss / 1024:.1f} MiB RSS "
          f"({len(helpers)} processes)")
    if d_pss is not None and d_rss is not None:
        print(f"docker: {d_pss / 1024:.1f} MiB PSS, {d_rss / 1024:.1f} MiB RSS "
              f"({len(dpids)} processes)")
        print(f"ratio cove/docker PSS: {c_pss / d_pss:.2f}")
    print(f"each further cove container adds {per_container / 1024:.2f} MiB PSS "
          f"(engine {engine_growth / 1024:.2f}, zygote + monitors {helpers_growth / 1024:.2f})")


def _docker_pids(dk: Dockerd) -> list[int]:
    """Our private dockerd, its containerd and shims: their command lines name its
    directory (other dockerds may run on this machine)."""
    mine = []
    for pid in pids_by_name("dockerd", "containerd", "containerd-shim-runc-v2",
                            "containerd-shim"):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                if str(dk.base).encode() in f.read():
                    mine.append(pid)
        except OSError:
            continue
    return mine


def _monitor_pids(cove: object) -> list[int]:
    """The engine's helper processes: its descendants that still run our Python (monitors).

    Container processes exec'd their own programs, so their /proc/<pid>/exe differs.
    """
    import os

    from tests.harness import EngineProcess, descendants

    assert isinstance(cove, EngineProcess) and cove.proc is not None
    engine_exe = os.readlink(f"/proc/{cove.proc.pid}/exe")
    out = []
    for pid in descendants(cove.proc.pid):
        try:
            if pid != cove.proc.pid and os.readlink(f"/proc/{pid}/exe") == engine_exe:
                out.append(pid)
        except OSError:
            continue
    return out


if __name__ == "__main__":
    main()
