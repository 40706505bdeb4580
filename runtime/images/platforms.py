"""Platforms (os/architecture/variant) as OCI names, and matching for manifest lists."""

from __future__ import annotations

import platform
from dataclasses import dataclass

from runtime.api.errors import InvalidArgument

_ARCH = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64",
         "armv7l": "arm", "armv6l": "arm", "i386": "386", "i686": "386", "ppc64le": "ppc64le",
         "s390x": "s390x", "riscv64": "riscv64"}
_VARIANT = {"armv7l": "v7", "armv6l": "v6", "aarch64": "v8"}


@dataclass(frozen=True, slots=True)
class Platform:
    os: str
    architecture: str
    variant: str = ""

    def __str__(self) -> str:
        return "/".join(p for p in (self.os, self.architecture, self.variant) if p)

    def matches(self, other: dict[str, object]) -> bool:
        """Whether a manifest list entry's ``platform`` object is this platform."""
        if other.get("os") != self.os or other.get("architecture") != self.architecture:
            return False
        variant = str(other.get("variant") or "")
        if not self.variant or not variant:
            return True
        return variant == self.variant


def host() -> Platform:
    machine = platform.machine()
    arch = _ARCH.get(machine, machine)
    return Platform("linux", arch, _VARIANT.get(machine, "") if arch == "arm" else "")


def parse(text: str) -> Platform:
    """``linux/amd64``, ``linux/arm/v7``, ``amd64`` (os defaults to linux)."""
    if not text:
        return host()
    parts = text.lower().split("/")
    if len(parts) == 1:
        parts = ["linux", *parts]
    if len(parts) > 3 or not all(parts):
        raise InvalidArgument(f"invalid platform {text!r}: want os/arch[/variant]")
    arch = _ARCH.get(parts[1], parts[1])
    return Platform(parts[0], arch, parts[2] if len(parts) == 3 else "")
