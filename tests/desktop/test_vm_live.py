"""The Engine/VM page against a real VM: Start, Restart and Stop from the page's own buttons.

One boot under TCG (~20-30 s), one restart, one stop, in an instance of its own
(``desktop-vm``, 2 CPUs, 1 GiB, sparse 4 GiB data disk) under a private COVE_VM_HOME; the
instance is deleted at the end. The guest image comes from vmhost's cache (built there on
first use, ~60-80 s). Skips where the VM e2e test skips (same probe).
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from desktop.app import DesktopApp
from desktop.qt import QApplication, QCoreApplication, QEvent
from desktop.settings import Settings
from desktop.store import EngineState
from desktop.views.engine_view import EngineView
from runtime.api.client import Client
from runtime.api.errors import CoveError
from runtime.api.transport import transport_for
from tests.desktop.conftest import wait_until
from tests.vmhost.test_vm_e2e import _why_not as why_no_vm

pytestmark = [pytest.mark.gui, pytest.mark.vm, pytest.mark.root, pytest.mark.timeout(900)]
NAME = "desktop-vm"
BOOT = 300.0  # generous: TCG on a shared 2-core machine; a boot is ~20-30 s when idle


@dataclass
class VMDesk:
    desk: DesktopApp
    host: str
    states: list[str] = field(default_factory=list)  # every engine state the Store went through

    @property
    def page(self) -> EngineView:
        return self.desk.window.engine

    @property
    def state(self) -> EngineState:
        return self.desk.store.state

    def client(self) -> Client:
        # Long timeouts: an import through the relay under TCG takes seconds.
        return Client(transport_for(self.host, timeout=120))

    def since(self, mark: int) -> list[str]:
        """States entered after ``mark`` (the Store emits changes only)."""
        return self.states[mark:]


@pytest.fixture
def vm_desk(qapp: QApplication, tmp_path_factory: pytest.TempPathFactory,
            monkeypatch: pytest.MonkeyPatch) -> Iterator[VMDesk]:
    why = why_no_vm()
    if why:
        pytest.skip(why)
    from vmhost import control, guestimage, instance
    from vmhost.layout import InstanceLayout

    monkeypatch.setenv("COVE_VM_HOME", str(tmp_path_factory.mktemp("vmhome")))
    if not os.environ.get("COVE_GUEST_IMAGE"):  # a built image dir, as the supervisor takes
        image = guestimage.build()  # /var/cache/cove/guest: cached unless runtime/ changed
        monkeypatch.setenv("COVE_GUEST_IMAGE", str(image.root.parent))
    host = "unix://" + str(InstanceLayout.named(NAME).relay_socket)
    settings = Settings(host=host, mode="vm", vm_name=NAME, cpus=2, memory_gib=1, disk_gib=4)
    desk = DesktopApp(settings, use_tray=False)
    vd = VMDesk(desk, host)
    desk.store.state_changed.connect(lambda state, _reason: vd.states.append(state))
    desk.window.resize(1100, 700)
    desk.start()
    desk.window.show_page("Engine")
    try:
        yield vd
    finally:
        desk.shutdown()
        desk.window.close()
        desk.window.deleteLater()
        QCoreApplication.sendPostedEvents(None, QEvent.Type.DeferredDelete)
        with contextlib.suppress(Exception):
            if NAME in instance.names():
                control.remove(NAME, force=True)
        assert NAME not in instance.names()


def _vm_card(page: EngineView) -> tuple[str, list[str]]:
    events = [page.vm_events.item(i).text() for i in range(page.vm_events.count())]
    return page.vm_state.text(), events


def _import_busybox(client: Client, tar: Path) -> None:
    try:
        with open(tar, "rb") as f:
            for msg in client.import_image(f, "busybox", "latest"):
                assert "error" not in msg, msg
    except CoveError as e:  # the relay's side of the story, for whoever reads the failure
        from vmhost.layout import InstanceLayout

        lay = InstanceLayout.named(NAME)
        tail = lay.supervisor_log.read_text(errors="replace")[-2000:]
        raise AssertionError(f"import through the relay failed: {e}\n{tail}") from e


def test_start_restart_stop_a_real_vm(vm_desk: VMDesk, busybox_tar: Path) -> None:
    vd, page = vm_desk, vm_desk.page
    store = vd.desk.store
    # Nothing booted yet: the VM's own words, not a refused socket.
    assert wait_until(lambda: vd.state == EngineState.STOPPED, timeout=15)
    assert store.reason == "the VM has not been started"
    assert page.start_button.isEnabled() and not page.stop_button.isEnabled()

    t0 = time.monotonic()
    mark = len(vd.states)
    page.start_button.click()
    assert vd.state == EngineState.STARTING and not page.start_button.isEnabled()
    assert wait_until(lambda: vd.state == EngineState.RUNNING, timeout=BOOT), store.reason
    assert vd.since(mark) == ["starting", "running"]
    assert page.stop_button.isEnabled() and page.restart_button.isEnabled()
    assert wait_until(lambda: _vm_card(page)[0].startswith("● Running"), timeout=10)
    assert any("ready: Docker API on" in e for e in _vm_card(page)[1])
    took = {"start": time.monotonic() - t0}

    # The containers page fills from the VM's engine: one container run through the relay.
    client = vd.client()
    _import_busybox(client, busybox_tar)
    cid = str(client.create_container({"Image": "busybox", "Cmd": ["sleep", "600"]},
                                      name="through-relay")["Id"])
    client.start(cid)

    def row() -> dict[str, Any]:
        return store.containers.row(cid) or {}

    assert wait_until(lambda: row().get("State") == "running", timeout=60)
    assert row()["Names"] == ["/through-relay"]
    assert wait_until(lambda: any(i.get("RepoTags") == ["busybox:latest"]
                                  for i in store.images.rows()), timeout=30)

    took["container"] = time.monotonic() - t0 - sum(took.values())
    # Restart: down and up again through the page; the data disk keeps the container.
    mark = len(vd.states)
    page.restart_button.click()
    assert vd.state == EngineState.STARTING
    assert wait_until(lambda: vd.state == EngineState.RUNNING, timeout=BOOT), store.reason
    assert vd.since(mark) == ["starting", "running"]
    assert wait_until(lambda: row().get("State") == "exited", timeout=60), row()

    took["restart"] = time.monotonic() - t0 - sum(took.values())
    # Stop: the VM's events say stopped, and so do the page, the banner and the card.
    mark = len(vd.states)
    page.stop_button.click()
    assert wait_until(lambda: vd.state == EngineState.STOPPED, timeout=120), store.reason
    assert "running" not in vd.since(mark)
    assert wait_until(lambda: _vm_card(page)[0].startswith("○ Stopped"), timeout=10)
    assert page.start_button.isEnabled() and not page.stop_button.isEnabled()
    assert vd.desk.window.banner.isVisible()
    # The supervisor's last word once the guest is off; then libvirt agrees.
    assert wait_until(lambda: "the VM is stopped" in _vm_card(page)[0], timeout=120)
    from vmhost import control

    assert control.status(NAME).state == "stopped"
    took["stop"] = time.monotonic() - t0 - sum(took.values())
    print("\nVM page, seconds:", {k: round(v, 1) for k, v in took.items()})
