"""Relay overhead: `docker version` / `docker ps` through the VM relay vs the engine on the host.

    python bench/vm_relay.py [--runs 10] [--keep] [--name relaybench]

Starts a VM (instance "relaybench") and, for comparison, `python -m runtime.engine` on a
host Unix socket, and times the real docker CLI against both, one sample of each in turn
(the machine is shared: alternating keeps drift out of the ratio), after a warm-up
connection. Besides the supervisor's relay socket it starts, in this process and on the
same kind of SSH connection, relays that take each other path, so one run shows what each
piece costs:

- ``relay``: the supervisor's socket (stream-local channels to the engine socket, pooled
  and prepinged: the CLI's first request, HEAD /_ping, was sent ahead)
- ``same``: the same relay again in another process (how much the process matters)
- ``pool``: the same, pooled but not prepinged
- ``nopool``: stream-local channel opened per client connection
- ``proxy``: direct-tcpip channel to the guest API proxy per connection (the old default)

and the floors under them: a bare ``/_ping`` on a new connection through each, the same on
one kept-alive channel (the SSH round trip plus the guest engine's answer), an SSH channel
echo round trip (``cat``), and ``/_ping`` inside the guest (the engine alone under TCG).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
DOCKER = shutil.which("docker") or "/usr/bin/docker"
NAME = "relaybench"
PING = b"GET /_ping HTTP/1.1\r\nHost: x\r\n\r\n"
IN_GUEST = """
import socket, statistics, time
s = socket.socket(socket.AF_UNIX); s.connect("/run/cove/engine.sock")
samples = []
for i in range(%d):
    t0 = time.perf_counter(); s.sendall(%r); b = b""
    while not b.endswith(b"OK"): b += s.recv(4096)
    samples.append(time.perf_counter() - t0)
print(statistics.median(samples[3:]))
"""


def _median_ms(samples: list[float]) -> float:
    return round(statistics.median(samples) * 1000, 1)


def _spread_ms(samples: list[float]) -> list[float]:
    q = statistics.quantiles(samples, n=4) if len(samples) > 1 else samples * 3
    return [round(q[0] * 1000, 1), round(q[-1] * 1000, 1)]


def _clock(fn: Callable[[], object]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def _docker(sock: str, verb: str) -> Callable[[], object]:
    argv = [DOCKER, "-H", f"unix://{sock}", verb]
    return lambda: subprocess.run(argv, capture_output=True, check=True)


def _ping_new(sock: str) -> Callable[[], object]:
    def ping() -> None:
        with socket.socket(socket.AF_UNIX) as s:
            s.settimeout(30)
            s.connect(sock)
            s.sendall(PING)
            resp = b""
            while not resp.endswith(b"OK") and (chunk := s.recv(4096)):
                resp += chunk

    return ping


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


def _alternate(targets: dict[str, Callable[[], object]], runs: int) -> dict[str, list[float]]:
    for fn in targets.values():
        fn()  # warm-up: the first connection (and the pools behind it)
    out: dict[str, list[float]] = {k: [] for k in targets}
    for _ in range(runs):
        for k, fn in targets.items():
            time.sleep(0.05)  # let a relay pool refill, as between two commands
            out[k].append(_clock(fn))
    return out


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--runs", type=int, default=10)
    p.add_argument("--keep", action="store_true")
    p.add_argument("--name", default=NAME, help="reuse this VM (e.g. bench after vm_boot --keep)")
    p.add_argument("--serve", help=argparse.SUPPRESS)  # internal: run the variant relays
    args = p.parse_args()
    if "COVE_VM_HOME" not in os.environ:
        os.environ["COVE_VM_HOME"] = tempfile.mkdtemp(prefix="cove-relay-")
    from vmhost import control, instance, layout
    from vmhost.ssh import SSHGuest

    if args.serve:
        return _serve_variants(args.name, Path(args.serve))

    tmp = Path(tempfile.mkdtemp(prefix="cove-hostengine-"))
    proc, host_sock = _host_engine(tmp)
    result: dict[str, object] = {}
    medians: dict[str, float] = {}
    served: subprocess.Popen[str] | None = None
    try:
        sockets = {"host": host_sock}
        control.start(instance.InstanceConfig(name=args.name, disk_gib=4))
        sockets["relay"] = str(layout.InstanceLayout.named(args.name).relay_socket)
        lay = layout.InstanceLayout.named(args.name)
        guest = SSHGuest(
            host="127.0.0.1",
            port=int(lay.ssh_port.read_text()),
            client_key=lay.client_key,
            host_key_line=instance.host_key_line(lay),
        )
        # The other relays run in a process of their own, like the supervisor's.
        served = subprocess.Popen(
            [sys.executable, __file__, "--name", args.name, "--serve", str(tmp)],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert served.stdout is not None
        for line in served.stdout:
            label, _, path = line.strip().partition(" ")
            if label == "ready":
                break
            sockets[label] = path
        for verb in ("version", "ps"):
            got = _alternate({k: _docker(s, verb) for k, s in sockets.items()}, args.runs)
            for k, samples in got.items():
                medians[f"{k}_docker_{verb}_ms"] = _median_ms(samples)
                result[f"{k}_docker_{verb}_iqr_ms"] = _spread_ms(samples)
        got = _alternate({k: _ping_new(s) for k, s in sockets.items()}, args.runs * 2)
        for k, samples in got.items():
            result[f"{k}_ping_new_conn_ms"] = _median_ms(samples)
        result.update(_floors(guest, args.runs * 3))
        code = IN_GUEST % (args.runs * 3 + 3, PING)
        rc, out = guest.run(f"python3 -c {shlex.quote(code)}", timeout=120)
        if rc == 0 and out.strip():
            result["in_guest_ping_keepalive_ms"] = round(float(out) * 1000, 1)
        for verb in ("version", "ps"):
            for k in ("relay", *VARIANTS):
                ratio = medians[f"{k}_docker_{verb}_ms"] / medians[f"host_docker_{verb}_ms"]
                result[f"ratio_{k}_{verb}"] = round(ratio, 2)
        result.update(medians)
        result["load_avg_1min"] = os.getloadavg()[0]
        guest.close()
    finally:
        if served is not None:
            served.terminate()
            served.wait(30)
        proc.terminate()
        proc.wait(30)
        shutil.rmtree(tmp, ignore_errors=True)
        if not args.keep:
            control.remove(args.name, force=True)
    out_json = json.dumps(result, indent=1)
    print(out_json)
    (ROOT / "bench/results").mkdir(parents=True, exist_ok=True)
    (ROOT / "bench/results/vm_relay.json").write_text(out_json)
    return 0


VARIANTS = ("same", "pool", "nopool", "proxy")


def _serve_variants(name: str, tmp: Path) -> int:
    """Serve the comparison relays on their own SSH connection until terminated."""
    import signal

    from guestagent.protocol import ENGINE_SOCKET, api_preamble
    from vmhost import instance, layout
    from vmhost.relay import UnixRelay
    from vmhost.ssh import SSHGuest

    lay = layout.InstanceLayout.named(name)
    guest = SSHGuest(
        host="127.0.0.1",
        port=int(lay.ssh_port.read_text()),
        client_key=lay.client_key,
        host_key_line=instance.host_key_line(lay),
    )
    engine = ENGINE_SOCKET
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})  # for sigwait, in all threads
    relays = {
        "same": UnixRelay(tmp / "same.sock", guest, engine_socket=engine, pool_size=2),
        "pool": UnixRelay(
            tmp / "pool.sock", guest, engine_socket=engine, pool_size=2, preping=False
        ),
        "nopool": UnixRelay(tmp / "nopool.sock", guest, engine_socket=engine),
        "proxy": UnixRelay(
            tmp / "proxy.sock", guest, preamble=api_preamble(lay.host_key.read_bytes())
        ),
    }
    for label, r in relays.items():
        r.start()
        print(label, r.path, flush=True)
    print("ready", flush=True)
    signal.sigwait({signal.SIGTERM})
    for r in relays.values():
        r.close()
    guest.close()
    return 0


def _floors(guest: object, runs: int) -> dict[str, float]:
    """The SSH round trip alone, and /_ping on one kept-alive stream-local channel."""
    from guestagent.protocol import ENGINE_SOCKET
    from vmhost.ssh import SSHGuest

    assert isinstance(guest, SSHGuest)
    echo = guest.open_exec("cat")
    ch = guest.open_unix(ENGINE_SOCKET)

    def rtt() -> None:
        echo.sendall(b"x")
        echo.recv(16)

    def ping() -> None:
        ch.sendall(PING)
        b = b""
        while not b.endswith(b"OK"):
            b += ch.recv(4096)

    got = _alternate({"echo": rtt, "ping": ping}, runs)
    echo.close()
    ch.close()
    return {
        "ssh_channel_echo_rtt_ms": _median_ms(got["echo"]),
        "relay_ping_keepalive_ms": _median_ms(got["ping"]),
    }


if __name__ == "__main__":
    raise SystemExit(main())
