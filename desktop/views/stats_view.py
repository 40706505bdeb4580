"""Live resource graphs (CPU, memory, network, block I/O) drawn with QPainter."""

from __future__ import annotations

import collections
from collections.abc import Callable
from typing import Any

from desktop import formatting as fmt
from desktop.qt import (
    QColor,
    QGridLayout,
    QPainter,
    QPainterPath,
    QPaintEvent,
    QPen,
    QPointF,
    QRectF,
    QSizePolicy,
    QWidget,
)
from desktop.streaming import StreamFollower
from runtime.api.units import human_size

HISTORY = 120  # samples (about two minutes at docker's one-per-second)
SERIES_COLOURS = ("#0969da", "#bf8700")


class Graph(QWidget):
    """A small line chart of one or two series with a title and the latest values."""

    def __init__(self, title: str, labels: tuple[str, ...], unit: Callable[[float], str],
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.title, self.labels, self.unit = title, labels, unit
        self.series: list[collections.deque[float]] = [
            collections.deque(maxlen=HISTORY) for _ in labels]
        self.setMinimumSize(260, 140)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)

    def add(self, *values: float) -> None:
        for s, v in zip(self.series, values, strict=True):
            s.append(max(0.0, v))
        self.update()

    def clear(self) -> None:
        for s in self.series:
            s.clear()
        self.update()

    def paintEvent(self, event: QPaintEvent) -> None:
        p = QPainter(self)
        p.setRenderHint(QPainter.RenderHint.Antialiasing)
        p.fillRect(self.rect(), QColor("white"))
        plot = QRectF(self.rect()).adjusted(10, 30, -10, -10)
        top = max((max(s) for s in self.series if s), default=0.0) * 1.15 or 1.0
        self._grid(p, plot)
        for s, colour in zip(self.series, SERIES_COLOURS, strict=False):
            self._line(p, plot, s, top, QColor(colour))
        self._legend(p, top)
        p.end()

    def _grid(self, p: QPainter, plot: QRectF) -> None:
        p.setPen(QPen(QColor("#eaeef2"), 1))
        for i in range(5):
            y = plot.top() + plot.height() * i / 4
            p.drawLine(QPointF(plot.left(), y), QPointF(plot.right(), y))

    def _line(self, p: QPainter, plot: QRectF, s: collections.deque[float], top: float,
              colour: QColor) -> None:
        if len(s) < 2:
            return
        step = plot.width() / (HISTORY - 1)
        x0 = plot.right() - step * (len(s) - 1)
        path = QPainterPath()
        for i, v in enumerate(s):
            pt = QPointF(x0 + step * i, plot.bottom() - plot.height() * v / top)
            path.lineTo(pt) if i else path.moveTo(pt)
        p.setPen(QPen(colour, 1.6))
        p.drawPath(path)

    def _legend(self, p: QPainter, top: float) -> None:
        p.setPen(QColor("#1f2328"))
        p.drawText(10, 18, self.title)
        x = 10 + p.fontMetrics().horizontalAdvance(self.title) + 16
        for label, s, colour in zip(self.labels, self.series, SERIES_COLOURS, strict=False):
            text = f"{label} {self.unit(s[-1]) if s else '-'}"
            p.setPen(QColor(colour))
            p.drawText(x, 18, text)
            x += p.fontMetrics().horizontalAdvance(text) + 14
        p.setPen(QColor("#8c959f"))
        scale = f"max {self.unit(top / 1.15)}"
        p.drawText(self.width() - 10 - p.fontMetrics().horizontalAdvance(scale), 18, scale)


def _rate(unit: str) -> Callable[[float], str]:
    return lambda v: human_size(round(v)) + unit


class StatsView(QWidget):
    def __init__(self, host: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._host = host
        self._key: str | None = None
        self._follower: StreamFollower[dict[str, Any]] | None = None
        self._last: dict[str, Any] | None = None
        self.cpu = Graph("CPU", ("",), lambda v: f"{v:.1f}%")
        self.mem = Graph("Memory", ("",), human_size)
        self.net = Graph("Network", ("rx", "tx"), _rate("/s"))
        self.blk = Graph("Block I/O", ("read", "write"), _rate("/s"))
        grid = QGridLayout(self)
        grid.setContentsMargins(8, 8, 8, 8)
        grid.setSpacing(8)
        for i, g in enumerate((self.cpu, self.mem, self.net, self.blk)):
            grid.addWidget(g, i // 2, i % 2)

    def set_container(self, key: str | None) -> None:
        if key == self._key:
            return
        self.stop()
        self._key, self._last = key, None
        for g in (self.cpu, self.mem, self.net, self.blk):
            g.clear()
        if key is not None:
            self._follower = StreamFollower(self._host, lambda c: c.stats(key, stream=True),
                                            self.add_samples, None, self).start()

    def stop(self) -> None:
        if self._follower is not None:
            self._follower.stop()
            self._follower = None

    def add_samples(self, samples: list[dict[str, Any]]) -> None:
        for s in samples:
            self.add_sample(s)

    def add_sample(self, s: dict[str, Any]) -> None:
        self.cpu.add(fmt.cpu_percent(s) or 0.0)
        mem = fmt.memory_usage(s)
        self.mem.add(float(mem[0]) if mem else 0.0)
        if self._last is not None:
            (rx, tx), (prx, ptx) = fmt.network_bytes(s), fmt.network_bytes(self._last)
            (rd, wr), (prd, pwr) = fmt.block_bytes(s), fmt.block_bytes(self._last)
            self.net.add(float(rx - prx), float(tx - ptx))
            self.blk.add(float(rd - prd), float(wr - pwr))
        self._last = s

