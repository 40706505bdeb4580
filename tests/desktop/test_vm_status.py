"""The VM card and state: events.jsonl as vmhost's supervisor writes it (vmhost.events)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from desktop.control import VMEngine, describe_vm_event, read_vm_events, vm_status
from desktop.qt import QApplication
from desktop.settings import Settings
from desktop.store import Store
from desktop.tasks import InlineTaskRunner
from desktop.views.engine_view import EngineView
from vmhost.events import EventLog
from vmhost.layout import InstanceLayout

pytestmark = pytest.mark.gui


def boot(log: EventLog) -> None:
    """The supervisor's boot sequence (vmhost/supervisor.py Supervisor.boot)."""
    log.emit("starting", image="abc123", t=0.4)
    log.emit("vm-started", pid=4242, accel="kvm", t=1.9)
    log.emit("ssh-ready", port=40022, t=6.1)
    log.emit("engine-ready", t=7.0)
    log.emit("ready", socket="/tmp/cove-x.sock", t=7.1)


def test_states_follow_the_supervisor_events(tmp_path: Path) -> None:
    events, pidfile = tmp_path / "events.jsonl", tmp_path / "supervisor.pid"
    assert vm_status(events, pidfile) == ("stopped", "the VM has not been started")
    log = EventLog(events)
    log.emit("starting", image="abc123", t=0.4)
    pidfile.write_text(f"{os.getpid()}\n")
    assert vm_status(events, pidfile) == ("starting", "preparing the guest image")
    boot(log)
    assert vm_status(events, pidfile)[0] == "running"
    log.emit("port-forward-open", port=8080)
    assert vm_status(events, pidfile)[0] == "running"
    log.emit("engine-down")
    assert vm_status(events, pidfile) == ("error", "the engine inside the VM is down")
    log.emit("engine-up")
    assert vm_status(events, pidfile)[0] == "running"
    log.emit("error", message="vm stopped unexpectedly")
    assert vm_status(events, pidfile) == ("error", "vm stopped unexpectedly")
    log.emit("stopped")
    assert vm_status(events, pidfile)[0] == "stopped"


def test_dead_supervisor_means_stopped(tmp_path: Path) -> None:
    events, pidfile = tmp_path / "events.jsonl", tmp_path / "supervisor.pid"
    boot(EventLog(events))
    state, reason = vm_status(events, pidfile)  # no pid file: the supervisor is gone
    assert state == "stopped" and "last event: ready" in reason
    pidfile.write_text("999999999\n")
    assert vm_status(events, pidfile)[0] == "stopped"
    with open(events, "a") as f:
        f.write('{"kind": "ready", "ti')  # a torn last line is skipped
    pidfile.write_text(f"{os.getpid()}\n")
    assert vm_status(events, pidfile)[0] == "running"


def test_event_descriptions(tmp_path: Path) -> None:
    events = tmp_path / "events.jsonl"
    log = EventLog(events)
    boot(log)
    log.emit("port-forward-failed", message="address in use", port=80)
    log.emit("clock-resync", jump=31.5)
    text = [describe_vm_event(e) for e in read_vm_events(events)]
    assert text[1] == "VM booted, waiting for SSH (kvm) after 1.9 s"
    assert text[4] == "ready: Docker API on /tmp/cove-x.sock after 7.1 s"
    assert text[5] == "port forward failed :80: address in use"
    assert text[6] == "clock resynced after a 31.5 s jump"


def test_engine_view_vm_card(qapp: QApplication, tmp_path: Path,
                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COVE_VM_HOME", str(tmp_path))
    lay = InstanceLayout.named("default")
    lay.dir.mkdir(parents=True)
    boot(EventLog(lay.events))
    lay.supervisor_pid.write_text(f"{os.getpid()}\n")
    settings = Settings(host="unix:///nonexistent/e.sock", mode="vm")
    runner = InlineTaskRunner()
    store = Store(settings.host, runner)
    view = EngineView(store, VMEngine(settings), settings)
    view.load_vm()
    assert view.vm_state.text().startswith("● Running")
    items = [view.vm_events.item(i).text() for i in range(view.vm_events.count())]
    assert items[0].endswith("ready: Docker API on /tmp/cove-x.sock after 7.1 s")  # newest first
    assert len(items) == 5
    store.close()
    runner.shutdown()
