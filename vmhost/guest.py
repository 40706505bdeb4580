"""The GuestConnection seam: how the host reaches into the guest (Colima's GuestActions).

:class:`vmhost.ssh.SSHGuest` is the real one (paramiko, one Transport, reconnects);
:class:`vmhost.testing.LocalGuest` runs guestagent on the host for tests without a VM.
"""

from __future__ import annotations

from typing import Protocol

from vmhost.streams import Stream

DIAL_STDIO = "guestagent dial-stdio"
EVENTS = "guestagent events"


class GuestConnection(Protocol):
    def open_exec(self, command: str) -> Stream:
        """Run *command* in the guest; its stdin/stdout as a Stream. Reconnects if needed.
        Raises Unavailable when the guest cannot be reached."""
        ...

    def open_unix(self, path: str) -> Stream:
        """A connection to the Unix socket *path* inside the guest. Raises Unavailable."""
        ...

    def open_tcp(self, port: int) -> Stream:
        """A TCP connection to 127.0.0.1:*port* inside the guest. Raises Unavailable."""
        ...

    def run(self, command: str, timeout: float = 30.0) -> tuple[int, bytes]:
        """Run *command* to completion: (exit status, stdout). Raises Unavailable."""
        ...

    def close(self) -> None:
        """Drop the connection (the next call reconnects). Idempotent."""
        ...
