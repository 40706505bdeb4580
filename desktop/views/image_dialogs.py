"""Pull (with one progress bar per layer) and "Run" (a small form) dialogs."""

from __future__ import annotations

import shlex
from typing import Any

from desktop.qt import (
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QLabel,
    QLineEdit,
    QPlainTextEdit,
    QProgressBar,
    QPushButton,
    QScrollArea,
    QVBoxLayout,
    QWidget,
)
from desktop.store import Store
from desktop.streaming import StreamFollower

DONE = {"Pull complete", "Already exists", "Download complete"}


def _is_layer(ident: str) -> bool:
    """Progress lines of a layer carry its short id (12 hex digits); others are status."""
    return len(ident) == 12 and all(ch in "0123456789abcdef" for ch in ident)


class PullDialog(QDialog):
    def __init__(self, store: Store, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Pull image")
        self.resize(520, 360)
        self._store = store
        self._follower: StreamFollower[dict[str, Any]] | None = None
        self.bars: dict[str, QProgressBar] = {}
        self.name = QLineEdit()
        self.name.setPlaceholderText("e.g. busybox:latest")
        self.status = QLabel()
        self.status.setWordWrap(True)
        self._layers = QVBoxLayout()
        holder = QWidget()
        holder.setLayout(self._layers)
        self._layers.addStretch(1)
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setWidget(holder)
        self.pull_button = QPushButton("Pull")
        self.pull_button.setObjectName("primary")
        self.pull_button.clicked.connect(self.start)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.addButton(self.pull_button, QDialogButtonBox.ButtonRole.ActionRole)
        buttons.rejected.connect(self.reject)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(20, 20, 20, 16)
        lay.setSpacing(10)
        lay.addWidget(self.name)
        lay.addWidget(scroll, 1)
        lay.addWidget(self.status)
        lay.addWidget(buttons)

    def start(self) -> None:
        image = self.name.text().strip()
        if not image:
            return
        self.pull_button.setEnabled(False)
        self.status.setText(f"Pulling {image}…")
        repo, _, tag = image.rpartition(":") if ":" in image.split("/")[-1] else (image, "", "")
        self._follower = StreamFollower(
            self._store.host, lambda c: c.pull(repo, tag or "latest"),
            self.progress, self._ended, self).start()

    def progress(self, messages: list[dict[str, Any]]) -> None:
        for msg in messages:
            layer, status = str(msg.get("id", "")), str(msg.get("status", ""))
            detail = msg.get("progressDetail") or {}
            if not _is_layer(layer):  # "Pulling from …" carries the tag as its id
                self.status.setText(status)
                continue
            bar = self._bar(layer)
            if detail.get("total"):
                bar.setMaximum(int(detail["total"]))
                bar.setValue(int(detail.get("current", 0)))
            elif status in DONE:
                bar.setMaximum(1)
                bar.setValue(1)
            bar.setFormat(f"{layer[:12]}  {status}")

    def _bar(self, layer: str) -> QProgressBar:
        if layer not in self.bars:
            bar = QProgressBar()
            bar.setTextVisible(True)
            bar.setMinimumHeight(22)
            self.bars[layer] = bar
            self._layers.insertWidget(self._layers.count() - 1, bar)
        return self.bars[layer]

    def _ended(self, reason: str) -> None:
        self.pull_button.setEnabled(True)
        self.status.setText(f"Failed: {reason}" if reason else "Done.")
        self._store.refresh_images()

    def done(self, result: int) -> None:
        if self._follower is not None:
            self._follower.stop()
        super().done(result)


def parse_run_form(image: str, name: str, ports: str, env: str, volumes: str,
                   command: str) -> tuple[dict[str, Any], str | None]:
    """The create body for the Run form's fields (docker run's -p/-e/-v shapes)."""
    exposed: dict[str, Any] = {}
    bindings: dict[str, list[dict[str, str]]] = {}
    for spec in ports.replace(",", " ").split():
        host, _, cont = spec.rpartition(":")  # [ip:]host:container[/proto], or container
        ip, _, host_port = host.rpartition(":")
        cont = cont if "/" in cont else cont + "/tcp"
        exposed[cont] = {}
        bindings.setdefault(cont, []).append({"HostIp": ip, "HostPort": host_port})
    config: dict[str, Any] = {
        "Image": image,
        "Env": [line.strip() for line in env.splitlines() if line.strip()],
        "ExposedPorts": exposed,
        "HostConfig": {"PortBindings": bindings,
                       "Binds": [v for v in volumes.replace(",", " ").split() if v]},
    }
    if command.strip():
        config["Cmd"] = shlex.split(command)
    return config, name.strip() or None


class RunDialog(QDialog):
    def __init__(self, store: Store, image: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle(f"Run {image}")
        self._store, self._image = store, image
        self.name, self.ports = QLineEdit(), QLineEdit()
        self.ports.setPlaceholderText("8080:80 5432:5432")
        self.volumes, self.command = QLineEdit(), QLineEdit()
        self.volumes.setPlaceholderText("myvolume:/data /host/path:/path")
        self.env = QPlainTextEdit()
        self.env.setPlaceholderText("KEY=value, one per line")
        self.env.setMaximumHeight(80)
        self.env.setObjectName("field")
        self.resize(460, 0)
        form = QFormLayout(self)
        form.setContentsMargins(20, 20, 20, 16)
        form.setHorizontalSpacing(14)
        form.setVerticalSpacing(10)
        for label, w in (("Name", self.name), ("Ports", self.ports), ("Environment", self.env),
                         ("Volumes", self.volumes), ("Command", self.command)):
            form.addRow(label, w)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Cancel)
        run = buttons.addButton("Run", QDialogButtonBox.ButtonRole.AcceptRole)
        run.setObjectName("primary")
        buttons.accepted.connect(self.run)
        buttons.rejected.connect(self.reject)
        form.addRow(buttons)

    def run(self) -> None:
        config, name = parse_run_form(self._image, self.name.text(), self.ports.text(),
                                      self.env.toPlainText(), self.volumes.text(),
                                      self.command.text())

        def create_and_start(c: Any) -> None:
            created = c.create_container(config, name=name)
            c.start(created["Id"])

        self._store.act(f"run {self._image}", create_and_start)
        self.accept()
