"""The Docker API relay's fallback guest end: guest-loopback TCP -> the engine's Unix socket.

The host relay normally opens an OpenSSH ``direct-streamlocal@openssh.com`` channel straight
to the engine socket (no hop here). This proxy serves when sshd refuses that, or when its
connect fails because the engine's listen backlog is full (sshd does not wait; this does):
PID 1 runs :class:`ApiProxy` on a thread, listening on 127.0.0.1:API_PORT (guest loopback
only), and the host opens a ``direct-tcpip`` channel to it. Either way a connection costs no
process in the guest, unlike ``guestagent dial-stdio`` (sshd session + socat, 130-180 ms
under TCG), the last resort.

Guest loopback is also reachable from ``--network host`` containers, so a connection is
spliced only after it sent :func:`guestagent.protocol.api_preamble` (a token derived from
the SSH host key on the seed disk); anything else is closed unanswered.
"""

from __future__ import annotations

import hmac
import logging
import socket
import threading

from guestagent.protocol import API_PREAMBLE_LEN
from guestagent.relay import connect_unix
from runtime.api.errors import CoveError

log = logging.getLogger(__name__)

CHUNK = 64 * 1024
PREAMBLE_TIMEOUT = 10.0


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    """Up to *n* bytes: fewer at EOF or when the socket's timeout expires."""
    buf = b""
    while len(buf) < n:
        try:
            chunk = sock.recv(n - len(buf))
        except TimeoutError:
            break
        if not chunk:
            break
        buf += chunk
    return buf


def _pump(src: socket.socket, dst: socket.socket) -> None:
    """Copy src -> dst, then pass the EOF on as a half-close."""
    try:
        while data := src.recv(CHUNK):
            dst.sendall(data)
    except OSError:
        pass
    finally:
        try:
            dst.shutdown(socket.SHUT_WR)
        except OSError:
            pass


class ApiProxy:
    def __init__(
        self,
        preamble: bytes,
        *,
        engine_socket: str,
        host: str = "127.0.0.1",
        port: int = 0,
        engine_wait: float = 60.0,
    ) -> None:
        if len(preamble) != API_PREAMBLE_LEN:
            raise ValueError("api preamble has the wrong length")
        self.preamble = preamble
        self.engine_socket = engine_socket
        self.engine_wait = engine_wait
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind((host, port))
        self._sock.listen(128)
        self.port: int = self._sock.getsockname()[1]
        self.rejected = 0
        self.preamble_timeout = PREAMBLE_TIMEOUT

    def start(self) -> threading.Thread:
        t = threading.Thread(target=self.serve_forever, name="apiproxy", daemon=True)
        t.start()
        return t

    def serve_forever(self) -> None:
        while True:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return  # closed
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn: socket.socket) -> None:
        engine: socket.socket | None = None
        try:
            # The engine writes a response in several pieces; with Nagle on, each piece after
            # the first waits for sshd's delayed ACK (40 ms per request).
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            conn.settimeout(self.preamble_timeout)
            got = _recv_exact(conn, API_PREAMBLE_LEN)
            if not hmac.compare_digest(got, self.preamble):
                self.rejected += 1
                log.warning("api relay: connection without the token, closed")
                return
            conn.settimeout(None)
            engine = connect_unix(self.engine_socket, self.engine_wait)
            pump = threading.Thread(target=_pump, args=(conn, engine), daemon=True)
            pump.start()
            _pump(engine, conn)  # the engine's EOF ends the connection, as in dial-stdio
            try:
                conn.shutdown(socket.SHUT_RDWR)  # wakes the other pump
            except OSError:
                pass
        except (OSError, CoveError) as e:
            log.debug("api relay: %s", e)
        finally:
            conn.close()
            if engine is not None:
                engine.close()

    def close(self) -> None:
        try:
            self._sock.shutdown(socket.SHUT_RDWR)  # wakes accept()
        except OSError:
            pass
        self._sock.close()
