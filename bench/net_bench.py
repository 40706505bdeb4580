"""Networking benchmarks (root): cove side by side with Debian's dockerd on its own bridge.

    .venv/bin/python bench/net_bench.py [--runs 15] [--seconds 3]

1. NetworkManager.setup()+teardown() on a test bridge, no engine (median ms), with and
   without one published port (cove only: the network's own share of a start).
2. ``docker run --rm busybox true`` on the default bridge, the same docker CLI against
   each engine (median s; target cove <= 0.5 x docker).
3. Host -> 127.0.0.1:published port, requests/s of a bounded Python client (loopback
   only, stops by itself after --seconds or 200k requests; target cove >= docker):
   busybox httpd with a new connection per request, and a keep-alive responder
   (net_httpka.c: busybox httpd closes every connection) with one kept connection.

dockerd runs privately (own roots, ``--bip`` 10.213.250.1/24, ``--iptables=true``),
which rewrites the host's firewall: every chain, rule, policy, sysctl and link it
adds is removed afterwards (``host_state_restored``).
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import ipaddress
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

from bench.common import DOCKER_CLI, busybox_tarball, cove_engine, dockerd, report  # noqa: E402
from runtime.engine.events import EventBus  # noqa: E402
from runtime.layout import EngineLayout  # noqa: E402
from runtime.net.iptables import IptablesFirewall  # noqa: E402

DOCKER_BIP = "10.213.250.1/24"
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


@contextlib.contextmanager
def host_state_restored() -> Iterator[None]:
    """Undo what a dockerd with --iptables=true leaves behind on the host."""
    rules, chains, policies = _iptables_state()
    forward = Path("/proc/sys/net/ipv4/ip_forward").read_text().strip()
    had_docker0 = Path("/sys/class/net/docker0").exists()
    tables = _nft_tables()
    try:
        yield
    finally:
        new_rules, new_chains, _ = _iptables_state()
        for entry in sorted(new_rules - rules):
            table, line = entry.split(" ", 1)
            args = shlex.split(line)
            args[0] = "-D"
            subprocess.run(["iptables", "-w", "-t", table, *args], capture_output=True)
        for verb in ("-F", "-X"):  # flush every new chain first: they refer to each other
            for entry in sorted(new_chains - chains):
                table, name = entry.split(" ", 1)
                subprocess.run(["iptables", "-w", "-t", table, verb, name], capture_output=True)
        for entry, policy in policies.items():
            table, name = entry.split(" ", 1)
            subprocess.run(["iptables", "-w", "-t", table, "-P", name, policy],
                           capture_output=True)
        Path("/proc/sys/net/ipv4/ip_forward").write_text(forward)
        for table in ("nat", "filter"):  # iptables-nft made them for dockerd: empty now
            if f"ip {table}" not in tables and IptablesFirewall("cove")._unused(table):
                subprocess.run(["nft", "delete", "table", "ip", table], capture_output=True)
        if not had_docker0 and Path("/sys/class/net/docker0").exists():
            subprocess.run(["ip", "link", "del", "docker0"], capture_output=True)


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


def engine_numbers(host: str, runs: int, seconds: float, httpka: Path | None) -> dict[str, float]:
    """The same docker CLI against one engine: run --rm median, then req/s."""
    cli = [DOCKER_CLI, "-H", host]
    out: dict[str, float] = {}
    times = []
    for i in range(runs + 1):
        t0 = time.perf_counter()
        subprocess.run([*cli, "run", "--rm", "busybox", "true"], check=True,
                       stdout=subprocess.DEVNULL)
        if i:  # the first one warms caches
            times.append(time.perf_counter() - t0)
    out["run --rm busybox true, default bridge (s)"] = statistics.median(times)
    servers = [("req/s, new connection each (busybox httpd)", ["sh", "-c", HTTPD], False)]
    if httpka is not None:
        servers.append(("req/s, keep-alive (net_httpka)", ["/httpka", "80"], True))
    for label, argv, keep in servers:
        port = _free_port()
        mount = ["-v", f"{httpka}:/httpka:ro"] if keep else []
        name = f"netbench{port}"
        subprocess.run([*cli, "run", "-d", "--name", name, "-p", f"127.0.0.1:{port}:80", *mount,
                        "busybox", *argv], check=True, stdout=subprocess.DEVNULL)
        try:
            _wait_ready(port)
            out[label] = requests_per_second(port, seconds, keep_alive=keep)
        finally:
            subprocess.run([*cli, "rm", "-f", name], capture_output=True)
    return out


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
    ap.add_argument("--seconds", type=float, default=3.0)
    args = ap.parse_args()
    manager = bench_manager(args.runs)
    print("## NetworkManager setup+teardown, no engine (ms)")
    for k, v in manager.items():
        print(f"| {k} | {v:.2f} |")
    tar, httpka = busybox_tarball(), _build_httpka()
    with cove_engine(tar) as eng:
        cove = engine_numbers(eng.url, args.runs, args.seconds, httpka)
    docker: dict[str, float] = {}
    try:
        with host_state_restored(), dockerd(tar, bridge_ip=DOCKER_BIP) as dk:
            if dk is not None:
                docker = engine_numbers(dk.host, args.runs, args.seconds, httpka)
    except (RuntimeError, subprocess.CalledProcessError) as e:
        print(f"dockerd with a bridge could not run here: {e}")
    run_key = "run --rm busybox true, default bridge (s)"
    report("run on the default bridge", [(run_key, cove[run_key], docker.get(run_key))], "s")
    report("host -> 127.0.0.1:published port",
           [(k, v, docker.get(k)) for k, v in cove.items() if k != run_key], "req/s")


if __name__ == "__main__":
    main()
