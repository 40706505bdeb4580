"""Digests, chain IDs and short IDs (the OCI image spec's identifiers)."""

from __future__ import annotations

import hashlib
import re

from runtime.api.errors import InvalidArgument

_SHA256 = re.compile(r"^sha256:[a-f0-9]{64}$")


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def check(digest: str) -> str:
    """*digest* if it is ``sha256:<64 lowercase hex>``; only sha256 is stored."""
    if not _SHA256.match(digest):
        raise InvalidArgument(f"invalid digest {digest!r}: want sha256:<64 hex>")
    return digest


def hex_of(digest: str) -> str:
    return check(digest)[len("sha256:") :]


def short(digest_or_id: str) -> str:
    """The 12-hex form Docker prints."""
    return digest_or_id.removeprefix("sha256:")[:12]


def chain_ids(diff_ids: list[str] | tuple[str, ...]) -> list[str]:
    """ChainID(L0) = DiffID(L0); ChainID(Ln) = sha256(ChainID(Ln-1) + " " + DiffID(Ln))."""
    out: list[str] = []
    for diff_id in diff_ids:
        check(diff_id)
        out.append(diff_id if not out else sha256(f"{out[-1]} {diff_id}".encode()))
    return out
