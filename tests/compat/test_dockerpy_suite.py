"""docker-py 7.1.0's own integration suite (offline subset, 248 tests) against a fresh engine.

Runs only where a checkout exists (``COVE_DOCKERPY_CHECKOUT``, default
/tmp/docker-py-7.1.0); see tests/compat/run_dockerpy_suite.py. One command::

    .venv/bin/pytest -m dockerpy tests/compat/test_dockerpy_suite.py -s
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.compat import run_dockerpy_suite as suite

SUBSET = 248
pytestmark = [
    pytest.mark.root,
    pytest.mark.dockerpy,
    pytest.mark.timeout(1200),
    pytest.mark.skipif(not suite.checkout_present(),
                       reason=f"no docker-py 7.1.0 checkout at {suite.CHECKOUT} "
                              "(set COVE_DOCKERPY_CHECKOUT)"),
]


def test_dockerpy_integration_subset(tmp_path: Path) -> None:
    result = suite.run(workdir=tmp_path)
    print("\n" + result.summary())
    assert result.total == SUBSET, result.summary()
    # At least 95 % of the subset passes (skips/xfails are the suite's own decisions).
    assert len(result.failed) <= SUBSET * 5 // 100, result.summary()
