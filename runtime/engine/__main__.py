"""``python -m runtime.engine``: the engine daemon in the foreground (dockerd's flags)."""

from __future__ import annotations

import sys

from runtime.engine.daemon import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
