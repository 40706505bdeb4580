"""Screenshots of the dashboard pages against canned data (a tiny Unix-socket HTTP server).

    xvfb-run -a python bench/desktop_screens.py OUTDIR
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from desktop import settings as settings_mod
from desktop.app import DesktopApp
from desktop.qt import QApplication, QCoreApplication
from tests.desktop import swagger
from tests.desktop.httpd import TinyServer


def spin(seconds: float) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        QCoreApplication.processEvents()
        time.sleep(0.01)


def main(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    os.environ["COVE_DESKTOP_CONFIG"] = tempfile.mkdtemp()
    sock = tempfile.mkdtemp(prefix="cvs") + "/e.sock"
    server = TinyServer(sock)
    web = [{"IP": "0.0.0.0", "PrivatePort": 80, "PublicPort": 8080, "Type": "tcp"}]
    server.routes["/containers/json"] = [
        swagger.container("a1", "shop-web-1", project="shop", ports=web),
        swagger.container("a2", "shop-db-1", project="shop"),
        swagger.container("a3", "shop-cache-1", state="paused", project="shop"),
        swagger.container("b1", "blog", ports=[{**web[0], "PublicPort": 8081}]),
        swagger.container("b2", "migrate", state="exited"),
    ]
    server.routes["/images/json"] = [swagger.IMAGE_SUMMARY]
    server.routes["/volumes"] = {"Volumes": [swagger.VOLUME]}
    server.routes["/networks"] = [swagger.NETWORK]
    server.routes["/system/df"] = {"LayersSize": 172064416, "Images": [swagger.IMAGE_SUMMARY],
                                   "Containers": server.routes["/containers/json"],
                                   "Volumes": [swagger.VOLUME]}
    server.routes["/containers/a1/json"] = {"Id": "a1", "Name": "/shop-web-1",
                                            "State": {"Status": "running", "Pid": 42},
                                            "Config": {"Env": ["A=1"], "Image": "nginx"}}
    app = QApplication.instance() or QApplication(sys.argv[:1])
    s = settings_mod.Settings(host="unix://" + sock)
    desk = DesktopApp(s)
    desk.start()
    spin(1.0)
    win = desk.window
    win.containers.table.selectRow(0)
    win.containers.details.setCurrentWidget(win.containers.inspect)
    spin(0.6)
    win.grab().save(str(out / "containers.png"))
    for page in ("Images", "Volumes", "Engine"):
        win.show_page(page)
        spin(0.4)
        win.grab().save(str(out / f"{page.lower()}.png"))
    win.show_page("Containers")
    win.containers.details.setCurrentWidget(win.containers.terminal)
    win.containers.terminal.term.feed(b"/ # ls\r\n\x1b[1;34mbin\x1b[0m   dev   etc   "
                                      b"\x1b[1;34mhome\x1b[0m  proc  root\r\n"
                                      b"/ # echo hi\r\nhi\r\n/ # ")
    spin(0.3)
    win.grab().save(str(out / "terminal.png"))
    server.stop()
    spin(2.0)
    win.grab().save(str(out / "banner.png"))
    desk.shutdown()
    print("tray available:", desk.tray_available)
    del app


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "/tmp/cove-shots"))
