"""``python -m desktop [-H unix:///path] [desktop --no-tray]``."""

from __future__ import annotations

import sys

from desktop.cli import main

if __name__ == "__main__":
    argv = sys.argv[1:]
    if "desktop" not in argv:
        argv = [*argv[:2], "desktop", *argv[2:]] if argv[:1] in (["-H"], ["--host"]) else [
            "desktop", *argv]
    sys.exit(main(argv))
