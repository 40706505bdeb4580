"""Images, volumes and networks: tables with create/remove/prune and "used by"."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from desktop.models.base import KeyedTableModel
from desktop.qt import QHeaderView, QInputDialog, QVBoxLayout, QWidget
from desktop.store import Store
from desktop.views.common import KeyedTable, button, confirm, filter_box, row, title
from desktop.views.image_dialogs import PullDialog, RunDialog


class ResourceView(QWidget):
    """Title, filter, buttons over a KeyedTable; subclasses add their actions."""

    heading = ""
    stretch_column: int | None = None

    def __init__(self, store: Store, model: KeyedTableModel,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.store = store
        self.table = KeyedTable(model)
        self.filter = filter_box(f"Filter {self.heading.lower()}")
        self.filter.textChanged.connect(self.table.proxy.setFilterFixedString)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(16, 16, 16, 16)
        lay.setSpacing(10)
        lay.addLayout(row(title(self.heading), self.filter, *self.buttons(), stretch_after=1))
        lay.addWidget(self.table, 1)
        for col in range(model.columnCount() - 1):
            self.table.setColumnWidth(col, 180)
        if self.stretch_column is not None:  # the long column takes the room, not the last
            header = self.table.horizontalHeader()
            header.setStretchLastSection(False)
            header.setSectionResizeMode(self.stretch_column, QHeaderView.ResizeMode.Stretch)

    def buttons(self) -> list[QWidget]:
        return []

    def _remove(self, noun: str, fn: Callable[[Any, str], object]) -> None:
        keys = self.table.selected_keys()
        if keys and confirm(self, "Delete", f"Delete {len(keys)} {noun}(s)?"):
            for key in keys:
                self.store.act(f"delete {noun} {key[:19]}", functools.partial(_on, fn, key))

    def _prune(self, noun: str, fn: Callable[[Any], object]) -> None:
        if confirm(self, "Prune", f"Remove all unused {noun}s?"):
            self.store.act(f"prune {noun}s", fn)


class ImagesView(ResourceView):
    heading = "Images"

    def __init__(self, store: Store, parent: QWidget | None = None) -> None:
        super().__init__(store, store.images, parent)

    def buttons(self) -> list[QWidget]:
        return [button("Pull…", self.pull, "primary"), button("Run…", self.run),
                button("Delete", lambda: self._remove(
                    "image", lambda c, k: c.remove_image(k)), "danger"),
                button("Prune", lambda: self._prune("image", lambda c: c.prune_images()))]

    def pull(self) -> None:
        PullDialog(self.store, self).exec()

    def run(self) -> None:
        key = self.table.current_key()
        r = self.store.images.row(key) if key else None
        if r is not None:
            tags = [t for t in r.get("RepoTags") or [] if t != "<none>:<none>"]
            RunDialog(self.store, tags[0] if tags else str(r["Id"]), self).exec()


class VolumesView(ResourceView):
    heading = "Volumes"
    stretch_column = 2  # Mountpoint

    def __init__(self, store: Store, parent: QWidget | None = None) -> None:
        super().__init__(store, store.volumes, parent)

    def buttons(self) -> list[QWidget]:
        return [button("Create…", self.create_item, "primary"),
                button("Delete", lambda: self._remove(
                    "volume", lambda c, k: c.remove_volume(k)), "danger"),
                button("Prune", lambda: self._prune("volume", lambda c: c.prune_volumes()))]

    def create_item(self) -> None:
        name, ok = QInputDialog.getText(self, "Create volume", "Name (empty for a random one)")
        if ok:
            self.store.act("create volume", lambda c: c.create_volume({"Name": name.strip()}))


class NetworksView(ResourceView):
    heading = "Networks"

    def __init__(self, store: Store, parent: QWidget | None = None) -> None:
        super().__init__(store, store.networks, parent)

    def buttons(self) -> list[QWidget]:
        return [button("Create…", self.create_item, "primary"),
                button("Delete", lambda: self._remove(
                    "network", lambda c, k: c.remove_network(k)), "danger"),
                button("Prune", lambda: self._prune("network", lambda c: c.prune_networks()))]

    def create_item(self) -> None:
        name, ok = QInputDialog.getText(self, "Create network", "Name")
        if ok and name.strip():
            self.store.act("create network", lambda c: c.create_network(
                {"Name": name.strip(), "Driver": "bridge"}))


def _on(fn: Callable[[Any, str], object], key: str, client: Any) -> object:
    return fn(client, key)
