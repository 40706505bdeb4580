"""Networking benchmarks (root): setup+teardown cost on the bridge, and published-port req/s.

    python bench/net_bench.py [--runs 50] [--seconds 3]

1. NetworkManager.setup()+teardown() on a test bridge, no engine (median ms), with and
   without one published port.
2. Through a real engine (tests.harness): ``run --rm busybox true`` on the default
   bridge vs ``--network none`` (median ms; the difference is our network's share).
3. Host → 127.0.0.1:published port → busybox httpd in a container: requests/s of a
   bounded keep-alive-less python client (loopback only, stops by itself).
Docker numbers are printed only when a dockerd answers on /var/run/docker.sock.
"""

from __future__ import annotations

import argparse
import http.client
import ipaddress
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from runtime.engine.events import EventBus  # noqa: E402
from runtime.layout import EngineLayout  # noqa: E402


def bench_manager(runs: int) -> dict[str, float]:
    from runtime.net.manager import NetworkManager

    base = Path(tempfile.mkdtemp(prefix="cove-netbench-"))
    m = NetworkManager(EngineLayout(base / "data", base / "exec"), EventBus(),
                       bridge_name="cvbench0", bridge_cidr="10.229.0.1/24",
                       default_pools=[(ipaddress.IPv4Network("10.230.0.0/16"), 24)])
    m.restore(set())
    out: dict[str, float] = {}
    try:
        cases: list[tuple[str, dict[str, Any]]] = [
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
            out[f"setup+teardown {label} (ms)"] = statistics.median(times) * 1000
    finally:
        m.purge()
    return out


def bench_engine(runs: int, seconds: float, busybox_tar: Path) -> dict[str, float]:
    import docker as docker_py

    from tests.harness import EngineProcess

    engine = EngineProcess(Path(tempfile.mkdtemp(prefix="cove-netbench-engine-")))
    out: dict[str, float] = {}
    try:
        engine.start()
        engine.import_image(busybox_tar, "busybox")
        client = docker_py.DockerClient(base_url=engine.url, timeout=60)
        for mode in ("bridge", "none"):
            times = []
            for _ in range(runs):
                t0 = time.perf_counter()
                client.containers.run("busybox", ["true"], remove=True, network_mode=mode)
                times.append(time.perf_counter() - t0)
            out[f"run --rm true --network {mode} (ms)"] = statistics.median(times) * 1000
        out["requests/s host->published port"] = _http_load(client, seconds)
        client.close()
    finally:
        engine.cleanup()
    return out


def _http_load(client: Any, seconds: float) -> float:
    web = client.containers.run(
        "busybox", ["sh", "-c", "mkdir /www && echo ok > /www/index.html && "
                    "exec httpd -f -p 80 -h /www"], detach=True, ports={"80/tcp": None})
    try:
        web.reload()
        port = int(web.attrs["NetworkSettings"]["Ports"]["80/tcp"][0]["HostPort"])
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            try:
                _get(port)
                break
            except OSError:
                time.sleep(0.05)
        count, end = 0, time.monotonic() + seconds
        while time.monotonic() < end and count < 200_000:
            _get(port)
            count += 1
        return count / seconds
    finally:
        web.remove(force=True)


def _get(port: int) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", "/index.html")
        conn.getresponse().read()
    finally:
        conn.close()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=30)
    ap.add_argument("--seconds", type=float, default=3.0)
    args = ap.parse_args()
    results = bench_manager(args.runs)
    import subprocess

    tar = Path(tempfile.mkdtemp(prefix="cove-netbench-bb-")) / "rootfs.tar"
    with open(tar, "wb") as f:
        subprocess.run(["bash", str(ROOT / "packaging" / "busybox-rootfs.sh")], stdout=f,
                       check=True)
    results.update(bench_engine(max(5, args.runs // 3), args.seconds, tar))
    for k, v in results.items():
        print(f"{k:45s} {v:10.1f}")


if __name__ == "__main__":
    main()
