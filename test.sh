#!/usr/bin/env bash
# Runs Cove's whole test suite: lint, types, then every test (real containers; needs root).
set -euo pipefail
cd "$(dirname "$0")"
packaging/deps.sh test
.venv/bin/ruff check .
.venv/bin/mypy runtime vmhost guestagent desktop tests bench
exec .venv/bin/pytest -q -ra "$@"
