"""What the end-to-end network tests share: the real docker CLI against a test engine, and
a GET on a published host port that waits for the port to answer."""

from __future__ import annotations

import socket
import subprocess
import time
from typing import Any


def cli(engine: Any, *args: str, check: bool = True,
        timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """``docker -H <engine> ARGS``; with *check*, a failure fails the test with its stderr."""
    proc = subprocess.run(["docker", "-H", engine.url, *args], capture_output=True, text=True,
                          timeout=timeout, check=False)
    if check and proc.returncode != 0:
        raise AssertionError(f"docker {' '.join(args)}: {proc.returncode}\n{proc.stderr}")
    return proc


def http_get(port: int, timeout: float) -> bytes:
    """The raw answer to ``GET /`` on 127.0.0.1:*port*, retried until something answers
    (a published port takes a moment after ``run -d``) or *timeout* seconds pass."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
                s.sendall(b"GET / HTTP/1.0\r\n\r\n")
                data = b""
                while chunk := s.recv(4096):
                    data += chunk
                if data:
                    return data
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"127.0.0.1:{port} did not answer")
        time.sleep(0.1)
