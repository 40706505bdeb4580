"""KeyedTableModel: a QAbstractTableModel over Docker JSON objects, keyed by id.

Rows are the engine's own JSON dicts (what ``/containers/json`` etc. return).
Updates are incremental: :meth:`upsert` and :meth:`remove` touch one row, and
:meth:`replace_all` diffs a fresh listing against what is shown, so a periodic
reconcile or a reconnect emits inserts/removes/dataChanged for exactly the
rows that differ (selection and scroll position survive; Vorta's targeted
``dataChanged`` habit).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from desktop.qt import AnyIndex, QAbstractTableModel, QModelIndex, QObject, Qt

Row = dict[str, Any]

ID_ROLE = Qt.ItemDataRole.UserRole + 1
SORT_ROLE = Qt.ItemDataRole.UserRole + 2
ROW_ROLE = Qt.ItemDataRole.UserRole + 3


@dataclass(frozen=True, slots=True)
class Column:
    title: str
    display: Callable[[Row], str]
    sort: Callable[[Row], Any] | None = None  # defaults to the display text
    align_right: bool = False


class KeyedTableModel(QAbstractTableModel):
    columns: list[Column] = []
    key_field = "Id"

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._rows: list[Row] = []
        self._pos: dict[str, int] = {}

    # --- reading -------------------------------------------------------------

    def key_of(self, row: Row) -> str:
        return str(row.get(self.key_field, ""))

    def row(self, key: str) -> Row | None:
        i = self._pos.get(key)
        return self._rows[i] if i is not None else None

    def keys(self) -> list[str]:
        return [self.key_of(r) for r in self._rows]

    def rows(self) -> list[Row]:
        return list(self._rows)

    def position(self, key: str) -> int | None:
        return self._pos.get(key)

    def rowCount(self, parent: AnyIndex = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(self._rows)

    def columnCount(self, parent: AnyIndex = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(self.columns)

    def headerData(self, section: int, orientation: Qt.Orientation,
                   role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if (orientation == Qt.Orientation.Horizontal and role == Qt.ItemDataRole.DisplayRole
                and 0 <= section < len(self.columns)):
            return self.columns[section].title
        return None

    def data(self, index: AnyIndex, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid() or index.row() >= len(self._rows):
            return None
        row, col = self._rows[index.row()], self.columns[index.column()]
        if role == Qt.ItemDataRole.DisplayRole:
            return col.display(row)
        if role == SORT_ROLE:
            return col.sort(row) if col.sort else col.display(row)
        if role == ID_ROLE:
            return self.key_of(row)
        if role == ROW_ROLE:
            return row
        if role == Qt.ItemDataRole.TextAlignmentRole and col.align_right:
            return int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        return self.extra_data(row, index.column(), role)

    def extra_data(self, row: Row, column: int, role: int) -> Any:
        """Hook for subclasses: colours, tooltips, decorations."""
        return None

    # --- writing -------------------------------------------------------------

    def upsert(self, row: Row) -> None:
        """Insert a new row at the end, or update the one with the same key in place."""
        key = self.key_of(row)
        i = self._pos.get(key)
        if i is None:
            n = len(self._rows)
            self.beginInsertRows(QModelIndex(), n, n)
            self._rows.append(row)
            self._pos[key] = n
            self.endInsertRows()
        elif self._rows[i] != row:
            self._rows[i] = row
            self.row_changed(key)

    def patch(self, key: str, **fields: Any) -> bool:
        """Change some fields of one row; False if the row is not shown."""
        i = self._pos.get(key)
        if i is None:
            return False
        self._rows[i] = {**self._rows[i], **fields}
        self.row_changed(key)
        return True

    def remove(self, key: str) -> bool:
        i = self._pos.get(key)
        if i is None:
            return False
        self.beginRemoveRows(QModelIndex(), i, i)
        del self._rows[i]
        self._reindex(i)
        self.endRemoveRows()
        return True

    def replace_all(self, rows: Iterable[Row]) -> None:
        """Make the model show exactly ``rows``, touching only what differs."""
        fresh = {self.key_of(r): r for r in rows}
        for key in [k for k in self._pos if k not in fresh]:
            self.remove(key)
        for row in fresh.values():
            self.upsert(row)

    def clear(self) -> None:
        if self._rows:
            self.beginResetModel()
            self._rows, self._pos = [], {}
            self.endResetModel()

    def row_changed(self, key: str, first_col: int = 0, last_col: int | None = None) -> None:
        i = self._pos.get(key)
        if i is None:
            return
        last = len(self.columns) - 1 if last_col is None else last_col
        self.dataChanged.emit(self.index(i, first_col), self.index(i, last))

    def _reindex(self, start: int) -> None:
        for key in [k for k, v in self._pos.items() if v >= start]:
            del self._pos[key]
        for j in range(start, len(self._rows)):
            self._pos[self.key_of(self._rows[j])] = j
