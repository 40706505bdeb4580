"""Docker's ``--user`` resolution against the container's own /etc/passwd and /etc/group.

Same rules as moby/sys/user ``GetExecUser``: names must exist in the files,
numbers need not; with no explicit group the user's primary group is used and
every group in /etc/group that lists the user by name becomes a supplementary
group. ``--group-add`` entries (names or numbers) are added on top, after the primary
gid, which moby also lists as a supplementary group.
"""

from __future__ import annotations

from dataclasses import dataclass

from runtime.api.errors import InvalidArgument


@dataclass(frozen=True, slots=True)
class ExecUser:
    uid: int
    gid: int
    groups: tuple[int, ...]
    home: str
    name: str


@dataclass(frozen=True, slots=True)
class _Passwd:
    name: str
    uid: int
    gid: int
    home: str


@dataclass(frozen=True, slots=True)
class _Group:
    name: str
    gid: int
    members: tuple[str, ...]


def _lines(path: str) -> list[list[str]]:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            text = f.read()
    except OSError:
        return []
    return [line.split(":") for line in text.splitlines() if line and not line.startswith("#")]


def parse_passwd(path: str) -> list[_Passwd]:
    out = []
    for p in _lines(path):
        if len(p) >= 6 and p[2].isdigit() and p[3].isdigit():
            out.append(_Passwd(p[0], int(p[2]), int(p[3]), p[5]))
    return out


def parse_group(path: str) -> list[_Group]:
    out = []
    for g in _lines(path):
        if len(g) >= 3 and g[2].isdigit():
            members = tuple(m for m in (g[3].split(",") if len(g) > 3 else []) if m)
            out.append(_Group(g[0], int(g[2]), members))
    return out


def _find_user(users: list[_Passwd], spec: str) -> _Passwd | None:
    for u in users:
        if u.name == spec:
            return u
    if spec.isdigit():
        for u in users:
            if u.uid == int(spec):
                return u
    return None


def _find_group(groups: list[_Group], spec: str) -> _Group | None:
    for g in groups:
        if g.name == spec:
            return g
    if spec.isdigit():
        for g in groups:
            if g.gid == int(spec):
                return g
    return None


def resolve_user(
    spec: str,
    additional: tuple[str, ...] = (),
    passwd_path: str = "/etc/passwd",
    group_path: str = "/etc/group",
) -> ExecUser:
    """Resolve ``user[:group]`` as Docker does; raises InvalidArgument on an unknown name."""
    user_part, _, group_part = spec.partition(":")
    users = parse_passwd(passwd_path)
    groups = parse_group(group_path)
    user_part = user_part or "0"
    found = _find_user(users, user_part)
    if found is None:
        if not user_part.isdigit():
            raise InvalidArgument(
                f"unable to find user {user_part}: no matching entries in passwd file"
            )
        found = _Passwd("", int(user_part), 0, "/")
    gid = found.gid
    supplementary: list[int] = []
    if group_part:
        group = _find_group(groups, group_part)
        if group is None and not group_part.isdigit():
            raise InvalidArgument(
                f"unable to find group {group_part}: no matching entries in group file"
            )
        gid = group.gid if group is not None else int(group_part)
    elif found.name:
        supplementary = [g.gid for g in groups if found.name in g.members]
    for extra in additional:
        group = _find_group(groups, extra)
        if group is None and not extra.isdigit():
            raise InvalidArgument(
                f"unable to find group {extra}: no matching entries in group file"
            )
        supplementary.append(group.gid if group is not None else int(extra))
    # Like moby's getUser (since the 20.10 fix for GHSA-rc4r-wh2q-q6c4): the primary gid is
    # also the first supplementary group, so `id` shows groups=<gid>,… as under Docker.
    ordered = tuple(dict.fromkeys([gid, *supplementary]))
    return ExecUser(found.uid, gid, ordered, found.home or "/", found.name)
