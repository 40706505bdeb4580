"""Networking benchmarks (root): cove side by side with Debian's dockerd on its own bridge.

    .venv/bin/python bench/net_bench.py [--runs 15] [--seconds 5]

1. NetworkManager.setup()+teardown() on a test bridge, no engine (median ms), with and
   without one published port (cove only: the network's own share of a start).
2. ``docker run --rm busybox true`` on the default bridge, the same docker CLI against
   each engine (median s; target cove <= 0.5 x docker).
3. Host -> 127.0.0.1:published port, requests/s of a bounded Python client (loopback
   only, bounded by --seconds and 200k requests per window; target cove >= docker),
   both engines up at once and measured in alternation (the machine is shared):
   busybox httpd with a new connection per request, and a keep-alive responder
   (net_httpka.c: busybox httpd closes every connection) with one kept connection.

dockerd runs privately (own roots, ``--bip`` a free 10.213.x.1/24, ``--iptables=true``),
which rewrites the host's firewall: every chain, rule, policy, sysctl and link it
adds is removed afterwards (``host_state_restored``).
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import ipaddress
import os
import shlex
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import (  # noqa: E402
    DOCKER_CLI,
    Dockerd,
    busybox_tarball,
    cove_engine,
    report,
)
from runtime.engine.events import EventBus  # noqa: E402
from runtime.layout import EngineLayout  # noqa: E402
from runtime.net import forwarding  # noqa: E402
from runtime.net.iptables import IptablesFirewall  # noqa: E402

MAX_REQUESTS = 200_000
HTTPD = "mkdir -p /www && echo ok > /www/index.html && exec httpd -f -p 80 -h /www"


def bench_manager(runs: int) -> dict[str, float]:
    from runtime.net.manager import NetworkManager

    base = Path(tempfile.mkdtemp(prefix="cove-netbench-"))
    m = NetworkManager(EngineLayout(base / "data", base / "exec"), EventBus(),
                       bridge_name="cvbench0", bridge_cidr="10.229.0.1/24",
                       default_pools=[(ipaddress.IPv4Network("10.230.0.0/16"), 24)])
    m.restore(set())
    out: dict[str, float] = {}
    try:
        cases: list[tuple[str, dict[str, object]]] = [
            ("plain", {}), ("1 port", {"PortBindings": {"80/tcp": [{}]}})]
        for label, hc in cases:
            times = []
            for i in range(runs):
                cid = f"{i:064x}"
                t0 = time.perf_counter()
                m.setup(cid, name=f"b{i}", hostname="b", domainname="", config={},
                        host_config=hc, networking_config={},
                        resolve_container=lambda r: (r, 0))
                m.teardown(cid)
                times.append(time.perf_counter() - t0)
                m.forget(cid)
            out[label] = statistics.median(times) * 1000
    finally:
        m.purge()
        shutil.rmtree(base, ignore_errors=True)
    return out


# ---------------------------------------------------------------------- host state
def _iptables_state() -> tuple[set[str], set[str], dict[str, str]]:
    """(rules of built-in chains, chain names, built-in policies) in nat and filter."""
    rules, chains, policies = set(), set(), {}
    for table in ("nat", "filter"):
        text = subprocess.run(["iptables-save", "-t", table], capture_output=True,
                              text=True).stdout
        for line in text.splitlines():
            if line.startswith(":"):
                name, policy = line[1:].split()[:2]
                chains.add(f"{table} {name}")
                if policy != "-":
                    policies[f"{table} {name}"] = policy
            elif line.startswith("-A "):
                rules.add(f"{table} {line}")
    return rules, chains, policies


def _nft_tables() -> set[str]:
    text = subprocess.run(["nft", "list", "tables"], capture_output=True, text=True).stdout
    return {ln.removeprefix("table ").strip() for ln in text.splitlines()}


def _other_dockerd_running() -> bool:
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if (entry / "comm").read_text().strip() == "dockerd":
                    return True
    return False


@contextlib.contextmanager
def host_state_restored(bridge: str, cidr: str) -> Iterator[None]:
    """A bridge of our own for dockerd (``--bridge``: docker0 may belong to another
    dockerd), and afterwards undo what a dockerd with --iptables=true leaves behind.

    dockerds share their chain names (DOCKER, DOCKER-USER ...): if another one runs
    when ours is gone, only the rules naming our bridge go and the rest stays theirs.
    """
    rules, chains, policies = _iptables_state()
    tables = _nft_tables()
    forwarding.hold("net-bench-dockerd")  # on before dockerd looks, so it changes nothing
    subprocess.run(["ip", "link", "add", bridge, "type", "bridge"], check=True)
    subprocess.run(["ip", "addr", "add", cidr, "dev", bridge], check=True)
    subprocess.run(["ip", "link", "set", bridge, "up"], check=True)
    try:
        yield
    finally:
        shared = _other_dockerd_running()
        new_rules, new_chains, _ = _iptables_state()
        for entry in sorted(new_rules - rules):
            table, line = entry.split(" ", 1)
            args = shlex.split(line)
            if shared and bridge not in args:
                continue
            args[0] = "-D"
            subprocess.run(["iptables", "-w", "-t", table, *args], capture_output=True)
        if not shared:
            for verb in ("-F", "-X"):  # flush every new chain first: they refer to each other
                for entry in sorted(new_chains - chains):
                    table, name = entry.split(" ", 1)
                    subprocess.run(["iptables", "-w", "-t", table, verb, name],
                                   capture_output=True)
            for entry, policy in policies.items():
                table, name = entry.split(" ", 1)
                subprocess.run(["iptables", "-w", "-t", table, "-P", name, policy],
                               capture_output=True)
            for table in ("nat", "filter"):  # iptables-nft made them for dockerd: empty now
                if f"ip {table}" not in tables and IptablesFirewall("cove")._unused(table):
                    subprocess.run(["nft", "delete", "table", "ip", table], capture_output=True)
        subprocess.run(["ip", "link", "del", bridge], capture_output=True)
        forwarding.release("net-bench-dockerd")


class BridgedDockerd(Dockerd):
    """bench.common's dockerd, on a bridge of ours with its iptables rules."""

    def __init__(self, base: Path, bridge: str) -> None:
        super().__init__(base, None)
        self.bridge = bridge

    def _network_flags(self) -> list[str]:
        return ["--bridge", self.bridge, "--iptables=true", "--ip6tables=false"]


@contextlib.contextmanager
def bridged_dockerd(tar: Path, bridge: str) -> Iterator[Dockerd]:
    d = BridgedDockerd(Path(tempfile.mkdtemp(prefix="dockerd-netbench-")), bridge)
    try:
        d.start()
        subprocess.run([DOCKER_CLI, "-H", d.host, "import", "--change", 'CMD ["sh"]', str(tar),
                        "busybox:latest"], check=True, capture_output=True)
        yield d
    finally:
        d.stop()


# ---------------------------------------------------------------------- load
def _get_new_connection(port: int) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", "/index.html", headers={"Connection": "close"})
        conn.getresponse().read()
    finally:
        conn.close()


def requests_per_second(port: int, seconds: float, *, keep_alive: bool) -> float:
    """Bounded load on 127.0.0.1:port: stops after *seconds* or MAX_REQUESTS."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    one: Callable[[], None]
    if keep_alive:
        def one() -> None:
            conn.request("GET", "/")
            conn.getresponse().read()
    else:
        def one() -> None:
            _get_new_connection(port)
    try:
        count, start = 0, time.monotonic()
        end = start + seconds
        while time.monotonic() < end and count < MAX_REQUESTS:
            one()
            count += 1
        return count / (time.monotonic() - start)
    finally:
        conn.close()


def _wait_ready(port: int) -> None:
    deadline = time.monotonic() + 10
    while True:
        try:
            _get_new_connection(port)
            return
        except (OSError, http.client.HTTPException):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


RUN_KEY = "run --rm busybox true, default bridge (s)"
SERVERS = [("req/s, new connection each (busybox httpd)", False),
           ("req/s, keep-alive (net_httpka)", True)]


def _time_run(host: str) -> float:
    t0 = time.perf_counter()
    subprocess.run([DOCKER_CLI, "-H", host, "run", "--rm", "busybox", "true"], check=True,
                   stdout=subprocess.DEVNULL)
    return time.perf_counter() - t0


@contextlib.contextmanager
def _server(host: str, keep_alive: bool, httpka: Path) -> Iterator[int]:
    """A published web server on 127.0.0.1:<port> of the engine at *host*."""
    port = _free_port()
    name = f"netbench{port}"
    argv = ["-v", f"{httpka}:/httpka:ro", "busybox", "/httpka", "80"] if keep_alive else \
        ["busybox", "sh", "-c", HTTPD]
    subprocess.run([DOCKER_CLI, "-H", host, "run", "-d", "--name", name, "-p",
                    f"127.0.0.1:{port}:80", *argv], check=True, stdout=subprocess.DEVNULL)
    try:
        _wait_ready(port)
        yield port
    finally:
        subprocess.run([DOCKER_CLI, "-H", host, "rm", "-f", name], capture_output=True)


def side_by_side(hosts: dict[str, str], runs: int, seconds: float,
                 httpka: Path | None) -> dict[str, dict[str, float]]:
    """Medians per engine, measured in alternation (A, B, A, B ...) so that load from
    elsewhere on the machine hits both alike."""
    samples: dict[str, dict[str, list[float]]] = {h: {} for h in hosts}
    for url in hosts.values():
        _time_run(url)  # warm caches
    for _ in range(runs):
        for h, url in hosts.items():
            samples[h].setdefault(RUN_KEY, []).append(_time_run(url))
    for label, keep in SERVERS:
        if keep and httpka is None:
            continue
        with contextlib.ExitStack() as stack:
            ports = {h: stack.enter_context(_server(url, keep, httpka or Path())) for h, url
                     in hosts.items()}
            for _ in range(5):  # five windows each of seconds/5, interleaved
                for h, port in ports.items():
                    samples[h].setdefault(label, []).append(
                        requests_per_second(port, seconds / 5, keep_alive=keep))
    return {h: {k: statistics.median(v) for k, v in by.items()} for h, by in samples.items()}


def _docker_bip(engine_bip: str) -> str:
    """A 10.213.x.1/24 that neither the cove engine nor a route of the host uses."""
    routes = subprocess.run(["ip", "-4", "route"], capture_output=True, text=True).stdout
    for third in range(250, 200, -1):
        if f"10.213.{third}." not in routes and f"10.213.{third}." not in engine_bip:
            return f"10.213.{third}.1/24"
    raise RuntimeError("no free 10.213.x.0/24 for dockerd")


def _build_httpka() -> Path | None:
    if shutil.which("gcc") is None:
        return None
    out = Path(tempfile.mkdtemp(prefix="cove-httpka-")) / "httpka"
    subprocess.run(["gcc", "-static", "-O2", "-o", str(out), str(ROOT / "bench" / "net_httpka.c")],
                   check=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=15)
    ap.add_argument("--seconds", type=float, default=5.0)
    args = ap.parse_args()
    manager = bench_manager(args.runs)
    print("## NetworkManager setup+teardown, no engine (ms)")
    for k, v in manager.items():
        print(f"| {k} | {v:.2f} |")
    tar, httpka = busybox_tarball(), _build_httpka()
    results: dict[str, dict[str, float]] = {}
    with cove_engine(tar) as eng:
        hosts = {"cove": eng.url}
        bridge = f"cvdk{os.getpid() % 100000}"
        try:
            if shutil.which("dockerd") is None:
                raise RuntimeError("dockerd is not installed")
            with host_state_restored(bridge, _docker_bip(eng.bip)), \
                    bridged_dockerd(tar, bridge) as dk:
                results = side_by_side({**hosts, "docker": dk.host}, args.runs, args.seconds,
                                       httpka)
        except (RuntimeError, subprocess.CalledProcessError) as e:
            print(f"dockerd with a bridge could not run here: {e}")
            results = side_by_side(hosts, args.runs, args.seconds, httpka)
    cove, docker = results["cove"], results.get("docker", {})
    report("run on the default bridge", [(RUN_KEY, cove[RUN_KEY], docker.get(RUN_KEY))], "s")
    report("host -> 127.0.0.1:published port",
           [(k, v, docker.get(k)) for k, v in cove.items() if k != RUN_KEY], "req/s")


if __name__ == "__main__":
    main()
