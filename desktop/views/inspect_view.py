"""Inspect output as a collapsible JSON tree (keys left, values right)."""

from __future__ import annotations

import json
from typing import Any

from desktop.qt import QTreeWidget, QTreeWidgetItem, QVBoxLayout, QWidget

MAX_CHILDREN = 500  # huge arrays (e.g. Env on odd images) stay responsive


def _label(value: Any) -> str:
    if isinstance(value, dict):
        return f"{{{len(value)}}}"
    if isinstance(value, list):
        return f"[{len(value)}]"
    return json.dumps(value)


def fill(parent: QTreeWidgetItem, value: Any) -> None:
    items = value.items() if isinstance(value, dict) else enumerate(value)
    for n, (k, v) in enumerate(items):
        if n >= MAX_CHILDREN:
            QTreeWidgetItem(parent, ["…", f"{len(value) - n} more"])
            break
        child = QTreeWidgetItem(parent, [str(k), _label(v)])
        if isinstance(v, dict | list) and v:
            fill(child, v)


class InspectView(QWidget):
    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.tree = QTreeWidget()
        self.tree.setHeaderLabels(["Key", "Value"])
        self.tree.setColumnWidth(0, 260)
        self.tree.setAlternatingRowColors(True)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(8, 8, 8, 8)
        lay.addWidget(self.tree)

    def show_json(self, data: dict[str, Any]) -> None:
        self.tree.clear()
        root = self.tree.invisibleRootItem()
        fill(root, data)
        # Top-level sections open, deeper levels collapsed: a readable first view.
        for i in range(root.childCount()):
            item = root.child(i)
            if item is not None:
                item.setExpanded(item.childCount() < 40)

    def show_error(self, message: str) -> None:
        self.tree.clear()
        QTreeWidgetItem(self.tree.invisibleRootItem(), ["error", message])
