"""The guest agent's wire format: JSON lines on stdout of ``guestagent events`` / ``info``.

Both sides import this module (vmhost parses what guestagent writes), so it is stdlib only.
Every line is one JSON object with a ``type``:

- ``snapshot``: the full set of listening ports, sent first and after each reconnect;
  the host reconciles its forwards against it.
- ``port``: ``action`` is ``open`` or ``close`` for one (proto, port).
- ``engine``: ``state`` is ``up`` or ``down`` (the engine socket answers ``/_ping`` or not).
- ``heartbeat``: sent every few seconds so the host notices a dead channel.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from typing import Any

from runtime.api.errors import InvalidArgument

ENGINE_SOCKET = "/run/cove/engine.sock"
# The Docker API relay's guest end: PID 1 listens on guest loopback only and splices each
# connection (one SSH direct-tcpip channel, no process per connection) to ENGINE_SOCKET.
# Loopback is shared with --network host containers, so every connection must open with
# api_preamble(): a token derived from the instance's SSH host key, which both the host
# and PID 1 hold (the seed disk) and containers do not.
API_PORT = 23750
API_KEY_FILE = "/run/cove/ssh/ssh_host_ed25519_key"
_API_MAGIC = b"COVE-API "


def api_preamble(host_key: bytes) -> bytes:
    """The fixed-length first line of every API relay connection (see API_PORT)."""
    token = hashlib.sha256(b"cove-api-relay\0" + host_key).hexdigest().encode()
    return _API_MAGIC + token + b"\n"


API_PREAMBLE_LEN = len(api_preamble(b""))


@dataclass(frozen=True, slots=True, kw_only=True, order=True)
class Port:
    """One listening socket in the guest, as the host forwards it (bind address ignored)."""

    proto: str  # "tcp"
    port: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Event:
    type: str  # snapshot | port | engine | heartbeat
    action: str = ""  # port: open | close
    state: str = ""  # engine: up | down
    port: Port | None = None
    ports: tuple[Port, ...] = ()
    time: float = 0.0

    def to_line(self) -> str:
        obj: dict[str, Any] = {"type": self.type, "time": round(self.time, 3)}
        if self.action:
            obj["action"] = self.action
        if self.state:
            obj["state"] = self.state
        if self.port is not None:
            obj["port"] = asdict(self.port)
        if self.type == "snapshot":
            obj["ports"] = [asdict(p) for p in self.ports]
        return json.dumps(obj, sort_keys=True) + "\n"

    @classmethod
    def from_line(cls, line: str | bytes) -> Event:
        try:
            obj = json.loads(line)
            port = obj.get("port")
            return cls(
                type=str(obj["type"]),
                action=str(obj.get("action", "")),
                state=str(obj.get("state", "")),
                port=Port(proto=str(port["proto"]), port=int(port["port"])) if port else None,
                ports=tuple(
                    Port(proto=str(p["proto"]), port=int(p["port"])) for p in obj.get("ports", ())
                ),
                time=float(obj.get("time", 0.0)),
            )
        except (ValueError, KeyError, TypeError) as e:
            raise InvalidArgument(f"guest event {line!r}: {e}") from e
