"""The PySide6 desktop app and tray menu: a pure client of the engine API."""
