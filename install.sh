#!/usr/bin/env bash
# Installs Cove on this Debian machine, starts the engine and runs a first container.
set -euo pipefail
cd "$(dirname "$0")"
packaging/deps.sh
cove=.venv/bin/cove
$cove engine start
if ! $cove image inspect busybox:latest >/dev/null 2>&1; then
  packaging/busybox-rootfs.sh | $cove import --change 'CMD ["sh"]' - busybox:latest >/dev/null
fi
$cove run --rm busybox echo "Hello from Cove: this container runs in its own namespaces."
