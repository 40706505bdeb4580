"""The tray on a real system tray: Xvfb + trayer (an XEmbed tray host), Qt on xcb.

The app runs in a child process (tests/desktop/tray_session.py: one Qt platform per
process), against the session's real engine; this side checks its report against the
engine. Skips only when Xvfb, trayer or xdotool is missing (packaging/deps.sh test).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from desktop.connection import call_client
from runtime.api.client import Client

pytestmark = [pytest.mark.gui, pytest.mark.root, pytest.mark.timeout(180)]
ROOT = Path(__file__).resolve().parents[2]
POLITE = ["sh", "-c", "trap 'exit 0' TERM; while true; do sleep 1; done"]
TOOLS = {"Xvfb": "xvfb", "trayer": "trayer", "xdotool": "xdotool"}


def _missing() -> str | None:
    for tool, package in TOOLS.items():
        if shutil.which(tool) is None:
            return f"{tool} not installed (Debian package {package}; packaging/deps.sh test)"
    return None


@pytest.fixture
def display() -> Iterator[str]:
    """A private Xvfb; -displayfd picks a free display number and says which."""
    why = _missing()
    if why:
        pytest.skip(why)
    read, write = os.pipe()
    xvfb = subprocess.Popen(["Xvfb", "-displayfd", str(write), "-screen", "0", "1024x768x24",
                             "-nolisten", "tcp"], pass_fds=(write,),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    os.close(write)
    try:
        with os.fdopen(read) as f:
            number = f.readline().strip()
        assert number, "Xvfb did not report a display"
        yield f":{number}"
    finally:
        xvfb.terminate()
        xvfb.wait(10)


@pytest.fixture
def tray_host(display: str) -> Iterator[None]:
    proc = subprocess.Popen(["trayer", "--edge", "top", "--align", "right", "--widthtype",
                             "pixel", "--width", "120", "--height", "28"],
                            env={**os.environ, "DISPLAY": display},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        yield
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.fixture
def client(engine: Any) -> Iterator[Client]:
    c = call_client(engine.url)
    made: list[str] = []
    yield c
    for row in c.containers(all=True):
        if any(n.startswith("/dsk-tray-") for n in row.get("Names") or []):
            made.append(str(row["Id"]))
    for cid in made:
        c.remove_container(cid, force=True)


def session(mode: str, display: str, host: str, *names: str) -> dict[str, Any]:
    env = {**os.environ, "DISPLAY": display, "QT_QPA_PLATFORM": "xcb"}
    out = subprocess.run([sys.executable, "-m", "tests.desktop.tray_session", mode, host,
                          *names], cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=120, check=False)
    assert out.returncode == 0, out.stderr[-3000:]
    report: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return report


def test_tray_icon_and_menu_on_a_real_tray(engine: Any, client: Client, display: str,
                                           tray_host: None) -> None:
    names = ["dsk-tray-a", "dsk-tray-b"]
    stopped = "dsk-tray-old"
    for name in [*names, stopped]:
        client.create_container({"Image": "busybox", "Cmd": POLITE}, name=name)
        client.start(name)
    client.stop(stopped, timeout=5)
    restarted_before = client.inspect_container(names[1])["State"]["StartedAt"]

    r = session("tray", display, engine.url, *names)

    assert r["tray_available"] and r["app_tray"]
    x, y, w, h = r["icon_geometry"]
    # Inside trayer's strip: 120 px wide, 28 high, top right of the 1024 px wide screen.
    assert w > 0 and h > 0 and x >= 1024 - 120 and y < 28, r["icon_geometry"]
    assert r["window_visible"]
    # The menu, as the right click opened it: state, action, the running containers.
    assert r["menu_first"][:2] == ["Engine: running", "Stop engine"]
    assert r["menu_first"][-2:] == ["Open dashboard", "Quit Cove (containers keep running)"]
    subs = r["submenus_first"]
    for name in names:
        assert subs[f"● {name}"] == ["Stop", "Restart", "Show logs", "Copy ID"]
    assert f"● {stopped}" not in subs
    assert f"Start {stopped}" in subs["Recently stopped"]
    # The click on Stop stopped it, in the engine; the reopened menu was rebuilt.
    assert client.inspect_container(names[0])["State"]["Status"] == "exited"
    subs = r["submenus_second"]
    assert f"● {names[0]}" not in subs and f"● {names[1]}" in subs
    assert f"Start {names[0]}" in subs["Recently stopped"]
    # Restart from the open menu's QAction: running again, started anew.
    state = client.inspect_container(names[1])["State"]
    assert r["restarted_from"] == restarted_before
    assert state["Status"] == "running" and state["StartedAt"] != restarted_before


def test_without_a_tray_the_app_is_a_window_that_quits(engine: Any, display: str) -> None:
    r = session("no-tray", display, engine.url)
    assert not r["tray_available"] and not r["app_tray"]
    assert r["window_visible"]
    assert r["status_bar"].startswith("No system tray on this desktop")
    assert r["quit_on_last_window"]
    assert r["exec_exit"] == 0  # closing the window ended the app (3 would be the timeout)
