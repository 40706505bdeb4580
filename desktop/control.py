"""Start/stop the engine (a local daemon) or the Cove VM, from the desktop.

All methods block (they spawn or signal processes) and are called through the
TaskRunner. ``start`` is idempotent: it returns at once when already running,
and the app learns about readiness from the EventPump connecting, not from here.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import platformdirs

from desktop.settings import Settings
from runtime.api.errors import CoveError
from runtime.layout import DEFAULT_EXEC_ROOT, ENGINE_PID
from vmhost.events import VMEvent
from vmhost.layout import InstanceLayout


class EngineControl(Protocol):
    label: str  # "engine" or "VM", for menus and buttons

    def start(self) -> None: ...
    def stop(self) -> None: ...
    def logs(self, lines: int = 200) -> str: ...


def _flag(cmd: list[str], *names: str) -> str | None:
    for i, arg in enumerate(cmd):
        for name in names:
            if arg == name and i + 1 < len(cmd):
                return cmd[i + 1]
            if arg.startswith(name + "="):
                return arg.split("=", 1)[1]
    return None


def _tail(path: Path, lines: int) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 256 * 1024))
            data = f.read().decode("utf-8", "replace")
    except OSError as e:
        return f"(no log at {path}: {e.strerror})"
    return "\n".join(data.splitlines()[-lines:])


@dataclass
class LocalEngine:
    """An engine daemon on this host, launched with ``settings.engine_command``."""

    settings: Settings
    label: str = "engine"
    _proc: subprocess.Popen[bytes] | None = None

    @property
    def log_path(self) -> Path:
        return Path(platformdirs.user_log_path("cove")) / "engine.log"

    def command(self) -> list[str]:
        cmd = list(self.settings.engine_command)
        if _flag(cmd, "-H", "--host") is None:
            cmd += ["--host", self.settings.host]
        return cmd

    def pidfile(self) -> Path:
        cmd = self.command()
        explicit = _flag(cmd, "-p", "--pidfile")
        if explicit:
            return Path(explicit)
        return Path(_flag(cmd, "--exec-root") or DEFAULT_EXEC_ROOT) / ENGINE_PID

    def start(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            return
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            # Own session: the engine outlives the desktop, like containers do.
            self._proc = subprocess.Popen(self.command(), stdin=subprocess.DEVNULL, stdout=log,
                                          stderr=log, start_new_session=True,
                                          cwd=Path(__file__).resolve().parent.parent)
        time.sleep(0.3)
        if self._proc.poll() is not None:
            raise RuntimeError(f"the engine exited at once (code {self._proc.returncode}): "
                               + _tail(self.log_path, 3))

    def stop(self) -> None:
        pid = self._pid()
        if pid is None:
            raise RuntimeError(f"no engine pid known (looked at {self.pidfile()})")
        os.kill(pid, signal.SIGTERM)
        for _ in range(100):
            if not _alive(pid):
                return
            time.sleep(0.1)
        raise RuntimeError(f"the engine (pid {pid}) did not stop within 10 s")

    def logs(self, lines: int = 200) -> str:
        if not self.log_path.exists():
            return (f"No engine log at {self.log_path} yet: Cove writes it when it starts the "
                    "engine itself (Start engine). An engine started another way logs where "
                    "it was started (e.g. journalctl -u cove).")
        return _tail(self.log_path, lines)

    def _pid(self) -> int | None:
        if self._proc is not None and self._proc.poll() is None:
            return self._proc.pid
        try:
            return int(self.pidfile().read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None


@dataclass
class VMEngine:
    """The Cove VM (macOS/Windows, or by choice): driven through ``cove vm``."""

    settings: Settings
    label: str = "VM"

    @property
    def layout(self) -> InstanceLayout:
        return InstanceLayout.named(self.settings.vm_name)

    def _cove(self, verb: str, *flags: str) -> None:
        cmd = [sys.executable, "-m", "runtime.cli.main", "vm", verb, self.settings.vm_name,
               *flags]
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=900, check=False)
        if out.returncode != 0:
            raise RuntimeError((out.stderr or out.stdout).strip() or f"{cmd} failed")

    def start(self) -> None:
        self._wait_stopped()
        # The Resources card's values: `cove vm start` creates the instance with them or
        # applies them to the stopped one. Its data disk only grows, so a card set below an
        # instance's current disk (made bigger with the CLI) leaves the disk as it is.
        s = self.settings
        flags = ["--cpus", str(s.cpus), "--memory", str(s.memory_gib * 1024)]
        if s.disk_gib >= self._current_disk_gib():
            flags += ["--disk", str(s.disk_gib)]
        self._cove("start", "--quiet", *flags)

    def _current_disk_gib(self) -> int:
        from vmhost import instance

        try:
            return instance.load(self.settings.vm_name).disk_gib
        except CoveError:
            return 0  # no instance yet

    def stop(self) -> None:
        self._cove("stop")

    def _wait_stopped(self, timeout: float = 60.0) -> None:
        """Let a VM that is still powering off finish: `cove vm start` would otherwise find
        its supervisor alive and return at once, with no socket coming back."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self._powering_off():
            time.sleep(0.2)

    def _powering_off(self) -> bool:
        last = read_vm_events(self.layout.events, 1)
        if not last or last[-1].kind != "stopping":
            return False
        try:
            return _alive(int(self.layout.supervisor_pid.read_text().split()[0]))
        except (OSError, ValueError, IndexError):
            return False

    def logs(self, lines: int = 200) -> str:
        return _tail(self.layout.supervisor_log, lines)

    def status(self) -> tuple[str, str]:
        """(state, reason) from events.jsonl and the supervisor's pid file."""
        return vm_status(self.layout.events, self.layout.supervisor_pid)

    def events(self, last: int = 12) -> list[VMEvent]:
        return read_vm_events(self.layout.events, last)


# vmhost/events.py kinds -> (desktop state, words for the banner and the VM card)
VM_KINDS: dict[str, tuple[str, str]] = {
    "starting": ("starting", "preparing the guest image"),
    "vm-started": ("starting", "VM booted, waiting for SSH"),
    "ssh-ready": ("starting", "SSH up, waiting for the engine"),
    "engine-ready": ("starting", "engine answered, opening the socket"),
    "engine-timeout": ("starting", "the engine in the VM did not answer yet"),
    "ready": ("running", ""),
    "port-forward-open": ("running", ""),
    "port-forward-close": ("running", ""),
    "port-forward-failed": ("running", "a port could not be forwarded"),
    "ssh-reconnect": ("running", "SSH reconnected"),
    "engine-up": ("running", ""),
    "clock-resync": ("running", ""),
    "engine-down": ("error", "the engine inside the VM is down"),
    "stopping": ("stopped", "stopping"),
    "stopped": ("stopped", "the VM is stopped"),
    "error": ("error", "the VM failed"),
}


def read_vm_events(path: Path, last: int = 50) -> list[VMEvent]:
    """The last events of events.jsonl (kind, time, message, data), oldest first."""
    text = _tail(path, last)
    if text.startswith("(no log"):
        return []
    out = []
    for line in text.splitlines():
        try:
            out.append(VMEvent.from_line(line))
        except (ValueError, KeyError, TypeError):
            continue  # a torn or foreign line: skip it, the next one tells the state
    return out


def describe_vm_event(ev: VMEvent) -> str:
    """One line for the VM card: what happened, with the useful numbers."""
    words = VM_KINDS.get(ev.kind, ("", ev.kind))[1] or ev.kind.replace("-", " ")
    d = ev.data
    if ev.kind == "ready":
        words = f"ready: Docker API on {d.get('socket', '?')}"
    elif ev.kind == "vm-started" and d.get("accel"):
        words += f" ({d['accel']})"
    elif ev.kind.startswith("port-forward") and d.get("port"):
        words = f"{ev.kind.replace('-', ' ')} :{d['port']}"
    elif ev.kind == "clock-resync":
        words = f"clock resynced after a {d.get('jump', '?')} s jump"
    if isinstance(d.get("t"), int | float) and ev.kind in ("vm-started", "ssh-ready",
                                                          "engine-ready", "ready"):
        words += f" after {d['t']:.1f} s"
    if ev.message:
        words += f": {ev.message}"
    return words


def vm_status(events: Path, supervisor_pid: Path | None = None) -> tuple[str, str]:
    """(state, reason) from the newest event in events.jsonl (Lima's watch idea).

    An instance whose supervisor is gone is stopped, whatever its last event said (it was
    killed, or the host rebooted).
    """
    evs = read_vm_events(events)
    if not evs:
        return "stopped", "the VM has not been started"
    ev = evs[-1]
    state, words = VM_KINDS.get(ev.kind, ("starting", ev.kind))
    if supervisor_pid is not None and state in ("running", "starting"):
        try:
            pid = int(supervisor_pid.read_text().split()[0])
        except (OSError, ValueError, IndexError):
            pid = 0
        if not pid or not _alive(pid):
            return "stopped", f"the VM supervisor is not running (last event: {ev.kind})"
    reason = ev.message or words
    return state, reason


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def control_for(settings: Settings) -> EngineControl:
    return VMEngine(settings) if settings.mode == "vm" else LocalEngine(settings)
