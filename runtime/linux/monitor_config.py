"""What the engine hands a container's monitor, and how it travels (engine → zygote → monitor).

The request is bytes: a first JSON line with only what the long-lived monitor needs
(:class:`MonitorView`), then the whole :class:`MonitorConfig` as JSON, which only its
short-lived helpers decode (runtime.linux.launch). Descriptors travel beside it
(SCM_RIGHTS, or a plain fork): the engine's result pipe, then the early attaches'
sockets.
"""

from __future__ import annotations

import json
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runtime.linux.cgroups import CgroupManager, CgroupV2, cgroup_layout, open_cgroup_in
from runtime.linux.process import Security
from runtime.spec import ContainerSpec, spec_from_json, to_json

SOCKET_NAME = "monitor.sock"
STATE_NAME = "state.json"
EXIT_NAME = "exit.json"
EXECS_DIR = "execs"


@dataclass(frozen=True, slots=True)
class AttachFlags:
    stdin: bool
    stdout: bool
    stderr: bool


@dataclass(frozen=True, slots=True)
class MonitorConfig:
    spec: ContainerSpec
    dir: Path  # state_dir/<id>
    cgroup: CgroupManager
    cgroup_v2: bool
    security: Security
    result_fd: int  # the engine reads one JSON line: {"pid": n} or {"kind", "message"}
    pending: tuple[tuple[socket.socket, AttachFlags], ...]  # attaches made before start


@dataclass(frozen=True, slots=True)
class MonitorView:
    """The part of the config the monitor itself reads; plain values, no spec objects."""

    dir: str
    cgroup_path: str
    cgroup_layout: dict[str, str]  # see cgroups.cgroup_layout: no mountinfo probe needed
    terminal: bool
    stdin_once: bool
    log_path: str
    log_max_size: int | None
    log_max_file: int
    pid_namespace: str | None  # None: the host's; "": a new one; else the path joined
    pending: tuple[AttachFlags, ...]

    def cgroup(self) -> CgroupManager:
        return open_cgroup_in(self.cgroup_layout, self.cgroup_path)


def encode_config(cfg: MonitorConfig) -> tuple[bytes, list[int]]:
    """*cfg* as the monitor's request bytes plus the descriptors that travel beside it."""
    spec, sec = cfg.spec, cfg.security
    pid_ns = next((ns.path for ns in spec.namespaces if ns.type == "pid"), None)
    pending = [[f.stdin, f.stdout, f.stderr] for _, f in cfg.pending]
    view = [str(cfg.dir), cfg.cgroup.path, cgroup_layout(cfg.cgroup),
            spec.process.terminal, spec.stdin_once,
            spec.log.path, spec.log.max_size, spec.log.max_file, pid_ns, pending]
    full = {
        "spec": to_json(spec),
        "cap_mask": sec.cap_mask,
        "seccomp": sec.seccomp_bpf.hex() if sec.seccomp_bpf is not None else None,
        "no_new_privileges": sec.no_new_privileges,
    }
    # json.dumps escapes newlines inside strings: the first b"\n" ends the view.
    payload = json.dumps(view).encode() + b"\n" + json.dumps(full).encode()
    return payload, [cfg.result_fd, *(s.fileno() for s, _ in cfg.pending)]


def decode_view(payload: bytes, fds: list[int]) -> MonitorView:
    head = payload[:payload.index(b"\n")]
    (dir_, cgroup_path, layout, terminal, stdin_once, log_path, log_max_size, log_max_file,
     pid_ns, pending) = json.loads(head)
    if len(fds) != 1 + len(pending):
        raise ValueError("monitor: descriptors and attaches do not match")
    return MonitorView(
        dir=dir_, cgroup_path=cgroup_path, cgroup_layout=dict(layout), terminal=bool(terminal),
        stdin_once=bool(stdin_once), log_path=log_path or "", log_max_size=log_max_size,
        log_max_file=int(log_max_file), pid_namespace=pid_ns,
        pending=tuple(AttachFlags(bool(i), bool(o), bool(e)) for i, o, e in pending),
    )


def decode_spec(payload: bytes) -> tuple[ContainerSpec, Security]:
    data: dict[str, Any] = json.loads(payload[payload.index(b"\n") + 1:])
    bpf = data["seccomp"]
    security = Security(int(data["cap_mask"]), bytes.fromhex(bpf) if bpf else None,
                        bool(data["no_new_privileges"]))
    return spec_from_json(data["spec"]), security


def decode_config(payload: bytes, fds: list[int]) -> MonitorConfig:
    """The whole config (in the launch helper): the fds stay plain numbers until the end."""
    view = decode_view(payload, fds)
    spec, security = decode_spec(payload)
    cgroup = view.cgroup()
    # Sockets last: once they own their fds, nothing above can fail and leave them open.
    pending = tuple((socket.socket(fileno=fd), flags)
                    for fd, flags in zip(fds[1:], view.pending, strict=True))
    return MonitorConfig(
        spec=spec, dir=Path(view.dir), cgroup=cgroup, cgroup_v2=isinstance(cgroup, CgroupV2),
        security=security, result_fd=fds[0], pending=pending,
    )
