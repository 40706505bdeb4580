"""Images, volumes and networks tables, with a "used by" column fed from containers.

These change rarely and their events carry little, so the controller re-lists
one kind (debounced) when an event of that kind arrives, and the diffing
:meth:`KeyedTableModel.replace_all` keeps the view steady.
"""

from __future__ import annotations

from typing import Any

from desktop import formatting as fmt
from desktop.models.base import Column, KeyedTableModel, Row
from desktop.qt import QObject


def _usage_text(row: Row) -> str:
    users = row.get("_users") or []
    return ", ".join(users) if users else ""


class UsageMixin(KeyedTableModel):
    """Rows get a ``_users`` list (container names), set from the containers model."""

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._users: dict[str, list[str]] = {}

    def prepare(self, row: Row) -> Row:
        return {**row, "_users": self._users.get(self.key_of(row), [])}

    def set_users(self, users: dict[str, list[str]]) -> None:
        self._users = users
        for key in self.keys():
            row = self.row(key)
            if row is not None and row.get("_users") != users.get(key, []):
                self.patch(key, _users=users.get(key, []))


class ImagesModel(UsageMixin):
    columns = [
        Column("Repository", lambda r: fmt.image_repo_tag(r)[0]),
        Column("Tag", lambda r: fmt.image_repo_tag(r)[1]),
        Column("Image ID", lambda r: fmt.short_id(str(r.get("Id", "")))),
        Column("Size", lambda r: fmt.size_text(r.get("Size")), sort=lambda r: r.get("Size") or 0,
               align_right=True),
        Column("Created", lambda r: fmt.created_text(r.get("Created")),
               sort=lambda r: -(r.get("Created") or 0)),
        Column("In use", _usage_text),
    ]


class VolumesModel(UsageMixin):
    key_field = "Name"
    columns = [
        Column("Name", lambda r: str(r.get("Name", ""))),
        Column("Driver", lambda r: str(r.get("Driver", ""))),
        Column("Mountpoint", lambda r: str(r.get("Mountpoint", ""))),
        Column("Created", lambda r: str(r.get("CreatedAt", ""))[:19].replace("T", " ")),
        Column("Used by", _usage_text),
    ]


class NetworksModel(UsageMixin):
    columns = [
        Column("Name", lambda r: str(r.get("Name", ""))),
        Column("Driver", lambda r: str(r.get("Driver", ""))),
        Column("Subnet", lambda r: _subnet(r)),
        Column("ID", lambda r: fmt.short_id(str(r.get("Id", "")))),
        Column("Used by", _usage_text),
    ]


def _subnet(row: Row) -> str:
    configs = (row.get("IPAM") or {}).get("Config") or []
    return ", ".join(str(c.get("Subnet", "")) for c in configs if c.get("Subnet"))


def users_by_image(containers: list[Row]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for c in containers:
        out.setdefault(str(c.get("ImageID", "")), []).append(fmt.container_name(c))
    return out


def users_by_volume(containers: list[Row]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for c in containers:
        for m in c.get("Mounts") or []:
            if m.get("Type") == "volume" and m.get("Name"):
                out.setdefault(str(m["Name"]), []).append(fmt.container_name(c))
    return out


def users_by_network(containers: list[Row], networks: list[Row]) -> dict[str, list[str]]:
    """Keyed by network Id; container summaries name networks, not ids."""
    by_name = {str(n.get("Name")): str(n.get("Id")) for n in networks}
    out: dict[str, list[str]] = {}
    for c in containers:
        nets: dict[str, Any] = (c.get("NetworkSettings") or {}).get("Networks") or {}
        for name, ep in nets.items():
            net_id = str((ep or {}).get("NetworkID") or by_name.get(name, name))
            out.setdefault(net_id, []).append(fmt.container_name(c))
    return out
