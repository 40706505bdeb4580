"""Translating file owners between a remapped container's ids and the host's (--userns-remap).

Under ``--userns-remap`` what a container writes is stored on disk with host
(shifted) ids, e.g. container root as 100000, and every host-side view of its
files (``docker cp``, ``export``, ``commit``) must show or record the ids the
container itself sees; writes from the host (``docker cp`` in) go the other way.
moby does this with its IdentityMapping; here the maps are the container's
uid/gid maps (``runtime.spec.IdMapping``, container id first).

Reading, a host id outside every map becomes the overflow id 65534, which is what
the kernel shows the container for such a file (moby fails the whole copy there);
writing, a container id outside the maps is refused, as by moby and by the kernel.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from runtime.api.errors import InvalidArgument
from runtime.spec import IdMapping

# The kernel's default /proc/sys/kernel/overflow{u,g}id: how an unmapped id shows inside.
OVERFLOW_ID = 65534


@dataclass(frozen=True, slots=True)
class IdShift:
    """A remapped container's uid and gid maps (both non-empty)."""

    uid_mappings: tuple[IdMapping, ...]
    gid_mappings: tuple[IdMapping, ...]

    @property
    def root(self) -> tuple[int, int]:
        """The host uid and gid of the container's root."""
        return self.to_host(0, 0)

    def to_container(self, uid: int, gid: int) -> tuple[int, int]:
        """Host (on-disk) ids as the container sees them; unmapped ones as 65534."""
        return (_container_id(self.uid_mappings, uid, OVERFLOW_ID),
                _container_id(self.gid_mappings, gid, OVERFLOW_ID))

    def to_host(self, uid: int, gid: int) -> tuple[int, int]:
        """The host ids that store container ids *uid*, *gid*; InvalidArgument if unmapped."""
        return _host_id(self.uid_mappings, uid), _host_id(self.gid_mappings, gid)

    def to_json(self) -> dict[str, Any]:
        return {"uid": [_triple(m) for m in self.uid_mappings],
                "gid": [_triple(m) for m in self.gid_mappings]}

    @classmethod
    def from_json(cls, data: dict[str, Any] | None) -> IdShift | None:
        if not data:
            return None
        return cls(_maps(data["uid"]), _maps(data["gid"]))


def _container_id(maps: Sequence[IdMapping], host_id: int, unmapped: int) -> int:
    for m in maps:
        if m.host_id <= host_id < m.host_id + m.size:
            return m.container_id + host_id - m.host_id
    return unmapped


def _host_id(maps: Sequence[IdMapping], container_id: int) -> int:
    for m in maps:
        if m.container_id <= container_id < m.container_id + m.size:
            return m.host_id + container_id - m.container_id
    # moby's idtools.ToHost wording, which clients and docs already know.
    raise InvalidArgument(f"Container ID {container_id} cannot be mapped to a host ID")


def _triple(m: IdMapping) -> list[int]:
    return [m.container_id, m.host_id, m.size]


def _maps(rows: Sequence[Sequence[int]]) -> tuple[IdMapping, ...]:
    return tuple(IdMapping(container_id=int(c), host_id=int(h), size=int(s)) for c, h, s in rows)
