"""ContainersModel: one row per container, kept current by engine events.

``apply(event)`` changes the affected row at once from what the event itself
carries (Docker puts the name, image and labels in ``Actor.Attributes``), and
returns whether that row should also be re-fetched (ports, exact status text),
which the controller does for that single container. Nothing here re-lists.
"""

from __future__ import annotations

from typing import Any

from desktop import formatting as fmt
from desktop.models.base import Column, KeyedTableModel, Row
from desktop.qt import QBrush, QColor, QObject, Qt

# Actions after which the summary (Ports, Status wording) is worth one re-fetch.
REFRESH_ACTIONS = {"create", "start", "restart", "die", "pause", "unpause", "rename", "update"}

STATE_AFTER = {
    "start": ("running", "Up Less than a second"),
    "restart": ("running", "Up Less than a second"),
    "unpause": ("running", "Up"),
    "pause": ("paused", "Up (Paused)"),
}

COL_PROJECT, COL_NAME, COL_IMAGE, COL_STATE, COL_STATUS, COL_PORTS, COL_CPU, COL_MEM = range(8)


def _cpu(row: Row) -> str:
    value = row.get("_cpu")
    return f"{value:.1f}%" if isinstance(value, float) else ""


def _mem(row: Row) -> str:
    value = row.get("_mem")
    return fmt.size_text(value) if isinstance(value, int) else ""


class ContainersModel(KeyedTableModel):
    columns = [
        Column("Project", fmt.project_of),
        Column("Name", fmt.container_name),
        Column("Image", lambda r: str(r.get("Image", ""))),
        Column("State", lambda r: str(r.get("State", ""))),
        Column("Status", lambda r: str(r.get("Status", ""))),
        Column("Ports", fmt.ports_text),
        Column("CPU", _cpu, sort=lambda r: r.get("_cpu") or 0.0, align_right=True),
        Column("Memory", _mem, sort=lambda r: r.get("_mem") or 0, align_right=True),
    ]
    extra_roles = frozenset({Qt.ItemDataRole.DecorationRole, Qt.ItemDataRole.ForegroundRole,
                             Qt.ItemDataRole.ToolTipRole})

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._stats: dict[str, tuple[float | None, int | None]] = {}

    def prepare(self, row: Row) -> Row:
        # Listings do not carry stats; keep the last sample so the cells do not flicker.
        cpu, mem = self._stats.get(self.key_of(row), (None, None))
        return {**row, "_cpu": cpu, "_mem": mem}

    def remove(self, key: str) -> bool:
        self._stats.pop(key, None)
        return super().remove(key)

    def set_stats(self, key: str, cpu: float | None, mem: int | None) -> None:
        if self.position(key) is None:
            return
        self._stats[key] = (cpu, mem)
        row = self.row(key)
        if row is not None and (row.get("_cpu"), row.get("_mem")) != (cpu, mem):
            self._rows[self._pos[key]] = {**row, "_cpu": cpu, "_mem": mem}
            self._text_cache.pop(key, None)
            self.row_changed(key, COL_CPU, COL_MEM)

    def running(self) -> list[Row]:
        return [r for r in self._rows if r.get("State") == "running"]

    def apply(self, event: dict[str, Any]) -> bool:
        """Apply one container event; True when the row should be re-fetched."""
        if event.get("Type") != "container":
            return False
        actor = event.get("Actor") or {}
        key, attrs = str(actor.get("ID", "")), actor.get("Attributes") or {}
        action = str(event.get("Action", "")).split(":")[0]
        if not key:
            return False
        if action == "destroy":
            self.remove(key)
            return False
        if action == "create" or self.position(key) is None:
            if action not in REFRESH_ACTIONS:
                return False
            self.upsert(_row_from_event(key, attrs))
        self._apply_state(key, action, attrs)
        return action in REFRESH_ACTIONS

    def _apply_state(self, key: str, action: str, attrs: dict[str, Any]) -> None:
        if action in STATE_AFTER:
            state, status = STATE_AFTER[action]
            self.patch(key, State=state, Status=status)
        elif action == "die":
            code = attrs.get("exitCode", "0")
            self.patch(key, State="exited", Status=f"Exited ({code}) Less than a second ago")
            self.set_stats(key, None, None)
        elif action == "rename" and attrs.get("name"):
            self.patch(key, Names=["/" + str(attrs["name"])])

    def extra_data(self, row: Row, column: int, role: int) -> Any:
        if column == COL_STATE and role == Qt.ItemDataRole.DecorationRole:
            return QColor(fmt.state_colour(str(row.get("State", ""))))
        if column == COL_PORTS and role == Qt.ItemDataRole.ForegroundRole and row.get("Ports"):
            return QBrush(QColor("#4493f8"))
        if column == COL_PORTS and role == Qt.ItemDataRole.ToolTipRole:
            ports = fmt.published_ports(row)
            return "\n".join(f"http://localhost:{p}" for p in ports) or None
        if column == COL_NAME and role == Qt.ItemDataRole.ToolTipRole:
            return str(row.get("Id", ""))
        return None


def _row_from_event(key: str, attrs: dict[str, Any]) -> Row:
    """A summary-shaped row from a create event's attributes (labels ride along there)."""
    reserved = {"name", "image", "exitCode", "signal", "execID", "execDuration"}
    labels = {k: v for k, v in attrs.items() if k not in reserved}
    return {
        "Id": key,
        "Names": ["/" + str(attrs.get("name", key[:12]))],
        "Image": str(attrs.get("image", "")),
        "State": "created",
        "Status": "Created",
        "Labels": labels,
        "Ports": [],
    }
