"""Desktop benchmarks against a real engine: time to window, event latency at 200 containers,
memory while following a chatty container's logs.

    sudo QT_QPA_PLATFORM=offscreen .venv/bin/python bench/desktop_bench.py [--log-seconds 200]
    ... --host unix:///run/cove/engine.sock   # an engine that is already running

Without ``--host`` it starts a private engine (tests/harness.py EngineProcess, needs root),
imports busybox, and removes everything it made when done.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
_APP: list[object] = []  # keeps the QApplication alive across phases
PREFIX = "bench-desk-"

SHOW = """
import sys, time
t0 = float(sys.argv[2])
from desktop.qt import QApplication, QTimer
from desktop import settings
from desktop.app import DesktopApp
app = QApplication(sys.argv[:1])
d = DesktopApp(settings.Settings(host=sys.argv[1]), use_tray=False)
d.start()
def shown():
    print(f"shown {time.time() - t0:.3f}", flush=True)
    d.shutdown()
    app.quit()
QTimer.singleShot(0, shown)  # after the first event-loop pass: the window is on screen
app.exec()
"""


def time_to_window(host: str) -> float:
    """Seconds from launching a fresh interpreter to the window shown (imports included)."""
    with tempfile.TemporaryDirectory() as config:
        env = {**os.environ, "COVE_DESKTOP_CONFIG": config}
        p = subprocess.Popen([sys.executable, "-c", SHOW, host, repr(time.time())], cwd=ROOT,
                             env=env, stdout=subprocess.PIPE, text=True)
        assert p.stdout is not None
        line = p.stdout.readline().split()
        p.wait(20)
    assert line and line[0] == "shown", line
    return float(line[1])


@contextlib.contextmanager
def private_engine() -> Iterator[str]:
    from tests.harness import EngineProcess

    base = Path(tempfile.mkdtemp(prefix="cvbench", dir="/tmp"))
    eng = EngineProcess(base)
    try:
        eng.start()
        tar = base / "busybox.tar"
        with open(tar, "wb") as f:
            subprocess.run(["bash", str(ROOT / "packaging" / "busybox-rootfs.sh")], stdout=f,
                           check=True)
        eng.import_image(tar, "busybox")
        yield eng.url
    finally:
        eng.cleanup()


def _client(host: str) -> Any:
    from desktop.connection import call_client

    return call_client(host)


def _spin_until(cond: Callable[[], bool], timeout: float = 30) -> None:
    from desktop.qt import QCoreApplication

    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not reached")
        QCoreApplication.processEvents()
        time.sleep(0.001)


def event_latency(host: str, n: int = 200, rounds: int = 40) -> dict[str, float]:
    """n created containers in a real ContainersView; time real engine events.

    ``apply``: from the pump delivering an event to the UI thread until the handler and the
    repaint it causes are done (what the user waits for once the engine has spoken).
    ``end_to_end``: from ``client.start`` returning to the row showing "running".
    """
    from desktop.qt import QApplication, QCoreApplication
    from desktop.store import EngineState, Store
    from desktop.tasks import TaskRunner
    from desktop.views.containers_view import ContainersView

    _APP.append(QApplication.instance() or QApplication(sys.argv[:1]))
    client = _client(host)
    ids = [str(client.create_container({"Image": "busybox", "Cmd": ["sleep", "600"]},
                                       name=f"{PREFIX}{i:03d}")["Id"]) for i in range(n)]
    runner = TaskRunner()
    store = Store(host, runner)
    view = ContainersView(store)
    view.resize(1180, 720)
    view.show()
    applied: list[float] = []
    real_apply = store.apply_event

    cpu: list[float] = []  # thread CPU time: what the UI thread spent, minus other load

    def timed_apply(event: dict[str, Any]) -> None:
        t, c = time.perf_counter(), time.thread_time()
        real_apply(event)
        view.table.viewport().repaint()  # the paint the event causes, synchronously
        applied.append(time.perf_counter() - t)
        cpu.append(time.thread_time() - c)

    store._pump.received.disconnect(real_apply)
    store._pump.received.connect(timed_apply)
    listings: list[float] = []
    real_got = store._got_containers

    def timed_listing(rows: list[dict[str, Any]]) -> None:
        t = time.perf_counter()
        real_got(rows)
        view.table.viewport().repaint()
        listings.append(time.perf_counter() - t)

    store._got_containers = timed_listing  # type: ignore[method-assign]
    store.start()
    _spin_until(lambda: store.state == EngineState.RUNNING and store.containers.rowCount() >= n)
    QCoreApplication.processEvents()
    t = time.perf_counter()
    view.table.viewport().repaint()
    settle = time.perf_counter() - t
    end_to_end: list[float] = []
    for i in range(rounds):
        cid = ids[i // 2]  # start one created container, then kill it; then the next
        done = threading.Event()
        box: list[float] = []
        want = "running" if i % 2 == 0 else "exited"

        def act(cid: str = cid, want: str = want, box: list[float] = box,
                done: threading.Event = done) -> None:
            if want == "running":
                client.start(cid)
            else:
                client.kill(cid)
            box.append(time.perf_counter())
            done.set()

        def shown(cid: str = cid, want: str = want, done: threading.Event = done) -> bool:
            return done.is_set() and (store.containers.row(cid) or {}).get("State") == want

        threading.Thread(target=act, daemon=True).start()
        _spin_until(shown)
        end_to_end.append(time.perf_counter() - box[0])
    time.sleep(0.3)
    QCoreApplication.processEvents()
    view.shutdown()
    store.close()
    runner.shutdown()
    for cid in ids:
        with contextlib.suppress(Exception):
            client.remove_container(cid, force=True)
    ms = [a * 1000 for a in applied]
    e2e = [a * 1000 for a in end_to_end]
    return {"events": len(ms), "apply_mean": statistics.mean(ms), "apply_p95": _p95(ms),
            "apply_max": max(ms), "apply_first": ms[0], "listing": listings[0] * 1000,
            "settle": settle * 1000, "cpu_mean": statistics.mean(cpu) * 1000,
            "cpu_max": max(cpu) * 1000,
            "e2e_mean": statistics.mean(e2e), "e2e_max": max(e2e)}


def _p95(xs: list[float]) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, int(len(s) * 0.95))]


def rss_kib() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


CHATTY = ("while true; do i=0; while [ $i -lt 100 ]; do echo \"out $i GET /api/items 200\"; "
          "echo \"err $i slow query took 12ms\" >&2; i=$((i+1)); done; sleep 0.1; done")


def log_memory(host: str, seconds: float) -> dict[str, float]:
    """Follow a container writing ~2000 lines/s (stdout+stderr) in a LogsView; RSS slope."""
    from desktop.qt import QApplication, QCoreApplication
    from desktop.views.logs_view import LogsView

    _APP.append(QApplication.instance() or QApplication(sys.argv[:1]))
    client = _client(host)
    cid = str(client.create_container({"Image": "busybox", "Cmd": ["sh", "-c", CHATTY]},
                                      name=PREFIX + "chatty")["Id"])
    client.start(cid)
    view = LogsView(host)
    view.resize(900, 500)
    view.show()
    lines = [0]
    real_append = view.append

    def counting(chunks: list[tuple[int, bytes]]) -> None:
        lines[0] += sum(c[1].count(b"\n") for c in chunks)
        real_append(chunks)

    view.append = counting  # type: ignore[method-assign]
    view.set_container(cid)
    samples: list[tuple[float, int]] = []
    t0 = time.monotonic()
    try:
        while (now := time.monotonic()) - t0 < seconds:
            QCoreApplication.processEvents()
            time.sleep(0.02)
            if not samples or now - t0 - samples[-1][0] >= 1.0:
                samples.append((now - t0, rss_kib()))
    finally:
        view.stop()
        client.remove_container(cid, force=True)
    warm = [s for s in samples if s[0] >= min(60.0, seconds / 3)]  # skip warm-up
    n = len(warm)
    mx, my = sum(t for t, _ in warm) / n, sum(m for _, m in warm) / n
    var = max(1e-9, sum((t - mx) ** 2 for t, _ in warm))
    slope = sum((t - mx) * (m - my) for t, m in warm) / var
    return {"seconds": seconds, "lines": lines[0], "rss_start": samples[0][1],
            "rss_warm": warm[0][1], "rss_end": samples[-1][1], "rss_max": max(m for _, m in warm),
            "slope_kib_per_min": slope * 60}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--host", help="an engine already running (default: start a private one)")
    ap.add_argument("--log-seconds", type=float, default=200)
    ap.add_argument("--containers", type=int, default=200)
    args = ap.parse_args()
    with contextlib.ExitStack() as stack:
        host = args.host or stack.enter_context(private_engine())
        shown = [time_to_window(host) for _ in range(3)]
        absent = time_to_window("unix:///nonexistent/e.sock")
        print(f"window shown: {min(shown):.2f}-{max(shown):.2f} s with the engine up "
              f"(3 launches), {absent:.2f} s with it absent")
        r = event_latency(host, args.containers)
        print(f"events at {args.containers} containers ({r['events']:.0f} real events): "
              f"apply+repaint mean {r['apply_mean']:.2f} ms, p95 {r['apply_p95']:.2f} ms, "
              f"worst {r['apply_max']:.2f} ms, first {r['apply_first']:.2f} ms (UI-thread CPU "
              f"mean {r['cpu_mean']:.2f} ms, worst {r['cpu_max']:.2f} ms); "
              f"first listing applied+painted {r['listing']:.1f} ms, next repaint "
              f"{r['settle']:.1f} ms; "
              f"start/kill -> row updated mean {r['e2e_mean']:.1f} ms, worst {r['e2e_max']:.1f} ms")
        m = log_memory(host, args.log_seconds)
        print(f"log follow {m['seconds']:.0f} s, {m['lines']:.0f} lines "
              f"({m['lines'] / m['seconds']:.0f}/s): RSS {m['rss_start']:.0f} -> "
              f"{m['rss_warm']:.0f} (warm) -> {m['rss_end']:.0f} KiB, max {m['rss_max']:.0f}; "
              f"slope after warm-up {m['slope_kib_per_min']:.0f} KiB/min")


if __name__ == "__main__":
    main()
