"""Screenshots of every dashboard page against a real engine with real data.

    xvfb-run -a -s "-screen 0 1400x900x24" .venv/bin/python bench/desktop_screens.py [OUTDIR]

Starts a private engine (tests/harness.py, needs root), makes a small Compose-like set of
containers (labels as Compose sets them), a volume and a network, takes one PNG per page
(default OUTDIR: build/desktop-shots), then stops the engine for the banner shot and
removes everything.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.desktop_bench import private_engine  # noqa: E402
from desktop import settings as settings_mod  # noqa: E402
from desktop.app import DesktopApp  # noqa: E402
from desktop.connection import call_client  # noqa: E402
from desktop.qt import QApplication, QCoreApplication, QWidget  # noqa: E402

CHATTY = ("i=0; while true; do echo \"$(date +%T) GET /api/items?page=$i 200 3ms\"; "
          "[ $((i % 4)) = 0 ] && echo \"$(date +%T) WARN slow upstream: 812ms\" >&2; "
          "i=$((i+1)); sleep 0.4; done")
POLITE = ["sh", "-c", "trap 'exit 0' TERM; while true; do sleep 1; done"]


def spin(seconds: float) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        QCoreApplication.processEvents()
        time.sleep(0.01)


def compose(project: str, service: str) -> dict[str, str]:
    return {"com.docker.compose.project": project, "com.docker.compose.service": service,
            "com.docker.compose.container-number": "1"}


def populate(host: str) -> dict[str, str]:
    c = call_client(host)
    c.create_volume({"Name": "shop_dbdata"})
    c.create_network({"Name": "shop_default", "Driver": "bridge"})

    def run(name: str, cmd: list[str], start: bool = True, **extra: Any) -> str:
        cid = str(c.create_container({"Image": "busybox", "Cmd": cmd, **extra}, name=name)["Id"])
        if start:
            c.start(cid)
        return cid

    web_ports: dict[str, Any] = {"ExposedPorts": {"80/tcp": {}},
                 "HostConfig": {"PortBindings": {"80/tcp": [{"HostPort": "18080"}]}}}
    ids = {
        "web": run("shop-web-1", ["sh", "-c", CHATTY], Labels=compose("shop", "web"),
                   **web_ports),
        "db": run("shop-db-1", POLITE, Labels=compose("shop", "db"),
                  HostConfig={"Binds": ["shop_dbdata:/var/lib/db"],
                              "NetworkMode": "shop_default"}),
        "cache": run("shop-cache-1", POLITE, Labels=compose("shop", "cache")),
        "blog": run("blog", POLITE, ExposedPorts={"8081/tcp": {}},
                    HostConfig={"PortBindings": {"8081/tcp": [{"HostPort": "18081"}]}}),
        "migrate": run("migrate", ["sh", "-c", "echo migrated 12 tables"]),
        "draft": run("draft", POLITE, start=False),
    }
    c.pause(ids["cache"])
    return ids


def shot(widget: QWidget, out: Path, name: str, settle: float = 0.6) -> None:
    spin(settle)
    widget.grab().save(str(out / f"{name}.png"))
    print("saved", out / f"{name}.png")


def main(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    os.environ["COVE_DESKTOP_CONFIG"] = tempfile.mkdtemp()
    with contextlib.ExitStack() as stack:
        host = stack.enter_context(private_engine())
        ids = populate(host)
        app = QApplication.instance() or QApplication(sys.argv[:1])
        desk = DesktopApp(settings_mod.Settings(host=host))
        desk.start()
        win = desk.window
        win.resize(1280, 800)
        spin(4.0)  # listings, a stats round or two
        view = win.containers
        for name, key in (("logs", "web"), ("inspect", "db"), ("stats", "web")):
            desk.show_logs(ids[key])
            view.details.setCurrentWidget(getattr(view, name))
            shot(win, out, f"containers-{name}", 3.0 if name != "inspect" else 1.0)
        desk.show_logs(ids["blog"])
        view.details.setCurrentWidget(view.terminal)
        view.terminal.open_shell()
        spin(1.5)
        for text in ("ls /", "echo hi", "ps"):
            view.terminal._send(text.encode() + b"\r")
            spin(0.5)
        shot(win, out, "containers-terminal")
        view.terminal.close_shell()
        for page in ("Images", "Volumes", "Networks", "Engine"):
            win.show_page(page)
            shot(win, out, page.lower(), 1.2)
        if desk.tray is not None:
            desk.tray.rebuild()
        from desktop.views.image_dialogs import PullDialog, RunDialog

        run = RunDialog(desk.store, "busybox:latest", win)
        run.name.setText("api")
        run.ports.setText("8080:80")
        run.env.setPlainText("MODE=production\nLOG_LEVEL=info")
        run.show()
        shot(run, out, "run-dialog", 0.4)
        run.reject()
        pull = PullDialog(desk.store, win)
        pull.name.setText("127.0.0.1:5000/library/alpine:3.20")
        pull.show()
        shot(pull, out, "pull-dialog", 0.4)
        pull.reject()
        win.show_page("Containers")
        spin(0.5)
        for cid in ids.values():  # containers off, so stopping the engine is quick
            with contextlib.suppress(Exception):
                call_client(host).remove_container(cid, force=True)
        spin(1.0)
        stack.close()  # the engine stops: the banner
        shot(win, out, "banner", 5.0)
        desk.shutdown()
        del app


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "build" / "desktop-shots")
