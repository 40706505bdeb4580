"""Hypervisor backends by name (podman's provider.Get, Lima's registry).

``COVE_VM_BACKEND`` overrides the platform default. Linux: ``libvirt``. macOS
(Virtualization.framework) and Windows (Hyper-V) backends plug in here later; until then
they are reported as unsupported rather than failing at import.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable

from runtime.api.errors import InvalidArgument, Unavailable
from vmhost.hypervisor import Hypervisor


def _libvirt() -> Hypervisor:
    try:
        from vmhost.backends.libvirt import LibvirtHypervisor
    except ImportError as e:
        raise Unavailable("libvirt backend: pip install 'cove[vm]' (libvirt-python)") from e
    return LibvirtHypervisor()


def _fake() -> Hypervisor:
    from vmhost.testing import FakeHypervisor

    return FakeHypervisor()


BACKENDS: dict[str, Callable[[], Hypervisor]] = {"libvirt": _libvirt, "fake": _fake}
PLATFORM_DEFAULT = {"linux": "libvirt", "darwin": "vz", "win32": "hyperv"}


def default_name() -> str:
    return os.environ.get("COVE_VM_BACKEND") or PLATFORM_DEFAULT.get(sys.platform, "libvirt")


def supported() -> list[str]:
    return sorted(BACKENDS)


def get(name: str | None = None) -> Hypervisor:
    name = name or default_name()
    factory = BACKENDS.get(name)
    if factory is None:
        raise InvalidArgument(f"vm backend {name!r} not supported here (have: {supported()})")
    return factory()
