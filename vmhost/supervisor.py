"""``python -m vmhost.supervisor NAME``: the per-VM background process (Lima's hostagent).

It owns one running VM: boots it through the Hypervisor, waits for SSH and the engine,
serves the Docker API relay socket, forwards published ports from ``guestagent events``,
resyncs the guest clock after host sleep, and writes ``events.jsonl``. SIGTERM stops the
VM cleanly (guest poweroff, then the backend's stop). Everything it starts dies with it.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import sys
import threading
import time

from guestagent.protocol import ENGINE_SOCKET, Event, api_preamble
from runtime.api.errors import CoveError, Unavailable
from vmhost import guestimage, instance, layout
from vmhost.backends import get as get_backend
from vmhost.events import EventLog
from vmhost.guest import EVENTS, GuestConnection
from vmhost.hypervisor import Hypervisor
from vmhost.portforward import PortForwarder
from vmhost.relay import POOL_SIZE, Relay, endpoint_for, open_api

log = logging.getLogger("vmhost.supervisor")

SSH_TIMEOUT = 180.0
ENGINE_TIMEOUT = 120.0
CLOCK_JUMP = 5.0  # seconds of wall-vs-monotonic drift that mean the host slept


def ping_engine(
    guest: GuestConnection, preamble: bytes | None = None, engine_socket: str | None = None
) -> bool:
    """GET /_ping the way the relay's clients will reach the engine (relay.open_api)."""
    try:
        ch, _ = open_api(guest, preamble, engine_socket=engine_socket)
    except CoveError:
        return False
    try:
        ch.sendall(b"GET /_ping HTTP/1.1\r\nHost: engine\r\nConnection: close\r\n\r\n")
        head = ch.recv(64)
        return head.startswith(b"HTTP/1.") and head[9:12] == b"200"
    except (OSError, EOFError):
        return False
    finally:
        ch.close()


def sync_clock(guest: GuestConnection) -> None:
    """Step the guest clock to the host's (after boot and host sleep); `date` starts faster
    than `guestagent set-clock` under TCG."""
    with contextlib.suppress(CoveError):
        guest.run(f"date -u -s @{time.time():.3f} >/dev/null", timeout=15)


class Supervisor:
    def __init__(self, name: str, hv: Hypervisor, events: EventLog) -> None:
        self.name = name
        self.hv = hv
        self.events = events
        self.lay = layout.InstanceLayout.named(name)
        self.stopping = threading.Event()
        self.guest: GuestConnection | None = None
        self.relay: Relay | None = None
        self.forwarder: PortForwarder | None = None

    def boot(self) -> GuestConnection:
        from vmhost.ssh import SSHGuest

        t0 = time.monotonic()
        config = instance.load(self.name)
        image = guestimage.resolve()
        self.events.emit("starting", image=image.key, t=round(time.monotonic() - t0, 2))
        instance.write_seed(self.lay, config)
        port = instance.stable_port(self.lay)
        instance.write_known_hosts(self.lay, port)
        spec = instance.spec_for(
            self.lay,
            config,
            kernel=image.kernel,
            initrd=image.initrd,
            cmdline=image.cmdline,
            root_image=image.root,
            ssh_port=port,
        )
        self.hv.create(spec)
        self.hv.start(self.name)
        st = self.hv.status(self.name)
        self.events.emit(
            "vm-started", pid=st.pid, accel=st.accel, t=round(time.monotonic() - t0, 2)
        )
        guest = SSHGuest(
            host="127.0.0.1",
            port=port,
            client_key=self.lay.client_key,
            host_key_line=instance.host_key_line(self.lay),
        )
        guest.wait(SSH_TIMEOUT)
        self.events.emit("ssh-ready", port=port, t=round(time.monotonic() - t0, 2))
        sync_clock(guest)
        self.guest = guest
        preamble = api_preamble(self.lay.host_key.read_bytes())
        deadline = time.monotonic() + ENGINE_TIMEOUT
        while not ping_engine(guest, preamble, ENGINE_SOCKET):
            if time.monotonic() > deadline:
                self.events.emit("engine-timeout", message="engine did not answer /_ping")
                break
            time.sleep(0.3)
        else:
            self.events.emit("engine-ready", t=round(time.monotonic() - t0, 2))
        # Started once the engine answers, so that the pool's first channels do not fail.
        endpoint = endpoint_for(self.lay.relay_socket, self.lay.relay_json)
        self.relay = Relay(
            endpoint,
            guest,
            preamble=preamble,
            engine_socket=ENGINE_SOCKET,
            pool_size=POOL_SIZE,
        )
        self.relay.start()
        self.events.emit("ready", socket=str(endpoint), t=round(time.monotonic() - t0, 2))
        return guest

    def _notify(self, action: str, port: int, error: str) -> None:
        self.events.emit(action, message=error, port=port)

    def follow_guest_events(self, guest: GuestConnection) -> None:
        """Stream ``guestagent events`` forever, reconnecting with backoff."""
        self.forwarder = PortForwarder(guest, notify=self._notify)
        backoff = 0.5
        engine_up: bool | None = None
        while not self.stopping.is_set():
            try:
                stream = guest.open_exec(EVENTS)
            except CoveError as e:
                log.warning("events: %s", e)
                self.stopping.wait(backoff)
                backoff = min(backoff * 2, 10)
                continue
            buf = b""
            try:
                while chunk := stream.recv(65536):
                    backoff = 0.5
                    buf += chunk
                    *lines, buf = buf.split(b"\n")
                    for line in lines:
                        ev = Event.from_line(line)
                        self.forwarder.apply(ev)
                        if ev.type == "engine" and (ev.state == "up") != engine_up:
                            engine_up = ev.state == "up"
                            self.events.emit(f"engine-{ev.state}")
            except (OSError, EOFError, CoveError) as e:
                log.warning("events stream: %s", e)
            finally:
                stream.close()
            if not self.stopping.is_set():
                self.events.emit("ssh-reconnect")
                self.stopping.wait(backoff)

    def watch_clock(self, guest: GuestConnection) -> None:
        offset = time.time() - time.monotonic()
        while not self.stopping.wait(5.0):
            now_offset = time.time() - time.monotonic()
            if abs(now_offset - offset) > CLOCK_JUMP:
                self.events.emit("clock-resync", jump=round(now_offset - offset, 1))
                sync_clock(guest)
            offset = now_offset

    def stop(self) -> None:
        self.stopping.set()
        self.events.emit("stopping")
        if self.relay:
            r = self.relay
            log.info(
                "relay: %d connections %s, pool hits %d misses %d stale %d, pings answered %d",
                r.connections,
                r.by_path,
                r.pool.hits,
                r.pool.misses,
                r.stale,
                r.pings_answered,
            )
            r.close()
        if self.forwarder:
            self.forwarder.close()
        if self.guest is not None:
            with contextlib.suppress(CoveError):
                self.guest.run("guestagent poweroff", timeout=5)
            self.guest.close()
        with contextlib.suppress(CoveError):
            self.hv.stop(self.name, timeout=20)
        self.events.emit("stopped")


def run(name: str) -> int:
    lay = layout.InstanceLayout.named(name)
    events = EventLog(lay.events)
    sup = Supervisor(name, get_backend(), events)
    stop_requested = threading.Event()

    def on_signal(_sig: int, _frame: object) -> None:
        stop_requested.set()

    def drop_ssh(_sig: int, _frame: object) -> None:
        # Fault injection for tests: drop the SSH TCP connection as a network failure would.
        kill = getattr(sup.guest, "kill_connection", None)
        if kill is not None:
            threading.Thread(target=kill, daemon=True).start()

    if hasattr(signal, "SIGUSR1"):  # not on Windows
        signal.signal(signal.SIGUSR1, drop_ssh)
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    lay.supervisor_pid.write_text(f"{os.getpid()}\n")
    try:
        guest = sup.boot()
        threading.Thread(target=sup.follow_guest_events, args=(guest,), daemon=True).start()
        threading.Thread(target=sup.watch_clock, args=(guest,), daemon=True).start()
        while not stop_requested.wait(1.0):
            if sup.hv.status(name).state.value != "running":
                events.emit("error", message="vm stopped unexpectedly")
                break
    except CoveError as e:
        events.emit("error", message=str(e))
        log.error("%s", e)
        with contextlib.suppress(CoveError):
            sup.hv.stop(name, timeout=0)
        return 1
    finally:
        if stop_requested.is_set() or sup.guest is not None:
            sup.stop()
        with contextlib.suppress(FileNotFoundError):
            lay.supervisor_pid.unlink()
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m vmhost.supervisor")
    p.add_argument("name")
    args = p.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO,
        stream=sys.stderr,
        format='{"t":%(created).3f,"level":"%(levelname)s","msg":"%(message)s"}',
    )
    try:
        return run(args.name)
    except Unavailable as e:
        log.error("%s", e)
        return 1


if __name__ == "__main__":
    sys.exit(main())
