"""``guestagent events`` as the host runs it, against a real engine.

The agent runs with resync and heartbeat an hour apart, so every port event it sends within
these tests can only have come from the engine's ``/events`` stream (the /proc re-reads in
between never ask the engine), not from any periodic poll.
"""

from __future__ import annotations

import contextlib
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from guestagent.protocol import Event

pytestmark = pytest.mark.root

ROOT = Path(__file__).resolve().parents[2]
LOOPBACK_PUBLISH = {"80/tcp": ("127.0.0.1", None)}  # -p 127.0.0.1::80


class Agent:
    """``python -m guestagent events`` with its lines parsed on a thread as they come."""

    def __init__(self, engine_socket: str) -> None:
        argv = [
            sys.executable,
            "-m",
            "guestagent",
            "events",
            "--socket",
            engine_socket,
            "--resync",
            "3600",
            "--heartbeat",
            "3600",
        ]
        self.proc = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.PIPE)
        self._lines: queue.SimpleQueue[tuple[float, Event] | None] = queue.SimpleQueue()
        self.seen: list[Event] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._lines.put((time.monotonic(), Event.from_line(line)))
        self._lines.put(None)

    def expect(self, what: str, match: Callable[[Event], bool], timeout: float = 30) -> float:
        """Read events until one matches; its arrival time (monotonic)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                item = self._lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                item = None
            if item is None:
                raise AssertionError(f"no {what} within {timeout}s; saw {self.seen}")
            arrived, event = item
            self.seen.append(event)
            if match(event):
                return arrived

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=10)


@contextlib.contextmanager
def agent_on(engine_socket: str) -> Iterator[Agent]:
    agent = Agent(engine_socket)
    try:
        agent.expect("snapshot", lambda e: e.type == "snapshot")
        agent.expect("engine up", lambda e: e == Event(type="engine", state="up", time=e.time))
        yield agent
    finally:
        agent.close()


def is_port(action: str, port: int) -> Callable[[Event], bool]:
    return lambda e: (
        e.type == "port" and e.action == action and e.port is not None and e.port.port == port
    )


def is_engine(state: str) -> Callable[[Event], bool]:
    return lambda e: e.type == "engine" and e.state == state


def host_port(container: Any) -> int:
    container.reload()
    return int(container.attrs["NetworkSettings"]["Ports"]["80/tcp"][0]["HostPort"])


def test_published_port_follows_run_stop_start_rm(docker: Any, engine: Any) -> None:
    with agent_on(engine.socket) as agent:
        c = docker.containers.run("busybox", ["sleep", "300"], detach=True, ports=LOOPBACK_PUBLISH)
        ran = time.monotonic()
        try:
            port = host_port(c)
            opened = agent.expect(f"open {port}", is_port("open", port))
            print(f"port-open {1000 * (opened - ran):.0f} ms after run returned")
            c.stop(timeout=0)  # die
            agent.expect(f"close {port} on stop", is_port("close", port))
            c.start()  # start (the port may be a new one)
            port = host_port(c)
            agent.expect(f"open {port} on start", is_port("open", port))
        finally:
            c.remove(force=True)  # destroy, without a die event
        agent.expect(f"close {port} on rm", is_port("close", port))


def test_engine_killed_and_restarted(tmp_path: Path, busybox_tar: Path) -> None:
    import docker as docker_py

    from tests.harness import EngineProcess

    eng = EngineProcess(tmp_path / "e")
    try:
        eng.start()
        eng.import_image(busybox_tar, "busybox")
        client = docker_py.DockerClient(base_url=eng.url, timeout=60)
        with agent_on(eng.socket) as agent:
            doomed = client.containers.run(
                "busybox", ["sleep", "300"], detach=True, ports=LOOPBACK_PUBLISH
            )
            port = host_port(doomed)
            pid = int(doomed.attrs["State"]["Pid"])
            agent.expect(f"open {port}", is_port("open", port))

            eng.stop(signal.SIGKILL)
            agent.expect("engine down", is_engine("down"))
            # The container dies while no engine runs: only a resync can tell.
            os.kill(pid, signal.SIGKILL)
            eng.start()
            agent.expect("engine up", is_engine("up"))
            down_at = next(i for i, e in enumerate(agent.seen) if is_engine("down")(e))
            # Kernel DNAT kept the port working while the engine was away: no early close.
            assert not any(is_port("close", port)(e) for e in agent.seen[down_at:])
            agent.expect(f"close {port} on resync", is_port("close", port))

            # The reconnected stream carries events again.
            client = docker_py.DockerClient(base_url=eng.url, timeout=60)
            fresh = client.containers.run(
                "busybox", ["sleep", "300"], detach=True, ports=LOOPBACK_PUBLISH
            )
            fresh_port = host_port(fresh)
            agent.expect(f"open {fresh_port}", is_port("open", fresh_port))
            fresh.remove(force=True)
            agent.expect(f"close {fresh_port}", is_port("close", fresh_port))
            client.close()
    finally:
        if eng.proc is None:
            with contextlib.suppress(Exception):
                eng.start()  # cleanup() removes containers through the engine
        eng.cleanup()
