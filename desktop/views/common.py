"""Small building blocks shared by the views: buttons, confirmations, keyed tables."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from desktop.models.base import ID_ROLE, SORT_ROLE, KeyedTableModel
from desktop.qt import (
    QAbstractItemView,
    QFrame,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLayout,
    QLineEdit,
    QMessageBox,
    QPushButton,
    QSortFilterProxyModel,
    Qt,
    QTableView,
    QVBoxLayout,
    QWidget,
)
from desktop.views.style import SPACING


def button(text: str, slot: Callable[[], Any], name: str = "", tip: str = "") -> QPushButton:
    b = QPushButton(text)
    if name:
        b.setObjectName(name)
    if tip:
        b.setToolTip(tip)
    b.clicked.connect(lambda: slot())
    return b


def row(*widgets: QWidget, stretch_after: int | None = None) -> QHBoxLayout:
    lay = QHBoxLayout()
    lay.setSpacing(SPACING)
    lay.setContentsMargins(0, 0, 0, 0)
    for i, w in enumerate(widgets):
        lay.addWidget(w)
        if stretch_after is not None and i == stretch_after:
            lay.addStretch(1)
    return lay


def title(text: str) -> QLabel:
    label = QLabel(text)
    label.setObjectName("title")
    return label


def section(text: str) -> QLabel:
    label = QLabel(text)
    label.setObjectName("section")
    return label


def card(heading: str, body: QLayout, action: QWidget | None = None) -> QFrame:
    """A white box with a heading (and an optional small button at its right) over ``body``."""
    box = QFrame()
    box.setObjectName("card")
    inner = QVBoxLayout(box)
    inner.setContentsMargins(16, 12, 16, 14)
    inner.setSpacing(10)
    head_box = QWidget()
    head_box.setFixedHeight(30)  # with or without a button, headings of side-by-side cards align
    head = QHBoxLayout(head_box)
    head.setContentsMargins(0, 0, 0, 0)
    head.addWidget(section(heading))
    head.addStretch(1)
    if action is not None:
        head.addWidget(action)
    inner.addWidget(head_box)
    inner.addLayout(body)
    inner.addStretch(1)
    return box


def confirm(parent: QWidget, what: str, detail: str) -> bool:
    box = QMessageBox(QMessageBox.Icon.Warning, what, detail,
                      QMessageBox.StandardButton.Cancel | QMessageBox.StandardButton.Ok, parent)
    box.button(QMessageBox.StandardButton.Ok).setText(what)
    return box.exec() == QMessageBox.StandardButton.Ok


def filter_box(placeholder: str = "Filter") -> QLineEdit:
    box = QLineEdit()
    box.setPlaceholderText(placeholder)
    box.setClearButtonEnabled(True)
    box.setMaximumWidth(280)
    return box


class KeyedTable(QTableView):
    """A sortable, filterable view of a KeyedTableModel that answers with row keys."""

    def __init__(self, model: KeyedTableModel, proxy: QSortFilterProxyModel | None = None,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.proxy = proxy or QSortFilterProxyModel(self)
        self.proxy.setSourceModel(model)
        self.proxy.setSortRole(SORT_ROLE)
        self.proxy.setFilterCaseSensitivity(Qt.CaseSensitivity.CaseInsensitive)
        self.proxy.setFilterKeyColumn(-1)
        self.setModel(self.proxy)
        self.setSortingEnabled(True)
        self.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.setAlternatingRowColors(True)
        self.setShowGrid(False)
        self.setWordWrap(False)
        self.verticalHeader().hide()
        self.verticalHeader().setDefaultSectionSize(30)
        header = self.horizontalHeader()
        header.setHighlightSections(False)
        header.setStretchLastSection(True)
        header.setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
        header.setDefaultAlignment(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter)

    def selected_keys(self) -> list[str]:
        rows = self.selectionModel().selectedRows() if self.selectionModel() else []
        return [str(self.proxy.data(i, ID_ROLE)) for i in rows]

    def current_key(self) -> str | None:
        keys = self.selected_keys()
        return keys[0] if keys else None
