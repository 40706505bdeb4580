"""One stylesheet and spacing scale for the whole app, so every view looks alike."""

from __future__ import annotations

SPACING = 8
MARGIN = 12

STYLE = """
QMainWindow, QDialog { background: #f6f8fa; }
QWidget { font-size: 10pt; color: #1f2328; }
QWidget#side { background: #1f2328; }
QLabel#brand { color: white; font-size: 14pt; font-weight: 700; padding: 18px 20px 10px 20px; }
QLabel#engine-dot { color: #8c959f; padding: 12px 20px 16px 20px; }
QListWidget#sidebar { background: transparent; border: none; outline: 0; }
QListWidget#sidebar::item { color: #d0d7de; padding: 8px 12px; border-radius: 6px;
                             margin: 1px 10px; }
QListWidget#sidebar::item:hover { background: #2d333b; }
QListWidget#sidebar::item:selected { background: #373e47; color: white; }
QFrame#banner { background: #fff8c5; border: 1px solid #d4a72c; border-radius: 8px; }
QFrame#banner[severity="error"] { background: #ffebe9; border-color: #ff8182; }
QFrame#banner QLabel { color: #3b2300; background: transparent; }
QLabel#title { font-size: 15pt; font-weight: 600; }
QLabel#section { font-size: 11pt; font-weight: 600; }
QLabel#colhead { color: #656d76; font-weight: 600; }
QLabel#strong { font-weight: 600; }
QLabel#muted { color: #656d76; }
QFrame#card { background: white; border: 1px solid #d0d7de; border-radius: 8px; }
QFrame#card QLabel { background: transparent; }
QListWidget#events { border: none; background: white; }
QTableView { background: white; border: 1px solid #d0d7de; border-radius: 8px;
             gridline-color: transparent; selection-background-color: #ddf4ff;
             selection-color: #1f2328; alternate-background-color: #f6f8fa; outline: 0; }
QTableView::item { padding: 0 8px; border: none; }
QHeaderView::section { background: white; border: none; border-bottom: 1px solid #d0d7de;
                       padding: 7px 8px; font-weight: 600; color: #656d76; }
QHeaderView { background: transparent; border: none; }
QLineEdit, QComboBox, QSpinBox { background: white; border: 1px solid #d0d7de;
                                 border-radius: 6px; padding: 5px 8px; min-height: 18px; }
QLineEdit:focus, QComboBox:focus, QSpinBox:focus, QPlainTextEdit#field:focus {
    border: 1px solid #0969da; }
QComboBox::drop-down { border: none; width: 18px; }
QSpinBox::up-button, QSpinBox::down-button { border: none; width: 16px; background: transparent; }
QPushButton { background: white; border: 1px solid #d0d7de; border-radius: 6px;
              padding: 5px 12px; min-height: 18px; }
QPushButton:hover { background: #f3f4f6; }
QPushButton:disabled { color: #8c959f; background: #f6f8fa; }
QPushButton#primary { background: #1f883d; color: white; border-color: #1a7f37; }
QPushButton#primary:hover { background: #1a7f37; }
QPushButton#primary:disabled { background: #94d3a2; border-color: #94d3a2; color: white; }
QPushButton#danger { color: #cf222e; }
QTabWidget::pane { border: 1px solid #d0d7de; border-radius: 8px; background: white; top: -1px; }
QTabBar::tab { padding: 7px 16px; border: none; color: #656d76; }
QTabBar::tab:selected { color: #1f2328; font-weight: 600; border-bottom: 2px solid #fd8c73; }
QTabBar::tab:hover { color: #1f2328; }
QPlainTextEdit { background: white; border: none; }
QPlainTextEdit#field { border: 1px solid #d0d7de; border-radius: 6px; padding: 2px 4px; }
QPlainTextEdit#log { border: 1px solid #d0d7de; border-radius: 8px; padding: 6px; }
QProgressBar { border: 1px solid #d0d7de; border-radius: 4px; background: white; height: 12px;
               text-align: center; }
QProgressBar::chunk { background: #2da44e; border-radius: 3px; }
QStatusBar { background: #f6f8fa; color: #656d76; border-top: 1px solid #d0d7de; }
QStatusBar QLabel { color: #656d76; }
QTreeWidget { border: none; outline: 0; alternate-background-color: #f6f8fa; }
"""
