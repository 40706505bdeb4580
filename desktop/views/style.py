"""One stylesheet and spacing scale for the whole app, so every view looks alike."""

from __future__ import annotations

SPACING = 8
MARGIN = 12

STYLE = """
QMainWindow, QDialog { background: #f6f8fa; }
QWidget { font-size: 10pt; color: #1f2328; }
QListWidget#sidebar { background: #24292f; border: none; padding-top: 8px; }
QListWidget#sidebar::item { color: #d0d7de; padding: 9px 16px; border-radius: 6px;
                             margin: 1px 8px; }
QListWidget#sidebar::item:selected { background: #3b434b; color: white; }
QFrame#banner { background: #fff1e5; border: 1px solid #f0b37e; border-radius: 6px; }
QFrame#banner[severity="error"] { background: #ffebe9; border-color: #ff8182; }
QFrame#banner QLabel { color: #3d1e00; }
QLabel#title { font-size: 15pt; font-weight: 600; }
QLabel#section { font-size: 11pt; font-weight: 600; }
QLabel#colhead { color: #656d76; font-weight: 600; }
QLabel#strong { font-weight: 600; }
QFrame#card { background: white; border: 1px solid #d0d7de; border-radius: 8px; }
QFrame#card QLabel { background: transparent; }
QListWidget#events { border: none; background: white; }
QLabel#muted { color: #656d76; }
QTableView { background: white; border: 1px solid #d0d7de; border-radius: 6px;
             gridline-color: transparent; selection-background-color: #ddf4ff;
             selection-color: #1f2328; alternate-background-color: #f6f8fa; }
QHeaderView::section { background: white; border: none; border-bottom: 1px solid #d0d7de;
                       padding: 6px 8px; font-weight: 600; color: #656d76; }
QLineEdit, QComboBox { background: white; border: 1px solid #d0d7de; border-radius: 6px;
                                 padding: 5px 8px; }
QPushButton { background: white; border: 1px solid #d0d7de; border-radius: 6px; padding: 5px 12px; }
QPushButton:hover { background: #f3f4f6; }
QPushButton:disabled { color: #8c959f; }
QPushButton#primary { background: #1f883d; color: white; border-color: #1a7f37; }
QPushButton#danger { color: #cf222e; }
QTabWidget::pane { border: 1px solid #d0d7de; border-radius: 6px; background: white; top: -1px; }
QTabBar::tab { padding: 6px 14px; border: none; color: #656d76; }
QTabBar::tab:selected { color: #1f2328; border-bottom: 2px solid #fd8c73; }
QPlainTextEdit { background: white; border: none; }
QProgressBar { border: 1px solid #d0d7de; border-radius: 4px; background: white; height: 12px;
               text-align: center; }
QProgressBar::chunk { background: #2da44e; border-radius: 3px; }
"""
