#!/usr/bin/env bash
# Runs Cove's whole test suite: lint, types, then every test (real containers; needs root).
set -euo pipefail
cd "$(dirname "$0")"
packaging/deps.sh test
.venv/bin/ruff check .
.venv/bin/mypy runtime vmhost guestagent desktop tests bench
# The client side (CLI, API client, desktop, VM host) must also type-check as macOS and
# Windows see it: no AF_UNIX, fcntl, geteuid or SIGKILL on Windows without a platform guard.
for platform in darwin win32; do
  .venv/bin/mypy --platform "$platform" --cache-dir ".mypy_cache/$platform" \
    runtime/api runtime/cli desktop vmhost
done
exec .venv/bin/pytest -q -ra "$@"
