"""SSHGuest: the guest over one paramiko Transport, pinned host key, reconnect on demand.

Every relay connection and port forward is a channel on the same Transport (sshd's
MaxSessions is raised in the guest image): ``direct-streamlocal@openssh.com`` to the
engine's Unix socket (:meth:`SSHGuest.open_unix`), ``direct-tcpip`` to guest ports, exec
sessions. When the TCP connection dies (guest reboot, host sleep, a killed sshd), the next
open reconnects; channels of the old connection simply see EOF, which their clients see as
a closed connection.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from pathlib import Path
from typing import Any

import paramiko
from paramiko.common import cMSG_CHANNEL_OPEN
from paramiko.message import Message

from runtime.api.errors import Forbidden, Unavailable
from vmhost.streams import Stream

log = logging.getLogger(__name__)
logging.getLogger("paramiko").setLevel(logging.CRITICAL)  # it logs tracebacks for retries

USER = "root"


class ChannelStream:
    """A paramiko Channel as a Stream (an exec channel merges nothing: stderr is dropped)."""

    def __init__(self, channel: paramiko.Channel) -> None:
        self.channel = channel

    def recv(self, n: int) -> bytes:
        return self.channel.recv(n)

    def sendall(self, data: bytes) -> None:
        if self.channel.closed:
            raise EOFError("channel closed")
        self.channel.sendall(data)

    def shutdown_write(self) -> None:
        try:
            self.channel.shutdown_write()
        except (OSError, EOFError, paramiko.SSHException):
            pass

    def close(self) -> None:
        self.channel.close()


STREAMLOCAL = "direct-streamlocal@openssh.com"


class _Transport(paramiko.Transport):
    """paramiko's Transport plus OpenSSH's ``direct-streamlocal@openssh.com`` channel.

    Transport.open_channel writes the type-specific fields of CHANNEL_OPEN only for the
    kinds it knows, so this is its body with OpenSSH's fields for a Unix socket (PROTOCOL
    2.4: string socket path, string reserved, uint32 reserved). It uses the same private
    helpers open_channel does; should a paramiko release rename them, the AttributeError
    surfaces as Unavailable and the relay falls back to its other paths.
    """

    def open_streamlocal(self, path: str, timeout: float) -> paramiko.Channel:
        t: Any = self  # the private helpers below are not in paramiko's type stubs
        if not t.active:
            raise paramiko.SSHException("SSH session not active")
        with t.lock:
            window = t._sanitize_window_size(None)
            packet = t._sanitize_packet_size(None)
            chanid = t._next_channel()
            m = Message()
            m.add_byte(cMSG_CHANNEL_OPEN)
            m.add_string(STREAMLOCAL)
            m.add_int(chanid)
            m.add_int(window)
            m.add_int(packet)
            m.add_string(path)
            m.add_string("")
            m.add_int(0)
            chan: Any = paramiko.Channel(chanid)
            t._channels.put(chanid, chan)
            t.channel_events[chanid] = event = threading.Event()
            t.channels_seen[chanid] = True
            chan._set_transport(self)
            chan._set_window(window, packet)
        t._send_user_message(m)
        if not event.wait(timeout):
            raise paramiko.SSHException("Timeout opening channel.")
        got: paramiko.Channel | None = t._channels.get(chanid)
        if got is not None:
            return got
        raise self.get_exception() or paramiko.SSHException("Unable to open channel.")


class SSHGuest:
    def __init__(
        self,
        *,
        host: str,
        port: int,
        client_key: Path,
        host_key_line: str,
        connect_timeout: float = 10.0,
    ) -> None:
        self.host = host
        self.port = port
        self.key = paramiko.Ed25519Key.from_private_key_file(str(client_key))
        kind, blob = host_key_line.split()[:2]
        self.pinned = paramiko.PKey.from_type_string(kind, __import__("base64").b64decode(blob))
        self.connect_timeout = connect_timeout
        self._transport: paramiko.Transport | None = None
        self._lock = threading.Lock()
        self.reconnects = 0

    def _connect(self) -> paramiko.Transport:
        try:
            sock = socket.create_connection((self.host, self.port), timeout=self.connect_timeout)
        except OSError as e:
            raise Unavailable(f"ssh {self.host}:{self.port}: {e}") from e
        # Every relay request is a few small SSH packets; with Nagle on, the second one of a
        # burst (the relay's token line, then the request) waits for the guest's ACK.
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        t = _Transport(sock)
        try:
            t.start_client(timeout=self.connect_timeout)
            remote = t.get_remote_server_key()
            if remote.asbytes() != self.pinned.asbytes():
                t.close()
                raise Forbidden(f"ssh {self.host}:{self.port}: host key mismatch (not the VM's)")
            t.auth_publickey(USER, self.key)
        except (paramiko.SSHException, OSError, EOFError) as e:
            t.close()
            raise Unavailable(f"ssh {self.host}:{self.port}: {e}") from e
        t.set_keepalive(5)
        sock.settimeout(None)
        return t

    def transport(self) -> paramiko.Transport:
        with self._lock:
            t = self._transport
            if t is not None and t.is_active():
                return t
            if t is not None:
                self.reconnects += 1
                log.info("ssh: connection lost, reconnecting")
                t.close()
            self._transport = self._connect()
            return self._transport

    def wait(self, timeout: float) -> float:
        """Connect, retrying until *timeout*; returns seconds waited. Raises Unavailable."""
        t0 = time.monotonic()
        while True:
            try:
                self.transport()
                return time.monotonic() - t0
            except Unavailable:
                if time.monotonic() - t0 > timeout:
                    raise
                time.sleep(0.3)

    def _drop(self, t: paramiko.Transport, error: Exception) -> bool:
        """After an open on *t* failed with *error*: True when the caller should retry on a
        new connection, having dropped *t*. A refusal is the guest answering, so *t* lives
        on: tearing it down would cut every other channel on it (the relay's clients, port
        forwards, the events stream). Only *t* is closed, never a newer transport another
        thread has connected meanwhile (its fresh channels would die with it)."""
        if isinstance(error, paramiko.ChannelException):
            return False
        with self._lock:
            if self._transport is t:
                self._transport = None
        t.close()
        return True

    def _session(self) -> paramiko.Channel:
        for attempt in (1, 2):
            t = self.transport()
            try:
                return t.open_session(timeout=self.connect_timeout)
            except (paramiko.SSHException, OSError, EOFError) as e:
                if attempt == 2 or not self._drop(t, e):
                    raise Unavailable(f"ssh open session: {e}") from e
        raise AssertionError("unreachable")

    def open_exec(self, command: str) -> Stream:
        ch = self._session()
        try:
            ch.exec_command(command)
        except (paramiko.SSHException, OSError, EOFError) as e:
            raise Unavailable(f"ssh exec {command!r}: {e}") from e
        return ChannelStream(ch)

    def open_tcp(self, port: int) -> Stream:
        for attempt in (1, 2):
            t = self.transport()
            try:
                ch = t.open_channel(
                    "direct-tcpip",
                    ("127.0.0.1", port),
                    ("127.0.0.1", 0),
                    timeout=self.connect_timeout,
                )
                return ChannelStream(ch)
            except paramiko.ChannelException as e:
                raise Unavailable(f"guest port {port}: {e.text}") from e
            except (paramiko.SSHException, OSError, EOFError) as e:
                if attempt == 2 or not self._drop(t, e):
                    raise Unavailable(f"ssh direct-tcpip {port}: {e}") from e
        raise AssertionError("unreachable")

    def open_unix(self, path: str) -> Stream:
        for attempt in (1, 2):
            t = self.transport()
            try:
                assert isinstance(t, _Transport)
                return ChannelStream(t.open_streamlocal(path, self.connect_timeout))
            except paramiko.ChannelException as e:
                raise Unavailable(f"guest socket {path}: {e.text}") from e
            except AttributeError as e:  # see _Transport
                raise Unavailable(f"ssh {STREAMLOCAL}: paramiko changed: {e}") from e
            except (paramiko.SSHException, OSError, EOFError) as e:
                if attempt == 2 or not self._drop(t, e):
                    raise Unavailable(f"ssh {STREAMLOCAL} {path}: {e}") from e
        raise AssertionError("unreachable")

    def run(self, command: str, timeout: float = 30.0) -> tuple[int, bytes]:
        ch = self._session()
        ch.settimeout(timeout)
        try:
            ch.exec_command(command)
            ch.shutdown_write()
            out = bytearray()
            while data := ch.recv(65536):
                out += data
            return ch.recv_exit_status(), bytes(out)
        except (TimeoutError, paramiko.SSHException, OSError) as e:
            raise Unavailable(f"ssh run {command!r}: {e}") from e
        finally:
            ch.close()

    def kill_connection(self) -> None:
        """Drop the TCP connection abruptly (tests: the relay must recover)."""
        with self._lock:
            if self._transport is not None:
                self._transport.sock.close()

    def close(self) -> None:
        with self._lock:
            if self._transport is not None:
                self._transport.close()
                self._transport = None
