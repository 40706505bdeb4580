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
DISPLAY = Qt.ItemDataRole.DisplayRole
ALIGN = Qt.ItemDataRole.TextAlignmentRole
RIGHT = int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)


@dataclass(frozen=True, slots=True)
class Column:
    title: str
    display: Callable[[Row], str]
    sort: Callable[[Row], Any] | None = None  # defaults to the display text
    align_right: bool = False


class KeyedTableModel(QAbstractTableModel):
    columns: list[Column] = []
    key_field = "Id"
    extra_roles: frozenset[int] = frozenset()  # roles extra_data answers

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._rows: list[Row] = []
        self._pos: dict[str, int] = {}
        self._text_cache: dict[str, list[str]] = {}
        self._roles = frozenset({SORT_ROLE, ID_ROLE, ROW_ROLE, ALIGN}) | self.extra_roles

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
        if orientation != Qt.Orientation.Horizontal or not 0 <= section < len(self.columns):
            return None
        if role == DISPLAY:
            return self.columns[section].title
        if role == ALIGN:  # headers line up with their cells (numbers right)
            return RIGHT if self.columns[section].align_right else int(
                Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter)
        return None

    def data(self, index: AnyIndex, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        # Hot path: a table repaint asks every visible cell for ~8 roles. Answer the text from
        # a per-row cache and drop the roles nobody sets before doing anything else.
        if role == DISPLAY:
            r = index.row()
            if 0 <= r < len(self._rows):
                return self._texts(r)[index.column()]
            return None
        if role not in self._roles or not index.isValid() or index.row() >= len(self._rows):
            return None
        row, col = self._rows[index.row()], self.columns[index.column()]
        if role == SORT_ROLE:
            return col.sort(row) if col.sort else self._texts(index.row())[index.column()]
        if role == ID_ROLE:
            return self.key_of(row)
        if role == ROW_ROLE:
            return row
        if role == ALIGN:
            return RIGHT if col.align_right else None
        return self.extra_data(row, index.column(), role)

    def sort_value(self, i: int, column: int) -> Any:
        """What row ``i`` sorts by in ``column`` (proxies call this directly: no data())."""
        col = self.columns[column]
        if col.sort is not None:
            return col.sort(self._rows[i])
        return self._texts(i)[column].casefold()

    def row_at(self, i: int) -> Row:
        return self._rows[i]

    def _texts(self, i: int) -> list[str]:
        key = self.key_of(self._rows[i])
        texts = self._text_cache.get(key)
        if texts is None:
            row = self._rows[i]
            texts = self._text_cache[key] = [c.display(row) for c in self.columns]
        return texts

    def extra_data(self, row: Row, column: int, role: int) -> Any:
        """Hook for subclasses: colours, tooltips, decorations (roles in ``extra_roles``)."""
        return None

    # --- writing -------------------------------------------------------------

    def upsert(self, row: Row) -> None:
        """Insert a new row at the end, or update the one with the same key in place."""
        row = self.prepare(row)
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
            self._text_cache.pop(key, None)
            self.row_changed(key)

    def patch(self, key: str, **fields: Any) -> bool:
        """Change some fields of one row; False if the row is not shown."""
        i = self._pos.get(key)
        if i is None:
            return False
        self._rows[i] = {**self._rows[i], **fields}
        self._text_cache.pop(key, None)
        self.row_changed(key)
        return True

    def remove(self, key: str) -> bool:
        i = self._pos.get(key)
        if i is None:
            return False
        self.beginRemoveRows(QModelIndex(), i, i)
        del self._rows[i]
        self._text_cache.pop(key, None)
        self._reindex(i)
        self.endRemoveRows()
        return True

    def replace_all(self, rows: Iterable[Row]) -> None:
        """Make the model show exactly ``rows``, touching only what differs.

        Batched: new rows go in with one insert, changed rows with one ``dataChanged`` over
        their span, so a proxy sorts once per listing instead of once per row (the first
        listing of 200 containers was one 200-step re-sort otherwise).
        """
        fresh = {self.key_of(r): self.prepare(r) for r in rows}
        for key in [k for k in self._pos if k not in fresh]:
            self.remove(key)
        changed: list[int] = []
        new: list[Row] = []
        for key, row in fresh.items():
            i = self._pos.get(key)
            if i is None:
                new.append(row)
            elif self._rows[i] != row:
                self._rows[i] = row
                self._text_cache.pop(key, None)
                changed.append(i)
        if changed:
            self.dataChanged.emit(self.index(min(changed), 0),
                                  self.index(max(changed), len(self.columns) - 1))
        if new:
            n = len(self._rows)
            self.beginInsertRows(QModelIndex(), n, n + len(new) - 1)
            for j, row in enumerate(new, start=n):
                self._rows.append(row)
                self._pos[self.key_of(row)] = j
            self.endInsertRows()

    def prepare(self, row: Row) -> Row:
        """Hook: what a row from a listing looks like once stored (subclasses add fields)."""
        return row

    def clear(self) -> None:
        if self._rows:
            self.beginResetModel()
            self._rows, self._pos, self._text_cache = [], {}, {}
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
