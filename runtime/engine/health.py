"""Docker healthchecks: probe running containers and keep ``State.Health``.

One scheduler thread looks at the running containers a few times a second and
starts a probe (an exec of the ``Healthcheck.Test`` command) when one is due,
so nothing in the start path has to know about health. State is per start:
a restart begins again at ``starting``, as in moby.
"""

from __future__ import annotations

import contextlib
import logging
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from runtime.api.errors import CoveError
from runtime.engine.records import Container
from runtime.engine.views import rfc3339
from runtime.spec import ProcessSpec

if TYPE_CHECKING:
    from runtime.engine.engine import Engine

log = logging.getLogger(__name__)

SECOND = 1_000_000_000
DEFAULT_INTERVAL = 30 * SECOND
DEFAULT_TIMEOUT = 30 * SECOND
DEFAULT_RETRIES = 3
MAX_LOG = 5
MAX_OUTPUT = 4096
STARTING, HEALTHY, UNHEALTHY = "starting", "healthy", "unhealthy"


@dataclass
class Health:
    started_ns: int  # the container start this state belongs to
    status: str = STARTING
    failing_streak: int = 0
    log: list[dict[str, Any]] = field(default_factory=list)
    next_ns: int = 0
    probing: bool = False

    def to_json(self) -> dict[str, Any]:
        return {"Status": self.status, "FailingStreak": self.failing_streak,
                "Log": list(self.log)}


@dataclass(frozen=True)
class Check:
    test: tuple[str, ...]
    interval: int
    timeout: int
    retries: int
    start_period: int
    start_interval: int


def check_of(config: dict[str, Any], image_config: dict[str, Any]) -> Check | None:
    """The effective healthcheck: the container's fields over the image's (moby merges them)."""
    image_hc = image_config.get("Healthcheck") or {}
    hc = {**image_hc, **{k: v for k, v in (config.get("Healthcheck") or {}).items() if v}}
    test = list(hc.get("Test") or [])
    if not test or test[0] == "NONE":
        return None
    if test[0] == "CMD-SHELL":
        args: tuple[str, ...] = ("/bin/sh", "-c", " ".join(str(t) for t in test[1:]))
    elif test[0] == "CMD":
        args = tuple(str(t) for t in test[1:])
    else:
        args = ("/bin/sh", "-c", " ".join(str(t) for t in test))
    if not args:
        return None
    return Check(
        test=args, interval=int(hc.get("Interval") or DEFAULT_INTERVAL),
        timeout=int(hc.get("Timeout") or DEFAULT_TIMEOUT),
        retries=int(hc.get("Retries") or DEFAULT_RETRIES),
        start_period=int(hc.get("StartPeriod") or 0),
        start_interval=int(hc.get("StartInterval") or 5 * SECOND),
    )


class HealthMonitor:
    def __init__(self, engine: Engine, tick: float = 0.2) -> None:
        self.engine = engine
        self.tick = tick
        self._lock = threading.Lock()
        self._states: dict[str, Health] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, daemon=True, name="health")
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def health(self, c: Container) -> dict[str, Any] | None:
        """``State.Health`` for inspect (None without a healthcheck)."""
        if self._check(c) is None:
            return None
        with self._lock:
            st = self._states.get(c.id)
            if st is None or st.started_ns != c.started_at_ns:
                return Health(c.started_at_ns).to_json() if c.running else None
            return st.to_json()

    def status(self, c: Container) -> str:
        h = self.health(c)
        return str(h["Status"]) if h else ""

    def _check(self, c: Container) -> Check | None:
        try:
            image_config = self.engine.images.get(c.image_id).config.get("config") or {}
        except CoveError:
            image_config = {}
        return check_of(c.config, image_config)

    def _run(self) -> None:
        while not self._stop.wait(self.tick):
            try:
                self._round()
            except Exception:
                log.exception("health round")

    def _round(self) -> None:
        now = time.monotonic_ns()
        live = set()
        for c in self.engine.containers.all():
            if not c.running or c.status.value == "paused":
                continue
            check = self._check(c)
            if check is None:
                continue
            live.add(c.id)
            with self._lock:
                st = self._states.get(c.id)
                if st is None or st.started_ns != c.started_at_ns:
                    first = check.start_interval if check.start_period else check.interval
                    st = self._states[c.id] = Health(c.started_at_ns, next_ns=now + first)
                if st.probing or now < st.next_ns:
                    continue
                st.probing = True
            threading.Thread(target=self._probe, args=(c, check, st), daemon=True).start()
        with self._lock:
            for cid in [k for k in self._states if k not in live]:
                if self._gone(cid):
                    del self._states[cid]

    def _gone(self, cid: str) -> bool:
        try:
            self.engine.containers.get(cid)
        except CoveError:
            return True
        return False

    def _probe(self, c: Container, check: Check, st: Health) -> None:
        start = time.time_ns()
        try:
            code, output = run_probe(self.engine, c, check)
        except CoveError as e:
            code, output = -1, e.message
        except Exception as e:
            code, output = -1, str(e)
        self._record(c, check, st, start, code, output)

    def _record(self, c: Container, check: Check, st: Health, start: int, code: int,
                output: str) -> None:
        end = time.time_ns()
        in_start_period = end - c.started_at_ns < check.start_period
        with self._lock:
            st.probing = False
            st.log = [*st.log, {"Start": rfc3339(start), "End": rfc3339(end), "ExitCode": code,
                                "Output": output}][-MAX_LOG:]
            before = st.status
            if code == 0:
                st.status, st.failing_streak = HEALTHY, 0
            elif not (in_start_period and st.status == STARTING):
                st.failing_streak += 1
                if st.failing_streak >= check.retries:
                    st.status = UNHEALTHY
            period = check.start_interval if in_start_period and st.status == STARTING \
                else check.interval
            st.next_ns = time.monotonic_ns() + period
            changed = st.status != before
        if changed:
            self.engine.events.publish("container", f"health_status: {st.status}", c.id,
                                       name=c.name, image=c.image_ref)


def run_probe(engine: Engine, c: Container, check: Check) -> tuple[int, str]:
    """Exec the test in the container; (exit code, output), -1 on a timeout."""
    from runtime.engine.specconv import capabilities, merge_env, security

    image_cfg = engine.images.get(c.image_id).config.get("config") or {}
    profile, nnp = security(dict(c.host_config))
    process = ProcessSpec(
        args=check.test,
        env=merge_env(list(image_cfg.get("Env") or []), list(c.config.get("Env") or [])),
        cwd=c.config.get("WorkingDir") or image_cfg.get("WorkingDir") or "/",
        user=c.config.get("User") or image_cfg.get("User") or "",
        capabilities=capabilities(dict(c.host_config)), no_new_privileges=nnp,
        seccomp_profile=profile,
    )
    eid = "health-" + secrets.token_hex(16)
    sock = engine.runtime.exec_start(c.id, eid, process, stdin=False)
    deadline = time.monotonic() + check.timeout / SECOND
    output = _drain(sock, deadline)
    return _exit_code(lambda: engine.runtime.exec_status(c.id, eid), deadline), output


def _drain(sock: Any, deadline: float) -> str:
    """The probe's output, de-multiplexed (stdout and stderr together), capped."""
    data = bytearray()
    with contextlib.closing(sock):
        while time.monotonic() < deadline:
            sock.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                chunk = sock.recv(1 << 16)
            except (TimeoutError, OSError):
                break
            if not chunk:
                break
            data += chunk
    out, view = bytearray(), bytes(data)
    while len(view) >= 8:
        size = int.from_bytes(view[4:8], "big")
        out += view[8:8 + size]
        view = view[8 + size:]
    return out[:MAX_OUTPUT].decode(errors="replace")


def _exit_code(status: Callable[[], tuple[bool, int, int | None]], deadline: float) -> int:
    while True:
        try:
            running, _pid, code = status()
        except CoveError:
            return -1
        if not running:
            return code if code is not None else -1
        if time.monotonic() > deadline:
            return -1
        time.sleep(0.02)
