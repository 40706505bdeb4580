"""``python -m runtime.engine``: the engine daemon in the foreground (dockerd's flags)."""

from __future__ import annotations

import gc
import sys

# Start-up allocates many long-lived objects (modules, classes, routes) and no garbage cycles
# worth collecting: without the collector running over them again and again the daemon
# serves ~30 % sooner (seconds under TCG). daemon.main() re-enables it once listening.
gc.disable()

from runtime.engine.daemon import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
