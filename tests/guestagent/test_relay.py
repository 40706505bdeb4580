"""dial-stdio against a Unix-socket HTTP server: what each relay connection runs in the guest."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.vmhost.httpserver import unix_http_server


def test_dial_stdio_relays_a_request(tmp_path: Path) -> None:
    sock = tmp_path / "engine.sock"
    with unix_http_server(sock):
        out = subprocess.run(
            [sys.executable, "-m", "guestagent", "dial-stdio", "--socket", str(sock)],
            input=b"GET /_ping HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
            capture_output=True,
            timeout=20,
            check=True,
        )
    assert out.stdout.startswith(b"HTTP/1.1 200") and out.stdout.endswith(b"OK")


def test_dial_stdio_without_engine_fails_cleanly(tmp_path: Path) -> None:
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "guestagent",
            "dial-stdio",
            "--socket",
            str(tmp_path / "no"),
            "--wait",
            "0.2",
        ],
        capture_output=True,
        timeout=20,
        check=False,
    )
    assert out.returncode != 0 and b"dial" in out.stderr
