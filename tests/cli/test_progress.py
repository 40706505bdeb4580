from __future__ import annotations

import io
from typing import Any

from runtime.cli.progress import display

MESSAGES: list[dict[str, Any]] = [
    {"status": "Pulling from library/busybox", "id": "latest"},
    {"status": "Pulling fs layer", "id": "a3ed95caeb02"},
    {"status": "Downloading", "id": "a3ed95caeb02", "progress": "[==>   ] 1kB/2kB",
     "progressDetail": {"current": 1000, "total": 2000}},
    {"status": "Pull complete", "id": "a3ed95caeb02", "progressDetail": {}},
    {"status": "Digest: sha256:abc"},
    {"aux": {"ID": "sha256:def"}},
    {"stream": "Step 1/2 : FROM busybox\n"},
]


def test_plain_output_skips_progress_updates() -> None:
    out = io.StringIO()
    aux: list[dict[str, Any]] = []
    display(MESSAGES, out, tty=False, on_aux=aux.append)
    assert out.getvalue() == (
        "latest: Pulling from library/busybox\n"
        "a3ed95caeb02: Pulling fs layer\n"
        "a3ed95caeb02: Pull complete\n"
        "Digest: sha256:abc\n"
        "Step 1/2 : FROM busybox\n"
    )
    assert aux == [{"ID": "sha256:def"}]


def test_tty_output_redraws_layer_lines_in_place() -> None:
    out = io.StringIO()
    display(MESSAGES[:4], out, tty=True)
    text = out.getvalue()
    assert "a3ed95caeb02: Downloading [==>   ] 1kB/2kB" in text
    assert "\x1b[1A\x1b[2K\ra3ed95caeb02: Pull complete" in text
