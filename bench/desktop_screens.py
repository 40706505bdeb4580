"""Screenshots of every dashboard page and the tray menu, against a real engine, real data.

    .venv/bin/python bench/desktop_screens.py [OUTDIR] [--vm]

Starts its own Xvfb with trayer as the system tray (Qt on xcb: the tray icon embeds and its
menu is a real popup; packaging/deps.sh test installs both), a private engine
(tests/harness.py, needs root) and Debian's docker-registry on 127.0.0.1 holding one image.
Makes a small Compose-like set of containers (labels as Compose sets them), a volume and a
network, takes one PNG per page (default OUTDIR: build/desktop-shots), pulls the registry's
image in the pull dialog, opens the tray menu, then stops the engine for the banner shot and
removes everything. With ``--vm`` it also boots a Cove VM of its own (``screens-vm``) from
the Engine/VM page, shoots that page while the VM runs, stops and deletes it (~2 min under
TCG). PNGs are squeezed with optipng when it is installed.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.desktop_bench import private_engine  # noqa: E402
from desktop import settings as settings_mod  # noqa: E402
from desktop.app import DesktopApp  # noqa: E402
from desktop.connection import call_client  # noqa: E402
from desktop.qt import (  # noqa: E402
    QApplication,
    QCoreApplication,
    QGuiApplication,
    QMenu,
    QPoint,
    QRect,
    QWidget,
)
from desktop.settings import Settings  # noqa: E402
from desktop.store import EngineState  # noqa: E402
from desktop.tray import TrayController  # noqa: E402
from tests.images.layers import file, tar_bytes  # noqa: E402
from tests.images.registry import Registry, docker_archive, start_registry  # noqa: E402

SIZE = (1180, 720)  # the window's own default width: every column fits
TRAY_HEIGHT = 28

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


def spin_until(cond: Callable[[], bool], timeout: float) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end and not cond():
        QCoreApplication.processEvents()
        time.sleep(0.02)
    return cond()


def shot(widget: QWidget, out: Path, name: str, settle: float = 0.6) -> None:
    spin(settle)
    save(widget.grab(), out, name)


def save(pixmap: Any, out: Path, name: str) -> None:
    path = out / f"{name}.png"
    pixmap.save(str(path))
    if shutil.which("optipng"):
        subprocess.run(["optipng", "-quiet", "-o2", "-strip", "all", str(path)], check=False)
    print("saved", path, f"{path.stat().st_size // 1024} KiB")


@contextlib.contextmanager
def x_display_with_tray() -> Iterator[str]:
    """A private Xvfb and trayer (an XEmbed system tray) on it; Qt is pointed at it."""
    read, write = os.pipe()
    xvfb = subprocess.Popen(["Xvfb", "-displayfd", str(write), "-screen", "0", "1280x800x24",
                             "-nolisten", "tcp"], pass_fds=(write,),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    os.close(write)
    with os.fdopen(read) as f:
        display = ":" + f.readline().strip()
    tray = subprocess.Popen(["trayer", "--edge", "top", "--align", "right", "--widthtype",
                             "pixel", "--width", "120", "--height", str(TRAY_HEIGHT),
                             "--tint", "0x24292f", "--transparent", "true", "--alpha", "0"],
                            env={**os.environ, "DISPLAY": display},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    os.environ["DISPLAY"], os.environ["QT_QPA_PLATFORM"] = display, "xcb"
    try:
        yield display
    finally:
        tray.terminate()
        tray.wait(10)
        xvfb.terminate()
        xvfb.wait(10)


def registry_image(tmp: Path) -> tuple[Registry, str]:
    """docker-registry on loopback with one three-layer image (incompressible data)."""
    reg = start_registry(tmp / "registry")
    layers = [tar_bytes([file(f"app/part{i}", os.urandom(size << 20))])
              for i, size in enumerate((9, 4, 2))]
    archive = tmp / "api.tar"
    docker_archive(archive, layers, Cmd=["sh"])
    reg.push_archive(archive, "shop/api:1.4")
    return reg, f"{reg.host}/shop/api:1.4"


def tray_menu_shot(tray: TrayController, out: Path, submenu: str) -> None:
    """Open the tray menu under the icon, hover one container, grab that corner of the
    screen: the tray strip, the menu and its open submenu, as a user sees them."""
    menu, icon = tray.menu, tray.icon.geometry()
    menu.popup(QPoint(icon.right() - 260, TRAY_HEIGHT + 2))
    spin_until(menu.isVisible, 5)
    spin(0.3)
    sub = next((a for a in menu.actions() if a.text() == submenu), None)
    if sub is not None and shutil.which("xdotool"):
        at = menu.mapToGlobal(menu.actionGeometry(sub).center())
        subprocess.run(["xdotool", "mousemove", "--sync", str(at.x()), str(at.y())],
                       check=False)
        child = sub.menu()
        spin_until(lambda: isinstance(child, QMenu) and child.isVisible(), 3)
    spin(0.5)
    area = menu.geometry()
    for m in menu.findChildren(QMenu):
        if m.isVisible():
            area = area.united(m.geometry())
    screen = QGuiApplication.primaryScreen()
    right = screen.geometry().right()
    region = QRect(area.left() - 12, 0, right - area.left() + 13, area.bottom() + 13)
    save(screen.grabWindow(0, region.x(), region.y(), region.width(), region.height()), out,
         "tray-menu")
    menu.hide()


def main(out: Path, with_vm: bool) -> None:
    out.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="cvshots"))
    os.environ["COVE_DESKTOP_CONFIG"] = str(tmp / "config")
    try:
        with x_display_with_tray():
            app = QApplication.instance() or QApplication(sys.argv[:1])
            engine_shots(out, tmp)
            if with_vm:
                vm_shot(out, tmp)
            del app
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def engine_shots(out: Path, tmp: Path) -> None:
    with contextlib.ExitStack() as stack:
        host = stack.enter_context(private_engine())
        reg, pulled = registry_image(tmp)
        stack.callback(reg.stop)
        ids = populate(host)
        desk = DesktopApp(settings_mod.Settings(host=host))
        desk.start()
        win = desk.window
        win.resize(*SIZE)
        spin(4.0)  # listings, a stats round or two
        view = win.containers
        for name, key in (("logs", "web"), ("inspect", "db"), ("stats", "web")):
            desk.show_logs(ids[key])
            view.details.setCurrentWidget(getattr(view, name))
            shot(win, out, f"containers-{name}", {"inspect": 1.0, "stats": 9.0}.get(name, 3.0))
        desk.show_logs(ids["blog"])
        view.details.setCurrentWidget(view.terminal)
        view.terminal.open_shell()
        spin(1.5)
        for text in ("ls /", "echo hi", "ps"):
            view.terminal._send(text.encode() + b"\r")
            spin(0.5)
        shot(win, out, "containers-terminal")
        view.terminal.close_shell()
        from desktop.views.image_dialogs import PullDialog, RunDialog

        pull = PullDialog(desk.store, win)
        pull.name.setText(pulled)
        pull.show()
        pull.pull_button.click()  # a real pull from the loopback registry
        spin_until(lambda: pull.pull_button.isEnabled(), 60)
        shot(pull, out, "pull-dialog", 0.4)
        pull.reject()
        for page in ("Images", "Volumes", "Networks", "Engine"):
            win.show_page(page)
            shot(win, out, page.lower(), 1.2)
        run = RunDialog(desk.store, "busybox:latest", win)
        run.name.setText("api")
        run.ports.setText("8080:80")
        run.env.setPlainText("MODE=production\nLOG_LEVEL=info")
        run.show()
        shot(run, out, "run-dialog", 0.4)
        run.reject()
        win.show_page("Containers")
        spin(0.5)
        if desk.tray is not None:
            win.hide()  # a tray app's usual state; the shot is the menu on a bare screen
            tray_menu_shot(desk.tray, out, "● shop-web-1")
            win.show()
        else:
            print("no system tray on the display: no tray-menu shot", file=sys.stderr)
        for cid in ids.values():  # containers off, so stopping the engine is quick
            with contextlib.suppress(Exception):
                call_client(host).remove_container(cid, force=True)
        spin(1.0)
        stack.close()  # the engine stops: the banner
        shot(win, out, "banner", 5.0)
        desk.shutdown()
        win.close()


def vm_shot(out: Path, tmp: Path) -> None:
    """The Engine/VM page of a VM booted from the page's own Start button, with a container
    run through the relay; the VM is stopped and deleted afterwards."""
    from vmhost import control, guestimage
    from vmhost.layout import InstanceLayout

    name = "screens-vm"
    os.environ["COVE_VM_HOME"] = str(tmp / "vmhome")
    if not os.environ.get("COVE_GUEST_IMAGE"):
        os.environ["COVE_GUEST_IMAGE"] = str(guestimage.build().root.parent)
    host = "unix://" + str(InstanceLayout.named(name).relay_socket)
    desk = DesktopApp(Settings(host=host, mode="vm", vm_name=name, cpus=2, memory_gib=1,
                               disk_gib=8))
    try:
        desk.start()
        win = desk.window
        win.resize(*SIZE)
        win.show_page("Engine")
        spin(2.0)
        win.engine.start_button.click()
        if not spin_until(lambda: desk.store.state in (EngineState.RUNNING, EngineState.ERROR),
                          400) or desk.store.state != EngineState.RUNNING:
            raise SystemExit(f"the VM did not come up: {desk.store.reason}")
        busybox = tmp / "busybox.tar"
        with open(busybox, "wb") as f:
            subprocess.run(["bash", str(ROOT / "packaging" / "busybox-rootfs.sh")], stdout=f,
                           check=True)
        from runtime.api.client import Client
        from runtime.api.errors import CoveError
        from runtime.api.transport import transport_for

        client = Client(transport_for(host, timeout=120))
        for attempt in range(3):  # right after "ready" the relay has dropped imports (reported)
            try:
                with open(busybox, "rb") as f:
                    list(client.import_image(f, "busybox", "latest"))
                break
            except CoveError as e:
                print(f"import through the relay failed ({e}), attempt {attempt + 1}",
                      file=sys.stderr)
                spin(3.0)
        cid = str(client.create_container({"Image": "busybox", "Cmd": POLITE},
                                          name="hello-vm")["Id"])
        client.start(cid)
        spin(3.0)
        win.engine.load_df()
        win.engine.load_logs()
        shot(win, out, "engine-vm", 3.0)
        win.show_page("Containers")
        shot(win, out, "containers-vm", 2.0)
    finally:
        desk.shutdown()
        with contextlib.suppress(Exception):
            control.remove(name, force=True)


if __name__ == "__main__":
    args = [a for a in sys.argv[1:] if a != "--vm"]
    main(Path(args[0]) if args else ROOT / "build" / "desktop-shots", "--vm" in sys.argv)
