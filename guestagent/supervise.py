"""Restart policy for the services PID 1 runs (sshd, the engine).

:class:`Service` does not wait for its child itself: in the guest, PID 1 reaps every process
(``waitpid(-1)``) and hands the exit to :meth:`Service.exited`. The backoff doubles from 0.5 s
to 30 s and resets once the service stayed up for a minute.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field

log = logging.getLogger(__name__)

MIN_BACKOFF = 0.5
MAX_BACKOFF = 30.0
STABLE_AFTER = 60.0


@dataclass(slots=True)
class Service:
    name: str
    argv: tuple[str, ...]
    log_path: str = "/dev/console"
    env: dict[str, str] = field(default_factory=dict)
    pid: int = 0
    started_at: float = 0.0
    backoff: float = MIN_BACKOFF
    restart_at: float = 0.0  # monotonic time of the next start; 0 = not scheduled
    restarts: int = 0

    def start(self, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        fd = os.open(self.log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            # posix_spawn, not Popen: PID 1's waitpid(-1) reaps, and Popen must not race it.
            self.pid = os.posix_spawnp(
                self.argv[0],
                list(self.argv),
                {**os.environ, **self.env},
                file_actions=[
                    (os.POSIX_SPAWN_OPEN, 0, "/dev/null", os.O_RDONLY, 0),
                    (os.POSIX_SPAWN_DUP2, fd, 1),
                    (os.POSIX_SPAWN_DUP2, fd, 2),
                ],
                setsid=True,
                setsigmask=(),  # PID 1 blocks signals for sigtimedwait
            )
        finally:
            os.close(fd)
        self.started_at = now
        self.restart_at = 0.0
        log.info("%s started pid=%d", self.name, self.pid)

    def exited(self, status: int, now: float | None = None) -> None:
        """Record the exit and schedule a restart with backoff."""
        now = time.monotonic() if now is None else now
        log.warning("%s pid=%d exited status=%d", self.name, self.pid, status)
        if now - self.started_at >= STABLE_AFTER:
            self.backoff = MIN_BACKOFF
        self.pid = 0
        self.restart_at = now + self.backoff
        self.backoff = min(self.backoff * 2, MAX_BACKOFF)
        self.restarts += 1

    def due(self, now: float) -> bool:
        return self.pid == 0 and self.restart_at != 0.0 and now >= self.restart_at

    def stop(self, sig: int = 15) -> None:
        self.restart_at = 0.0
        if self.pid:
            try:
                os.killpg(self.pid, sig)
            except ProcessLookupError:
                pass
