"""Helpers for builds against the session's real engine (tests/conftest.py ``engine``)."""

from __future__ import annotations

import io
import tarfile
from collections.abc import Iterator
from typing import Any

import pytest


def context_tar(files: dict[str, str | bytes], mode: int = 0o644) -> io.BytesIO:
    """A build context as a tar in memory, as a client would send it."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, content in files.items():
            data = content.encode() if isinstance(content, str) else content
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), mode
            tar.addfile(info, io.BytesIO(data))
    buf.seek(0)
    return buf


@pytest.fixture()
def build(docker: Any) -> Iterator[Any]:
    """``build(files, **kw) -> (messages, output text, image id or None)`` via POST /build."""

    def run(files: dict[str, str | bytes], **kw: Any) -> tuple[list[dict[str, Any]], str,
                                                               str | None]:
        kw.setdefault("rm", True)
        msgs = list(docker.api.build(fileobj=context_tar(files), custom_context=True,
                                     decode=True, **kw))
        text = "".join(m.get("stream", "") for m in msgs)
        image = next((m["aux"]["ID"] for m in msgs if "aux" in m), None)
        return msgs, text, image

    yield run
