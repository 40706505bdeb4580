"""Shared helpers for the benchmarks: start engines side by side, time commands, read PSS.

Benchmarks report ratios of medians measured in one run on one machine; they
never assert on time. Every engine they start gets its own temporary roots and
is stopped at the end.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.harness import EngineProcess  # noqa: E402

COVE = str(ROOT / ".venv" / "bin" / "cove")
DOCKER_CLI = shutil.which("docker") or "docker"


def median_seconds(argv: Sequence[str], runs: int, env: dict[str, str] | None = None,
                   warmup: int = 1) -> float:
    times = []
    for i in range(warmup + runs):
        started = time.perf_counter()
        subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, env=env)
        if i >= warmup:
            times.append(time.perf_counter() - started)
    return statistics.median(times)


def pss_kib(pids: Sequence[int]) -> int:
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    total += int(line.split()[1])
    return total


def rss_kib(pids: Sequence[int]) -> int:
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
    return total


def pids_by_name(*names: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                comm = (entry / "comm").read_text().strip()
                if comm in names:
                    found.append(int(entry.name))
    return found


def compile_bytecode() -> None:
    """Write our modules' .pyc files, as an installed package has them (pip and dpkg compile
    at install time). Without this, a PYTHONDONTWRITEBYTECODE environment makes every
    ``cove`` run, the engine and its helpers recompile every module they import."""
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(ROOT / "runtime")],
                   check=True, stdout=subprocess.DEVNULL)


class BenchEngine(EngineProcess):
    """The test harness's engine, with its ``--debug`` flag only when asked."""

    def __init__(self, base: Path, debug: bool) -> None:
        super().__init__(base)
        self._debug = debug

    def argv(self) -> list[str]:
        argv = super().argv()
        return argv if self._debug else [a for a in argv if a != "--debug"]


@contextlib.contextmanager
def cove_engine(busybox_tar: Path, debug: bool = False) -> Iterator[EngineProcess]:
    """A private engine with busybox imported; without ``--debug`` unless asked, as
    dockerd runs without ``-D`` (a log line per request is not free)."""
    compile_bytecode()
    eng = BenchEngine(Path(tempfile.mkdtemp(prefix="cove-bench-")), debug)
    try:
        eng.start()
        eng.import_image(busybox_tar, "busybox")
        yield eng
    finally:
        eng.cleanup()


class Dockerd:
    def __init__(self, base: Path, bridge_ip: str | None = None) -> None:
        self.base = base
        # None: no bridge, no iptables (the host's firewall is left alone).
        self.bridge_ip = bridge_ip
        self.socket = str(base / "docker.sock")
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def host(self) -> str:
        return "unix://" + self.socket

    def start(self) -> None:
        log = open(self.base / "dockerd.log", "ab")  # noqa: SIM115 - lives as long as dockerd
        self.proc = subprocess.Popen(
            ["dockerd", "--data-root", str(self.base / "data"), "--exec-root",
             str(self.base / "exec"), "-H", self.host, "--pidfile", str(self.base / "d.pid"),
             *self._network_flags(),
             "--containerd-namespace", "covebench", "--storage-driver", "overlay2"],
            stdout=log, stderr=log, start_new_session=True)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if subprocess.run([DOCKER_CLI, "-H", self.host, "version"], capture_output=True,
                              check=False).returncode == 0:
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.5)
        log_text = (self.base / "dockerd.log").read_text()[-2000:]
        raise RuntimeError("dockerd did not start: " + log_text)

    def _network_flags(self) -> list[str]:
        if self.bridge_ip is None:
            return ["--bridge", "none", "--iptables=false", "--ip6tables=false"]
        return ["--bip", self.bridge_ip, "--iptables=true", "--ip6tables=false"]

    def stop(self) -> None:
        subprocess.run(f"{DOCKER_CLI} -H {self.host} rm -f $({DOCKER_CLI} -H {self.host} ps -aq)",
                       shell=True, capture_output=True, check=False)
        if self.proc is not None:
            self.proc.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=30)
        subprocess.run(["umount", "-R", str(self.base)], capture_output=True, check=False)
        shutil.rmtree(self.base, ignore_errors=True)


@contextlib.contextmanager
def dockerd(busybox_tar: Path, bridge_ip: str | None = None) -> Iterator[Dockerd | None]:
    if not shutil.which("dockerd"):
        yield None
        return
    d = Dockerd(Path(tempfile.mkdtemp(prefix="dockerd-bench-")), bridge_ip)
    try:
        d.start()
        subprocess.run([DOCKER_CLI, "-H", d.host, "import", "--change", 'CMD ["sh"]',
                        str(busybox_tar), "busybox:latest"], check=True, capture_output=True)
        yield d
    finally:
        d.stop()


def busybox_tarball() -> Path:
    """The busybox rootfs every benchmark imports: one file in the temp dir, rebuilt by each
    run (it is quick) and renamed into place, so runs leave no tarballs behind."""
    out = Path(tempfile.gettempdir()) / "cove-bench-busybox.tar"
    tmp = out.with_name(f".{out.name}.{os.getpid()}")
    with open(tmp, "wb") as f:
        subprocess.run(["bash", str(ROOT / "packaging" / "busybox-rootfs.sh")], stdout=f,
                       check=True)
    os.replace(tmp, out)
    return out


def report(title: str, rows: list[tuple[str, float, float | None]], unit: str) -> None:
    print(f"\n## {title}")
    print(f"| measure | cove ({unit}) | docker ({unit}) | ratio cove/docker |")
    print("| --- | --- | --- | --- |")
    for name, cove, other in rows:
        ratio = f"{cove / other:.2f}" if other else "n/a"
        other_s = f"{other:.3f}" if other is not None else "n/a"
        print(f"| {name} | {cove:.3f} | {other_s} | {ratio} |")


def env_without_docker_host() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("DOCKER_HOST", None)
    return env
