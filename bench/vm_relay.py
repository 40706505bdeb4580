"""Relay overhead: `docker version` / `docker ps` through the VM relay vs the engine on the host.

    python bench/vm_relay.py [--runs 10]

Starts a VM (instance "relaybench") and, for comparison, `python -m runtime.engine` on a
host Unix socket; times the real docker CLI against both (median of --runs), plus a bare
GET /_ping over the relay. Under TCG the guest engine itself is several times slower than
on the host, so the relay's own cost is reported separately: relay /_ping minus in-guest
/_ping (measured over `ssh` with socat).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOCKER = shutil.which("docker") or "/usr/bin/docker"
NAME = "relaybench"


def _time(argv: list[str], runs: int) -> float:
    subprocess.run(argv, capture_output=True, check=True)  # warm up
    samples = []
    for _ in range(runs):
        t0 = time.monotonic()
        subprocess.run(argv, capture_output=True, check=True)
        samples.append(time.monotonic() - t0)
    return round(statistics.median(samples), 3)


def _ping(sock: str, runs: int) -> float:
    samples = []
    for _ in range(runs):
        t0 = time.monotonic()
        with socket.socket(socket.AF_UNIX) as s:
            s.settimeout(30)
            s.connect(sock)
            s.sendall(b"GET /_ping HTTP/1.0\r\n\r\n")
            resp = b""
            while not resp.endswith(b"OK") and (chunk := s.recv(4096)):
                resp += chunk
        samples.append(time.monotonic() - t0)
    return round(statistics.median(samples), 3)


def _host_engine(tmp: Path) -> tuple[subprocess.Popen[bytes], str]:
    sock = str(tmp / "engine.sock")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "runtime.engine",
            "--host",
            f"unix://{sock}",
            "--data-root",
            str(tmp / "data"),
            "--exec-root",
            str(tmp / "run"),
            "--bridge",
            "covebench0",
            "--bip",
            "172.31.250.1/24",
        ],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60
    while not os.path.exists(sock) and time.monotonic() < deadline:
        time.sleep(0.1)
    return proc, sock


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--runs", type=int, default=10)
    p.add_argument("--keep", action="store_true")
    p.add_argument("--name", default=NAME, help="reuse this VM (e.g. bench after vm_boot --keep)")
    args = p.parse_args()
    os.environ.setdefault("COVE_VM_HOME", tempfile.mkdtemp(prefix="cove-relay-"))
    from vmhost import control, instance

    tmp = Path(tempfile.mkdtemp(prefix="cove-hostengine-"))
    proc, host_sock = _host_engine(tmp)
    result: dict[str, float] = {}
    try:
        relay = control.start(instance.InstanceConfig(name=args.name, disk_gib=4))
        for label, sock in (("host", host_sock), ("relay", relay)):
            for verb in ("version", "ps"):
                result[f"{label}_docker_{verb}_s"] = _time(
                    [DOCKER, "-H", f"unix://{sock}", verb], args.runs
                )
            result[f"{label}_ping_s"] = _ping(sock, args.runs)
        guest = subprocess.run(
            control.ssh_argv(
                args.name,
                [
                    "sh",
                    "-c",
                    "'for i in 1 2 3 4 5; do "
                    'printf "GET /_ping HTTP/1.0\\r\\n\\r\\n" | socat - '
                    "UNIX-CONNECT:/run/cove/engine.sock >/dev/null; done; "
                    "t0=$(date +%s%N); for i in 1 2 3 4 5 6 7 8 9 10; do "
                    'printf "GET /_ping HTTP/1.0\\r\\n\\r\\n" | socat - '
                    "UNIX-CONNECT:/run/cove/engine.sock >/dev/null; done; "
                    "echo $(( ($(date +%s%N)-t0)/10000000 ))'",
                ],
                tty=False,
            ),
            capture_output=True,
            text=True,
            check=False,
        )
        if guest.returncode == 0 and guest.stdout.strip():
            result["in_guest_ping_s"] = int(guest.stdout.strip()) / 1000
        for verb in ("version", "ps"):
            ratio = result[f"relay_docker_{verb}_s"] / result[f"host_docker_{verb}_s"]
            result[f"ratio_{verb}"] = round(ratio, 2)
    finally:
        proc.terminate()
        proc.wait(30)
        if not args.keep:
            control.remove(args.name, force=True)
    out = json.dumps(result, indent=1)
    print(out)
    (ROOT / "bench/results").mkdir(parents=True, exist_ok=True)
    (ROOT / "bench/results/vm_relay.json").write_text(out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
