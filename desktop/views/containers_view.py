"""Containers: a live table grouped by Compose project, actions, and details below."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from desktop import formatting as fmt
from desktop.models.base import ROW_ROLE
from desktop.models.containers import (
    COL_PORTS,
    COL_PROJECT,
    COL_STATE,
    COL_STATUS,
    ContainersModel,
)
from desktop.qt import (
    AnyIndex,
    QColor,
    QDesktopServices,
    QHeaderView,
    QModelIndex,
    QPainter,
    QPalette,
    QPersistentModelIndex,
    QSortFilterProxyModel,
    QSplitter,
    QStyledItemDelegate,
    QStyleOptionViewItem,
    Qt,
    QTabWidget,
    QUrl,
    QVBoxLayout,
    QWidget,
)
from desktop.store import Store
from desktop.views.common import KeyedTable, button, confirm, filter_box, row, title
from desktop.views.inspect_view import InspectView
from desktop.views.logs_view import LogsView
from desktop.views.stats_view import StatsView
from desktop.views.terminal_view import TerminalView


class GroupingProxy(QSortFilterProxyModel):
    """Sorts by Compose project first and shows each project name once, at its group's top."""

    def lessThan(self, left: AnyIndex, right: AnyIndex) -> bool:
        # Reads the model's rows directly: a sort of 200 rows makes ~1,500 comparisons, and
        # four data() calls each through the Qt bindings made the first listing slow.
        model = self.sourceModel()
        assert isinstance(model, ContainersModel)
        li, ri = left.row(), right.row()
        lp, rp = fmt.project_of(model.row_at(li)), fmt.project_of(model.row_at(ri))
        if lp != rp:
            # Keep groups together whichever way the user sorts; loose containers last.
            ascending = self.sortOrder() == Qt.SortOrder.AscendingOrder
            return (lp or "\uffff") < (rp or "\uffff") if ascending else (
                (lp or "\uffff") > (rp or "\uffff"))
        a, b = model.sort_value(li, left.column()), model.sort_value(ri, right.column())
        try:
            return bool(a < b)
        except TypeError:
            return str(a) < str(b)


class ProjectDelegate(QStyledItemDelegate):
    """Shows each Compose project name once, at the top of its group.

    A delegate rather than a ``data()`` override on the proxy: an override there is called
    for every role of every cell on each repaint, this only for the project cells drawn.
    """

    def initStyleOption(self, option: QStyleOptionViewItem,
                        index: QModelIndex | QPersistentModelIndex) -> None:
        super().initStyleOption(option, index)
        if index.row() > 0 and option_text(option):
            above = index.model().index(index.row() - 1, index.column())
            if above.data() == index.data():
                # Later rows of a group: the name stays (no ambiguity with loose containers
                # below), faded so the group reads as one block.
                opt: Any = option
                opt.palette.setColor(QPalette.ColorRole.Text, QColor("#afb8c1"))


def option_text(option: QStyleOptionViewItem) -> str:
    return str(getattr(option, "text", ""))


class StateDelegate(QStyledItemDelegate):
    """A coloured dot before the state word."""

    def paint(self, painter: QPainter, option: QStyleOptionViewItem,
              index: QModelIndex | QPersistentModelIndex) -> None:
        super().paint(painter, option, index)
        colour = index.data(Qt.ItemDataRole.DecorationRole)
        if not isinstance(colour, QColor):
            return
        painter.save()
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        painter.setBrush(colour)
        painter.setPen(Qt.PenStyle.NoPen)
        r = getattr(option, "rect")  # noqa: B009  (stub differs across PySide6 versions)
        painter.drawEllipse(r.left() + 8, r.center().y() - 4, 8, 8)
        painter.restore()

    def initStyleOption(self, option: QStyleOptionViewItem,
                        index: QModelIndex | QPersistentModelIndex) -> None:
        super().initStyleOption(option, index)
        # Our dot replaces Qt's square swatch; leave room for it.
        opt: Any = option  # the attributes are missing from some PySide6 stubs
        opt.features &= ~QStyleOptionViewItem.ViewItemFeature.HasDecoration
        opt.text = "      " + opt.text


class ContainersView(QWidget):
    def __init__(self, store: Store, tail: int = 500, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.store = store
        self.table = KeyedTable(store.containers, GroupingProxy(self))
        self.table.setItemDelegateForColumn(COL_STATE, StateDelegate(self.table))
        self.table.setItemDelegateForColumn(COL_PROJECT, ProjectDelegate(self.table))
        self.table.sortByColumn(1, Qt.SortOrder.AscendingOrder)
        self.table.clicked.connect(self._clicked)
        self.filter = filter_box("Filter containers")
        self.filter.textChanged.connect(self.table.proxy.setFilterFixedString)
        self.logs, self.inspect = LogsView(store.host, tail), InspectView()
        self.terminal, self.stats = TerminalView(store), StatsView(store.host)
        self.details = QTabWidget()
        for w, name in ((self.logs, "Logs"), (self.inspect, "Inspect"),
                        (self.terminal, "Terminal"), (self.stats, "Stats")):
            self.details.addTab(w, name)
        self.details.currentChanged.connect(lambda _: self._selection_changed())
        self._build()
        self.table.selectionModel().selectionChanged.connect(
            lambda *_: self._selection_changed())
        self._resize_columns()

    def _build(self) -> None:
        actions = [button(text, fn) for text, fn in (
            ("Start", self._each(lambda c, k: c.start(k))),
            ("Stop", self._each(lambda c, k: c.stop(k))),
            ("Restart", self._each(lambda c, k: c.restart(k))),
            ("Pause", self._each(lambda c, k: c.pause(k))),
            ("Unpause", self._each(lambda c, k: c.unpause(k))))]
        actions.append(button("Delete", self.remove_selected, "danger"))
        split = QSplitter(Qt.Orientation.Vertical)
        split.addWidget(self.table)
        split.addWidget(self.details)
        split.setStretchFactor(0, 3)
        split.setStretchFactor(1, 2)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(16, 16, 16, 16)
        lay.setSpacing(10)
        lay.addLayout(row(title("Containers"), self.filter, *actions, stretch_after=1))
        lay.addWidget(split, 1)

    def _resize_columns(self) -> None:
        for col, width in enumerate((110, 170, 130, 105, 190, 150, 72, 92)):
            self.table.setColumnWidth(col, width)
        header = self.table.horizontalHeader()
        header.setStretchLastSection(False)  # numbers stay by their headings, Status grows
        header.setSectionResizeMode(COL_STATUS, QHeaderView.ResizeMode.Stretch)

    def _each(self, fn: Callable[[Any, str], object]) -> Callable[[], None]:
        def run() -> None:
            for key in self.table.selected_keys():
                self.store.act(self._name(key), functools.partial(_on, fn, key))
        return run

    def _name(self, key: str) -> str:
        r = self.store.containers.row(key)
        return fmt.container_name(r) if r else key[:12]

    def remove_selected(self) -> None:
        keys = self.table.selected_keys()
        if not keys:
            return
        names = ", ".join(self._name(k) for k in keys)
        if confirm(self, "Delete", f"Delete {names}? Running containers are stopped first."):
            for key in keys:
                self.store.act(f"delete {self._name(key)}",
                               functools.partial(_on, _force_remove, key))

    def _clicked(self, index: QModelIndex) -> None:
        if index.column() != COL_PORTS:
            return
        ports = fmt.published_ports(index.data(ROW_ROLE) or {})
        if ports:
            QDesktopServices.openUrl(QUrl(f"http://localhost:{ports[0]}"))

    def _selection_changed(self) -> None:
        key = self.table.current_key()
        tab = self.details.currentWidget()
        # Only the visible tab streams: following logs and stats of a hidden tab costs for nothing.
        self.logs.set_container(key if tab is self.logs else None)
        self.stats.set_container(key if tab is self.stats else None)
        self.terminal.set_container(key)
        if tab is self.inspect and key:
            self.store.runner.submit(lambda: self.store.client.inspect_container(key),
                                     self.inspect.show_json,
                                     lambda e: self.inspect.show_error(str(e)))

    def shutdown(self) -> None:
        self.logs.stop()
        self.stats.stop()
        self.terminal.close_shell()


def _on(fn: Callable[[Any, str], object], key: str, client: Any) -> object:
    return fn(client, key)


def _force_remove(client: Any, key: str) -> None:
    client.remove_container(key, force=True)
