"""VM lifecycle verbs for the CLI and the desktop: start, stop, status, remove.

``start`` spawns the detached supervisor and tails ``events.jsonl`` until ``ready`` or
``error`` (Lima's watchHostAgentEvents); everything else is a function of the instance dir,
the supervisor's pid file and the backend's status, so it works from any process.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from runtime.api.errors import Internal, NotFound, Unavailable
from vmhost import instance, layout
from vmhost import relay as relayendpoint
from vmhost.backends import get as get_backend
from vmhost.events import VMEvent, size, watch
from vmhost.hypervisor import Hypervisor, VMState

OnEvent = Callable[[VMEvent], None]


@dataclass(frozen=True, slots=True, kw_only=True)
class VMInfo:
    name: str
    state: str
    supervisor_pid: int
    host: str  # the relay's URL while the supervisor runs, else ""
    ssh_port: int
    accel: str
    cpus: int
    memory_mib: int
    host_rss_bytes: int


def _detached() -> dict[str, Any]:
    """Popen arguments that let the supervisor outlive this process and its terminal."""
    if sys.platform == "win32":
        flags = subprocess.DETACHED_PROCESS | subprocess.CREATE_NEW_PROCESS_GROUP
        return {"creationflags": flags}
    return {"start_new_session": True}


def relay_endpoint(name: str) -> tuple[str, str | None]:
    """(URL, token) of the VM's relay for clients: ``unix://…`` and None, or on Windows
    ``tcp://127.0.0.1:PORT`` and the token each connection's first request must carry."""
    lay = layout.InstanceLayout.named(name)
    return relayendpoint.relay_endpoint(lay.relay_socket, lay.relay_json)


def relay_url(name: str) -> str:
    return relay_endpoint(name)[0]


def supervisor_pid(name: str) -> int:
    return instance.read_pid(layout.InstanceLayout.named(name).supervisor_pid)


def start(
    config: instance.InstanceConfig,
    *,
    timeout: float = 600.0,
    on_event: OnEvent | None = None,
    wait_engine: bool = True,
) -> str:
    """Create (if needed) and boot the VM; returns the relay's URL for clients
    (``unix://…`` or, on Windows, ``tcp://127.0.0.1:…``). Idempotent."""
    lay = (
        instance.create(config)
        if not layout.InstanceLayout.named(config.name).vm_json.exists()
        else layout.InstanceLayout.named(config.name)
    )
    if supervisor_pid(config.name):
        return relay_url(config.name)
    offset = size(lay.events)
    with open(lay.supervisor_log, "ab") as logf:
        subprocess.Popen(
            [sys.executable, "-m", "vmhost.supervisor", config.name],
            stdin=subprocess.DEVNULL,
            stdout=logf,
            stderr=logf,
            env={**os.environ, "COVE_VM_HOME": str(layout.data_home())},
            **_detached(),
        )
    for ev in watch(lay.events, offset=offset, timeout=timeout):
        if on_event:
            on_event(ev)
        if ev.kind == "error":
            raise Unavailable(f"vm {config.name}: {ev.message} (see {lay.supervisor_log})")
        if ev.kind == "ready":
            return relay_url(config.name)
    raise Unavailable(f"vm {config.name}: not ready after {timeout:.0f}s (see {lay.serial_log})")


def stop(name: str, *, timeout: float = 60.0, hv: Hypervisor | None = None) -> None:
    """Stop the supervisor (it powers the guest off) or, without one, the VM. Idempotent."""
    pid = supervisor_pid(name)
    if pid:
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while supervisor_pid(name) and time.monotonic() < deadline:
            time.sleep(0.1)
        if supervisor_pid(name):
            # Windows has no SIGKILL; its SIGTERM is already TerminateProcess.
            os.kill(pid, getattr(signal, "SIGKILL", signal.SIGTERM))
    hv = hv or get_backend()
    hv.stop(name, timeout=10)


def _live_relay_url(name: str, lay: layout.InstanceLayout) -> str:
    if not supervisor_pid(name):
        return ""
    if lay.relay_socket.exists():
        return f"unix://{lay.relay_socket}"
    info = relayendpoint.read_relay_info(lay.relay_json)
    return info[0] if info else ""


def status(name: str, hv: Hypervisor | None = None) -> VMInfo:
    config = instance.load(name)
    lay = layout.InstanceLayout.named(name)
    hv = hv or get_backend()
    st = hv.status(name)
    res = hv.resources(name) if st.state is not VMState.ABSENT else None
    try:
        port = int(lay.ssh_port.read_text())
    except (OSError, ValueError):
        port = 0
    return VMInfo(
        name=name,
        state=st.state.value,
        supervisor_pid=supervisor_pid(name),
        host=_live_relay_url(name, lay),
        ssh_port=port,
        accel=st.accel,
        cpus=config.cpus,
        memory_mib=config.memory_mib,
        host_rss_bytes=res.host_rss_bytes if res else 0,
    )


def remove(name: str, *, force: bool = False, hv: Hypervisor | None = None) -> None:
    instance.load(name)  # NotFound
    hv = hv or get_backend()
    if supervisor_pid(name) or hv.status(name).state is VMState.RUNNING:
        if not force:
            raise Internal(f"vm {name} is running (stop it, or rm -f)")
        stop(name, hv=hv)
    hv.delete(name)
    instance.remove(name)


def ssh_argv(name: str, command: list[str], *, tty: bool) -> list[str]:
    lay = layout.InstanceLayout.named(name)
    try:
        port = int(lay.ssh_port.read_text())
    except (OSError, ValueError) as e:
        raise NotFound(f"vm {name} has not been started") from e
    return [
        "ssh",
        "-i",
        str(lay.client_key),
        "-p",
        str(port),
        "-o",
        f"UserKnownHostsFile={lay.known_hosts}",
        "-o",
        "StrictHostKeyChecking=yes",
        "-o",
        "IdentitiesOnly=yes",
        "-o",
        "LogLevel=ERROR",
        *(["-t"] if tty else []),
        "root@127.0.0.1",
        *command,
    ]
