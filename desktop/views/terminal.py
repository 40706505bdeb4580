"""A real terminal emulator widget: pyte keeps the VT100 screen, QPainter draws it.

The widget knows nothing about containers: bytes come in through :meth:`feed`,
keystrokes go out through the ``send`` callback, and a size change is reported
through ``on_resize(cols, rows)`` so the session can resize the exec's TTY.
"""

from __future__ import annotations

from collections.abc import Callable

import pyte

from desktop.qt import (
    QColor,
    QFontDatabase,
    QFontMetrics,
    QKeyEvent,
    QPainter,
    QPaintEvent,
    QResizeEvent,
    QSizePolicy,
    Qt,
    QWidget,
)

BG, FG = QColor("#0d1117"), QColor("#e6edf3")
PAD = 8  # pixels around the character grid
NAMED = {
    "black": "#484f58", "red": "#ff7b72", "green": "#3fb950", "brown": "#d29922",
    "yellow": "#d29922", "blue": "#58a6ff", "magenta": "#bc8cff", "cyan": "#39c5cf",
    "white": "#b1bac4", "brightblack": "#6e7681", "brightred": "#ffa198",
    "brightgreen": "#56d364", "brightyellow": "#e3b341", "brightblue": "#79c0ff",
    "brightmagenta": "#d2a8ff", "brightcyan": "#56d4dd", "brightwhite": "#ffffff",
}
KEYS = {
    Qt.Key.Key_Return: b"\r", Qt.Key.Key_Enter: b"\r", Qt.Key.Key_Backspace: b"\x7f",
    Qt.Key.Key_Tab: b"\t", Qt.Key.Key_Escape: b"\x1b", Qt.Key.Key_Up: b"\x1b[A",
    Qt.Key.Key_Down: b"\x1b[B", Qt.Key.Key_Right: b"\x1b[C", Qt.Key.Key_Left: b"\x1b[D",
    Qt.Key.Key_Home: b"\x1b[H", Qt.Key.Key_End: b"\x1b[F", Qt.Key.Key_Delete: b"\x1b[3~",
    Qt.Key.Key_PageUp: b"\x1b[5~", Qt.Key.Key_PageDown: b"\x1b[6~",
}


def _colour(name: str, default: QColor) -> QColor:
    if name == "default":
        return default
    if name in NAMED:
        return QColor(NAMED[name])
    if len(name) == 6:
        return QColor("#" + name)
    return default


def key_bytes(event: QKeyEvent) -> bytes:
    """What a terminal sends for a key press (xterm conventions)."""
    key, mods = event.key(), event.modifiers()
    if mods & Qt.KeyboardModifier.ControlModifier and Qt.Key.Key_A <= key <= Qt.Key.Key_Z:
        return bytes([key - Qt.Key.Key_A + 1])
    if key in KEYS:
        return KEYS[Qt.Key(key)]
    return event.text().encode()


class TerminalWidget(QWidget):
    def __init__(self, send: Callable[[bytes], None] | None = None,
                 on_resize: Callable[[int, int], None] | None = None,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.send = send or (lambda data: None)
        self.on_resize = on_resize or (lambda cols, rows: None)
        self.setFont(QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont))
        metrics = QFontMetrics(self.font())
        self._cw, self._ch = max(1, metrics.horizontalAdvance("M")), max(1, metrics.height())
        self._ascent = metrics.ascent()
        self.vt = pyte.Screen(80, 24)
        self.stream = pyte.ByteStream(self.vt)
        self.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.setMinimumSize(self._cw * 20, self._ch * 5)

    def feed(self, data: bytes) -> None:
        self.stream.feed(data)
        self.update()

    def text(self) -> str:
        """The visible screen as plain text (tests, copy)."""
        return "\n".join(line.rstrip() for line in self.vt.display)

    def grid_size(self) -> tuple[int, int]:
        return (max(2, (self.width() - 2 * PAD) // self._cw),
                max(2, (self.height() - 2 * PAD) // self._ch))

    def resizeEvent(self, event: QResizeEvent) -> None:
        cols, rows = self.grid_size()
        if (cols, rows) != (self.vt.columns, self.vt.lines):
            self.vt.resize(rows, cols)
            self.on_resize(cols, rows)
        super().resizeEvent(event)

    def keyPressEvent(self, event: QKeyEvent) -> None:
        data = key_bytes(event)
        if data:
            self.send(data)
        else:
            super().keyPressEvent(event)

    def focusNextPrevChild(self, next: bool) -> bool:
        return False  # Tab belongs to the shell (completion), not to focus changes

    def paintEvent(self, event: QPaintEvent) -> None:
        p = QPainter(self)
        p.fillRect(self.rect(), BG)
        for y in range(self.vt.lines):
            self._paint_line(p, y)
        self._paint_cursor(p)
        p.end()

    def _paint_line(self, p: QPainter, y: int) -> None:
        line = self.vt.buffer[y]
        x = 0
        while x < self.vt.columns:
            ch = line[x]
            start, run = x, [ch.data]
            x += 1
            while x < self.vt.columns and _same_style(line[x], ch):
                run.append(line[x].data)
                x += 1
            self._paint_run(p, start, y, "".join(run), ch)

    def _paint_run(self, p: QPainter, x: int, y: int, text: str, ch: pyte.screens.Char) -> None:
        fg, bg = _colour(ch.fg, FG), _colour(ch.bg, BG)
        if ch.reverse:
            fg, bg = bg, fg
        if bg != BG:
            p.fillRect(PAD + x * self._cw, PAD + y * self._ch, len(text) * self._cw, self._ch,
                       bg)
        if text.strip():
            font = p.font()
            font.setBold(bool(ch.bold))
            p.setFont(font)
            p.setPen(fg)
            p.drawText(PAD + x * self._cw, PAD + y * self._ch + self._ascent, text)

    def _paint_cursor(self, p: QPainter) -> None:
        c = self.vt.cursor
        if self.vt.cursor.hidden:
            return
        colour = QColor(FG)
        colour.setAlpha(160 if self.hasFocus() else 70)
        p.fillRect(PAD + c.x * self._cw, PAD + c.y * self._ch, self._cw, self._ch, colour)


def _same_style(a: pyte.screens.Char, b: pyte.screens.Char) -> bool:
    return (a.fg, a.bg, a.bold, a.reverse) == (b.fg, b.bg, b.bold, b.reverse)
