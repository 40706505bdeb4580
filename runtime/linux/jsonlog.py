"""Docker's json-file log driver: one JSON object per line, rotated by size.

Each container output line becomes ``{"log": "...\\n", "stream": "stdout",
"time": "<RFC3339Nano UTC>"}``. Lines longer than 16 KiB are cut into partial
messages without the newline, as dockerd's copier does, and whatever is left
when a stream closes is flushed as-is.
"""

from __future__ import annotations

import json
import os
import time

MAX_LINE = 16 * 1024
# One encoder for every entry: json.dumps with options would build a new one per line.
_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))


def rfc3339nano(ns: int) -> str:
    """Go's time.RFC3339Nano in UTC: trailing zeros of the fraction dropped."""
    secs, frac = divmod(ns, 1_000_000_000)
    base = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(secs))
    fraction = f"{frac:09d}".rstrip("0")
    return f"{base}.{fraction}Z" if fraction else f"{base}Z"


def encode_entry(data: bytes, stream: str, ns: int) -> bytes:
    entry = {"log": data.decode("utf-8", "replace"), "stream": stream, "time": rfc3339nano(ns)}
    return _ENCODER.encode(entry).encode() + b"\n"


class JsonLog:
    """Appends container output to the log file; never drops data (writes block).

    Paths are plain strings (no pathlib): it lives in the long-lived monitor, where
    every object touched costs memory (see runtime.linux.zygote).
    """

    def __init__(self, path: str, max_size: int | None = None, max_file: int = 1) -> None:
        self.path = path
        self.max_size = max_size if max_size and max_size > 0 else None
        self.max_file = max(max_file, 1)
        self.pending: dict[str, bytearray] = {"stdout": bytearray(), "stderr": bytearray()}
        self.fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o640)
        self.size = os.fstat(self.fd).st_size

    def write(self, stream: str, data: bytes) -> None:
        buf = self.pending[stream]
        buf += data
        now = time.time_ns()
        while True:
            nl = buf.find(b"\n")
            if nl < 0 or nl >= MAX_LINE:
                if len(buf) < MAX_LINE:
                    break
                cut = MAX_LINE
            else:
                cut = nl + 1
            self._append(encode_entry(bytes(buf[:cut]), stream, now))
            del buf[:cut]

    def flush(self, stream: str | None = None) -> None:
        """Write out partial lines (a stream closed or the container exited)."""
        for name in [stream] if stream else list(self.pending):
            buf = self.pending[name]
            if buf:
                self._append(encode_entry(bytes(buf), name, time.time_ns()))
                buf.clear()

    def close(self) -> None:
        self.flush()
        os.close(self.fd)

    def _append(self, line: bytes) -> None:
        if self.max_size is not None and self.size >= self.max_size:
            self._rotate()
        view = memoryview(line)
        while view:
            view = view[os.write(self.fd, view):]
        self.size += len(line)

    def _rotate(self) -> None:
        os.close(self.fd)
        if self.max_file > 1:
            for i in range(self.max_file - 1, 0, -1):
                src = self.path if i == 1 else f"{self.path}.{i - 1}"
                if os.path.exists(src):
                    os.replace(src, f"{self.path}.{i}")
            flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC
        else:
            flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND | os.O_CLOEXEC
        self.fd = os.open(self.path, flags, 0o640)
        self.size = 0
