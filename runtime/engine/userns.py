"""dockerd's ``--userns-remap``: the host ids that every container's root maps to.

``default`` uses (and creates, like dockerd's ``dockremap``) the system user
``cove-remap``, giving it subordinate ranges in /etc/subuid and /etc/subgid when
it has none; ``USER[:GROUP]`` (names or numeric ids) reads that user's ranges.
The ranges become the containers' uid/gid maps, container id 0 first; the
runtime idmaps image layers and engine-owned binds through them (rootfs.Idmap).
Host-side views of a container's files translate owners through the same maps
(:func:`container_shift`, runtime/images/idshift.py).
"""

from __future__ import annotations

import grp
import pwd
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runtime.api.errors import CoveError
from runtime.images.idshift import IdShift
from runtime.spec import IdMapping

DEFAULT_USER = "cove-remap"
SUBUID = Path("/etc/subuid")
SUBGID = Path("/etc/subgid")
# dockerd's choice for a new range: 65536 ids from the first free id at 100000 or above.
FIRST_ID = 100_000
RANGE_SIZE = 65_536


@dataclass(frozen=True, slots=True)
class Remap:
    user: str
    group: str
    uid_mappings: tuple[IdMapping, ...]
    gid_mappings: tuple[IdMapping, ...]


def resolve(value: str, subuid: Path = SUBUID, subgid: Path = SUBGID) -> Remap:
    """The maps for a ``--userns-remap`` value; a CoveError says what is missing."""
    if value == "default":
        ensure_default_user(subuid, subgid)
        user, group = DEFAULT_USER, DEFAULT_USER
    else:
        user, _, group = value.partition(":")
        user, group = _user_name(user), _group_name(group) if group else _user_name(user)
    uids = _ranges(subuid, _user_keys(user))
    gids = _ranges(subgid, _group_keys(group))
    if not uids:
        raise CoveError(f"Can't create ID mappings: no subuid ranges found for user {user!r}")
    if not gids:
        raise CoveError(f"Can't create ID mappings: no subgid ranges found for group {group!r}")
    return Remap(user, group, _maps(uids), _maps(gids))


def ensure_default_user(subuid: Path = SUBUID, subgid: Path = SUBGID) -> None:
    """dockerd's dockremap: a system user with no login, and ranges if it has none."""
    try:
        pwd.getpwnam(DEFAULT_USER)
    except KeyError:
        result = subprocess.run(
            ["useradd", "--system", "--no-create-home", "--shell", "/bin/false",
             DEFAULT_USER], capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise CoveError(f"creating user {DEFAULT_USER}: {result.stderr.strip()}") from None
    for path in (subuid, subgid):
        if not _ranges(path, {DEFAULT_USER}):
            _add_range(path, DEFAULT_USER)


def _add_range(path: Path, name: str) -> None:
    """Append *name*:START:65536 with START past every range the file already gives."""
    start = max([FIRST_ID, *(s + n for s, n in _all_ranges(path))])
    text = path.read_text() if path.exists() else ""
    if text and not text.endswith("\n"):
        text += "\n"
    path.write_text(f"{text}{name}:{start}:{RANGE_SIZE}\n")
    path.chmod(0o644)


def _all_ranges(path: Path) -> list[tuple[int, int]]:
    return [r for _, r in _entries(path)]


def _ranges(path: Path, keys: set[str]) -> list[tuple[int, int]]:
    return [r for name, r in _entries(path) if name in keys]


def _entries(path: Path) -> list[tuple[str, tuple[int, int]]]:
    """``name:start:count`` lines; malformed ones are skipped, as shadow's tools do."""
    try:
        lines = path.read_text().splitlines()
    except FileNotFoundError:
        return []
    out = []
    for line in lines:
        parts = line.strip().split(":")
        if len(parts) == 3 and parts[1].isdigit() and parts[2].isdigit() and int(parts[2]):
            out.append((parts[0], (int(parts[1]), int(parts[2]))))
    return out


def _maps(ranges: list[tuple[int, int]]) -> tuple[IdMapping, ...]:
    """Ranges in file order, packed from container id 0 (dockerd's toContainer maps)."""
    maps, next_id = [], 0
    for start, count in ranges:
        maps.append(IdMapping(container_id=next_id, host_id=start, size=count))
        next_id += count
    return tuple(maps)


def _user_name(user: str) -> str:
    try:
        return pwd.getpwuid(int(user)).pw_name if user.isdigit() else pwd.getpwnam(user).pw_name
    except KeyError:
        raise CoveError(f"--userns-remap: no such user {user!r}") from None


def _group_name(group: str) -> str:
    try:
        return grp.getgrgid(int(group)).gr_name if group.isdigit() else grp.getgrnam(group).gr_name
    except KeyError:
        raise CoveError(f"--userns-remap: no such group {group!r}") from None


def _user_keys(user: str) -> set[str]:
    """/etc/subuid may name a user or give its uid."""
    return {user, str(pwd.getpwnam(user).pw_uid)}


def _group_keys(group: str) -> set[str]:
    try:
        return {group, str(grp.getgrnam(group).gr_gid)}
    except KeyError:  # USER without :GROUP and no group of that name: subgid by name only
        return {group}


def container_shift(host_config: dict[str, Any],
                    remap: tuple[tuple[IdMapping, ...], tuple[IdMapping, ...]] | None
                    ) -> IdShift | None:
    """How a container's files translate to host ids: None when it shares the host's
    (no --userns-remap, or ``--userns=host``), else the engine's maps."""
    if remap is None or (host_config.get("UsernsMode") or "") == "host":
        return None
    return IdShift(*remap)

