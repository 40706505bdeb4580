"""One error hierarchy for the whole project.

Every error a user can see is a :class:`CoveError`. Its *kind* decides the HTTP
status on the wire (Docker's conventions) and the CLI's exit code, so the
engine, the client and the CLI agree without tables scattered around::

    CoveError                      500 / exit 125
    ├── InvalidArgument            400 / exit 125   bad request, malformed input
    ├── NotFound                   404 / exit 125   no such container / image / ...
    │   └── CommandNotFound        404 / exit 127   (start) executable not found
    ├── Conflict                   409 / exit 125   name in use, container running, ...
    ├── NotModified                304              already started / stopped
    ├── CannotInvoke               400 / exit 126   (start) permission denied on exec
    ├── Unavailable                503 / exit 125   engine down, feature off
    ├── Forbidden                  403 / exit 125
    └── Internal                   500 / exit 125

Messages follow moby's wording where clients match on it
(``No such container: X``) and are lower-case context chains otherwise.
"""

from __future__ import annotations

from typing import ClassVar


class CoveError(Exception):
    """Base of every user-facing error; carries its HTTP status and CLI exit code."""

    status: ClassVar[int] = 500
    exit_code: ClassVar[int] = 125

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class InvalidArgument(CoveError):
    status = 400


class NotFound(CoveError):
    status = 404


class CommandNotFound(NotFound):
    """The container's command does not exist: Docker answers 404 at start, CLI exits 127."""

    exit_code = 127


class CannotInvoke(CoveError):
    """The container's command exists but cannot be executed: CLI exits 126."""

    status = 400
    exit_code = 126


class Conflict(CoveError):
    status = 409


class NotModified(CoveError):
    status = 304


class Forbidden(CoveError):
    status = 403


class Unavailable(CoveError):
    status = 503


class Internal(CoveError):
    status = 500


_BY_STATUS: dict[int, type[CoveError]] = {
    400: InvalidArgument,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
    304: NotModified,
    503: Unavailable,
    500: Internal,
}


def from_status(status: int, message: str) -> CoveError:
    """Rebuild the error class a response's status stands for (client side)."""
    cls = _BY_STATUS.get(status, CoveError)
    if cls is NotFound and "executable file not found" in message:
        cls = CommandNotFound
    elif cls is InvalidArgument and "permission denied" in message and "exec" in message:
        cls = CannotInvoke
    return cls(message)
