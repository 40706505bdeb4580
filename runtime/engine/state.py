"""The container lifecycle as an explicit state machine (runc's state_linux, youki's status).

Statuses are Docker's. Every operation names the statuses it may start from;
:func:`check` raises the error Docker answers with when it may not.

    created ──start──▶ running ──exit──▶ exited ──start──▶ running
                        │  ▲                ▲
                  pause │  │ unpause        │ exit (no restart)
                        ▼  │                │
                       paused          restarting ◀──exit (restart policy)
    any stopped status ──rm──▶ removing ──▶ (gone)
"""

from __future__ import annotations

import enum

from runtime.api.errors import Conflict, NotModified


class Status(enum.StrEnum):
    CREATED = "created"
    RUNNING = "running"
    PAUSED = "paused"
    RESTARTING = "restarting"
    REMOVING = "removing"
    EXITED = "exited"
    DEAD = "dead"


class Op(enum.StrEnum):
    START = "start"
    STOP = "stop"
    KILL = "kill"
    PAUSE = "pause"
    UNPAUSE = "unpause"
    REMOVE = "remove"
    EXEC = "exec"
    ATTACH = "attach"


_ALLOWED: dict[Op, frozenset[Status]] = {
    Op.START: frozenset({Status.CREATED, Status.EXITED}),
    Op.STOP: frozenset({Status.RUNNING, Status.PAUSED, Status.RESTARTING}),
    Op.KILL: frozenset({Status.RUNNING, Status.PAUSED, Status.RESTARTING}),
    Op.PAUSE: frozenset({Status.RUNNING}),
    Op.UNPAUSE: frozenset({Status.PAUSED}),
    Op.REMOVE: frozenset({Status.CREATED, Status.EXITED, Status.DEAD}),
    Op.EXEC: frozenset({Status.RUNNING}),
    Op.ATTACH: frozenset(
        {Status.CREATED, Status.RUNNING, Status.EXITED, Status.RESTARTING, Status.PAUSED}
    ),
}

RUNNING_LIKE = frozenset({Status.RUNNING, Status.PAUSED, Status.RESTARTING})


def allowed(op: Op, status: Status) -> bool:
    return status in _ALLOWED[op]


def check(op: Op, status: Status, ref: str) -> None:
    """Raise Docker's error for *op* on a container (named *ref*) in *status*."""
    if allowed(op, status):
        return
    if op is Op.START and status in RUNNING_LIKE:
        if status is Status.PAUSED:
            raise Conflict("cannot start a paused container, try unpause instead")
        raise NotModified(f"container {ref} is already running")
    if op is Op.STOP:
        raise NotModified(f"container {ref} is already stopped")
    if op is Op.KILL:
        raise Conflict(f"Container {ref} is not running")
    if op is Op.PAUSE:
        if status is Status.PAUSED:
            raise Conflict(f"cannot pause container {ref}: container is already paused")
        raise Conflict(f"container {ref} is not running")
    if op is Op.UNPAUSE:
        raise Conflict(f"container {ref} is not paused")
    if op is Op.REMOVE:
        if status is Status.REMOVING:
            raise Conflict(f"removal of container {ref} is already in progress")
        raise Conflict(
            f"cannot remove container \"/{ref}\": container is {status.value}: "
            "stop the container before removing or force remove"
        )
    if op is Op.EXEC:
        if status is Status.PAUSED:
            raise Conflict(f"container {ref} is paused, unpause the container before exec")
        raise Conflict(f"container {ref} is not running")
    raise Conflict(f"container {ref} is {status.value}")
