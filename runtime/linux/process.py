"""Turning a forked child into the user's process: credentials, caps, seccomp, execve.

Shared by the container's first process and by exec. Failures before execve
are :class:`ExecError`; the caller writes them as JSON on a close-on-exec pipe
whose EOF means "execve succeeded" (runc's sync pipe).
"""

from __future__ import annotations

import json
import os
import resource
import signal
from dataclasses import dataclass

from runtime.api.errors import CoveError
from runtime.linux import caps, seccomp
from runtime.linux.procutil import FORWARDED_SIGNALS, exit_code, write_all
from runtime.linux.syscalls import PR_SET_KEEPCAPS, PR_SET_NO_NEW_PRIVS, Syscalls
from runtime.linux.users import resolve_user
from runtime.spec import ProcessSpec

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


class ExecError(Exception):
    """Why the process could not be started; *kind* picks the engine's error class."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind  # "not_found" | "cannot_invoke" | "invalid" | "internal"
        self.message = message


@dataclass(frozen=True, slots=True)
class Security:
    """What confines a process: capability mask and a compiled seccomp filter."""

    cap_mask: int
    seccomp_bpf: bytes | None
    no_new_privileges: bool


def report_failure(fd: int, exc: BaseException) -> None:
    """Write *exc* as the sync pipe's one JSON message."""
    if isinstance(exc, ExecError):
        kind, message = exc.kind, exc.message
    elif isinstance(exc, CoveError):
        kind, message = "invalid", exc.message
    elif isinstance(exc, OSError):
        kind, message = "internal", str(exc)
    else:
        kind, message = "internal", f"{type(exc).__name__}: {exc}"
    try:
        write_all(fd, json.dumps({"kind": kind, "message": message}).encode())
    except OSError:
        pass


def _env_value(env: list[str], key: str) -> str | None:
    prefix = key + "="
    for item in env:
        if item.startswith(prefix):
            return item[len(prefix):]
    return None


def look_path(name: str, env: list[str]) -> str:
    """Go's exec.LookPath inside the container, with runc's error wording."""
    if "/" in name:
        _check_executable(name, name)
        return name
    path = _env_value(env, "PATH")
    for d in (path if path is not None else DEFAULT_PATH).split(":"):
        candidate = os.path.join(d or ".", name)
        if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    raise ExecError("not_found", f'exec: "{name}": executable file not found in $PATH')


def _check_executable(name: str, path: str) -> None:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise ExecError(
            "not_found", f'exec: "{name}": stat {path}: no such file or directory'
        ) from None
    if os.path.isdir(path):
        raise ExecError("cannot_invoke", f'exec: "{name}": is a directory')
    if not st.st_mode & 0o111:
        raise ExecError("cannot_invoke", f'exec: "{name}": permission denied')


def _apply_rlimits(proc: ProcessSpec) -> None:
    for rl in proc.rlimits:
        name = rl.type.upper().removeprefix("RLIMIT_")
        res = getattr(resource, "RLIMIT_" + name, None)
        if res is None:
            raise ExecError("invalid", f"unknown rlimit type {rl.type!r}")
        resource.setrlimit(res, (rl.soft, rl.hard))


def _environment(proc: ProcessSpec, home: str) -> list[str]:
    env = list(proc.env)
    if _env_value(env, "HOME") is None:
        env.append(f"HOME={home}")
    return env


def exec_process(sc: Syscalls, proc: ProcessSpec, sec: Security) -> None:
    """Become *proc* (never returns on success). Runs as root in the container's namespaces."""
    try:
        user = resolve_user(proc.user, proc.additional_groups)
    except CoveError as e:
        raise ExecError("invalid", e.message) from None
    env = _environment(proc, user.home)
    _apply_rlimits(proc)
    try:
        os.chdir(proc.cwd or "/")
    except OSError as e:
        raise ExecError(
            "invalid", f"chdir to cwd ({proc.cwd!r}) set in config.json failed: {e.strerror}"
        ) from None
    path = look_path(proc.args[0], env)
    os.setgroups(list(user.groups))
    caps.drop_bounding(sc, sec.cap_mask)
    if sec.seccomp_bpf is not None and not sec.no_new_privileges:
        # Without no_new_privs the filter needs CAP_SYS_ADMIN: load it while still root.
        sc.load_seccomp(sec.seccomp_bpf)
    sc.prctl(PR_SET_KEEPCAPS, 1)
    os.setresgid(user.gid, user.gid, user.gid)
    os.setresuid(user.uid, user.uid, user.uid)
    caps.set_capabilities(sc, sec.cap_mask)
    sc.prctl(PR_SET_KEEPCAPS, 0)
    if sec.no_new_privileges:
        sc.prctl(PR_SET_NO_NEW_PRIVS, 1)
        if sec.seccomp_bpf is not None:
            sc.load_seccomp(sec.seccomp_bpf)
    try:
        os.execve(path, list(proc.args), dict(_split_env(env)))
    except PermissionError:
        raise ExecError("cannot_invoke", f'exec: "{proc.args[0]}": permission denied') from None
    except FileNotFoundError:
        raise ExecError(
            "not_found", f'exec: "{proc.args[0]}": no such file or directory'
        ) from None
    except OSError as e:
        raise ExecError("cannot_invoke", f'exec: "{proc.args[0]}": {e.strerror}') from None


def _split_env(env: list[str]) -> list[tuple[str, str]]:
    out = []
    for item in env:
        key, sep, value = item.partition("=")
        if sep and key:
            out.append((key, value))
    return out


def run_init(child: int) -> int:
    """--init: stay PID 1, forward signals to *child*, reap every zombie, return its code."""

    def forward(signum: int, _frame: object) -> None:
        try:
            os.kill(child, signum)
        except ProcessLookupError:
            pass

    for sig in FORWARDED_SIGNALS:
        try:
            signal.signal(sig, forward)
        except (OSError, ValueError):
            pass
    while True:
        try:
            pid, status = os.wait()
        except ChildProcessError:
            return 0
        if pid == child:
            return exit_code(status)


def security_for(
    proc: ProcessSpec,
    privileged: bool,
    inherited: Security | None = None,
    inherited_profile: str | None = None,
) -> Security:
    """Capabilities and seccomp filter for *proc*; reuses *inherited*'s filter when equal."""
    names = caps.all_capabilities() if privileged else proc.capabilities
    mask = caps.cap_mask(names)
    bpf: bytes | None
    if privileged or proc.seccomp_profile == "unconfined":
        bpf = None
    elif (inherited is not None and proc.seccomp_profile == inherited_profile
          and mask == inherited.cap_mask):
        bpf = inherited.seccomp_bpf
    else:
        bpf = seccomp.compile_profile(proc.seccomp_profile, caps.names_in(mask))
    return Security(mask, bpf, proc.no_new_privileges)
