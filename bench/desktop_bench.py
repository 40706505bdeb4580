"""Desktop benchmarks: time to window, event apply latency at 200 rows, log-follow memory.

    QT_QPA_PLATFORM=offscreen python bench/desktop_bench.py [--log-seconds N]

Runs against a tiny Unix-socket HTTP server with canned listings until the
engine works end to end (then point --host at a real engine for the first two).
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
_APP: list[object] = []  # keeps the QApplication alive across phases
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SHOW = """
import sys, time
from desktop.qt import QApplication, QTimer
from desktop import settings
from desktop.app import DesktopApp
app = QApplication(sys.argv[:1])
d = DesktopApp(settings.Settings(host=sys.argv[1]), use_tray=False)
d.start()
QTimer.singleShot(0, lambda: (print("shown", flush=True), d.shutdown(), app.quit()))
app.exec()
"""


def time_to_window(host: str) -> float:
    env = {**os.environ, "COVE_DESKTOP_CONFIG": tempfile.mkdtemp()}
    t0 = time.monotonic()
    p = subprocess.Popen([sys.executable, "-c", SHOW, host], cwd=ROOT, env=env,
                         stdout=subprocess.PIPE, text=True)
    assert p.stdout is not None
    line = p.stdout.readline()
    elapsed = time.monotonic() - t0
    p.wait(10)
    assert line.strip() == "shown", line
    return elapsed


def event_apply(n: int = 200) -> tuple[float, float]:
    from desktop.qt import QApplication, QCoreApplication
    from desktop.store import Store
    from desktop.tasks import TaskRunner
    from desktop.views.containers_view import ContainersView
    from tests.desktop import swagger
    from tests.desktop.httpd import TinyServer

    _APP.append(QApplication.instance() or QApplication(sys.argv[:1]))
    sock = tempfile.mkdtemp(prefix="cvb") + "/e.sock"
    server = TinyServer(sock)
    server.routes["/containers/json"] = [
        swagger.container(f"c{i:04d}", f"box-{i}", state="created") for i in range(n)]
    store = Store("unix://" + sock, TaskRunner())
    view = ContainersView(store)  # a real view on the proxy: its sorting is part of the cost
    view.resize(1100, 700)
    view.show()
    store.start()
    while store.containers.rowCount() < n:
        QCoreApplication.processEvents()
    worst = total = 0.0
    for i in range(50):
        action = "start" if i % 2 == 0 else "die"
        t = time.perf_counter()
        store.apply_event(swagger.event(action, f"c{i:04d}", exitCode="0"))
        QCoreApplication.processEvents()
        dt = time.perf_counter() - t
        worst, total = max(worst, dt), total + dt
    store.close()
    server.stop()
    return total / 50 * 1000, worst * 1000


def rss_kib() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def log_memory(seconds: float) -> tuple[float, int, int]:
    """Feed a LogsView 2000 lines/s (stdout+stderr) and fit RSS over time: KiB/min."""
    from desktop.qt import QApplication, QCoreApplication
    from desktop.views.logs_view import LogsView

    _APP.append(QApplication.instance() or QApplication(sys.argv[:1]))
    view = LogsView("unix:///nonexistent")
    view.show()
    samples: list[tuple[float, int]] = []
    t0 = time.monotonic()
    i = 0
    while (now := time.monotonic()) - t0 < seconds:
        batch = [(1 + (j % 2), f"{i + j} GET /api/items?page={j} 200 1.2ms\n".encode())
                 for j in range(200)]
        view.append(batch)
        i += 200
        QCoreApplication.processEvents()
        time.sleep(0.1)
        if not samples or now - samples[-1][0] >= 1.0:
            samples.append((now - t0, rss_kib()))
    half = samples[len(samples) // 3:]  # skip warm-up (fonts, first layout)
    n = len(half)
    mx, my = sum(t for t, _ in half) / n, sum(m for _, m in half) / n
    var = max(1e-9, sum((t - mx) ** 2 for t, _ in half))
    slope = sum((t - mx) * (m - my) for t, m in half) / var
    return slope * 60, samples[0][1], samples[-1][1]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--log-seconds", type=float, default=30)
    args = ap.parse_args()
    print(f"window shown (engine absent): {time_to_window('unix:///nonexistent/e.sock'):.2f} s")
    mean, worst = event_apply()
    print(f"event apply, 200 containers: mean {mean:.2f} ms, worst {worst:.2f} ms")
    slope, first, last = log_memory(args.log_seconds)
    print(f"log follow {args.log_seconds:.0f}s @2000 lines/s: RSS {first}->{last} KiB, "
          f"slope {slope:.0f} KiB/min after warm-up")


if __name__ == "__main__":
    main()
