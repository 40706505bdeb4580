"""Start/stop the engine (a local daemon) or the Cove VM, from the desktop.

All methods block (they spawn or signal processes) and are called through the
TaskRunner. ``start`` is idempotent: it returns at once when already running,
and the app learns about readiness from the EventPump connecting, not from here.
"""

from __future__ import annotations

import json
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
from runtime.layout import DEFAULT_EXEC_ROOT, ENGINE_PID
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

    def _cove(self, *args: str) -> None:
        cmd = [sys.executable, "-m", "runtime.cli.main", "vm", *args, self.settings.vm_name]
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=False)
        if out.returncode != 0:
            raise RuntimeError((out.stderr or out.stdout).strip() or f"{cmd} failed")

    def start(self) -> None:
        self._cove("start")

    def stop(self) -> None:
        self._cove("stop")

    def logs(self, lines: int = 200) -> str:
        return _tail(self.layout.supervisor_log, lines)

    def status(self) -> tuple[str, str]:
        """(state, reason) from the last line of events.jsonl (Lima's watch idea)."""
        return vm_status(self.layout.events)


def vm_status(events: Path) -> tuple[str, str]:
    last = _tail(events, 1).strip()
    if not last or last.startswith("(no log"):
        return "stopped", "the VM has not been started"
    try:
        ev = json.loads(last)
    except ValueError:
        return "error", "unreadable events.jsonl"
    kind = str(ev.get("type") or ev.get("event") or ev.get("status") or "")
    reason = str(ev.get("error") or ev.get("message") or ev.get("reason") or "")
    if kind in ("ready", "port-forward", "port_forwarded", "running"):
        return "running", reason
    if kind in ("stopped", "stopping"):
        return "stopped", reason
    if kind in ("error", "degraded", "failed"):
        return "error", reason
    return "starting", reason or kind


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
