"""forwarding.py: ip_forward is shared by engines; the last live one restores it."""

from __future__ import annotations

from pathlib import Path

from runtime.net import forwarding


def test_last_live_holder_restores_the_original(tmp_path: Path) -> None:
    sysctl, state = tmp_path / "ip_forward", tmp_path / "state"
    sysctl.write_text("0\n")
    forwarding.hold("/run/engine-a", state=state, sysctl=str(sysctl))
    assert sysctl.read_text().strip() == "1"
    forwarding.hold("/run/engine-b", state=state, sysctl=str(sysctl))
    forwarding.release("/run/engine-a", state=state, sysctl=str(sysctl))
    assert sysctl.read_text().strip() == "1"  # engine b still forwards
    # A holder whose process is gone (a crashed engine) does not keep it on.
    (state / "holders" / "deadbeef").write_text("999999999")
    forwarding.release("/run/engine-b", state=state, sysctl=str(sysctl))
    assert sysctl.read_text().strip() == "0"
    assert not (state / "original").exists() and list((state / "holders").iterdir()) == []


def test_forwarding_already_on_is_left_on(tmp_path: Path) -> None:
    sysctl, state = tmp_path / "ip_forward", tmp_path / "state"
    sysctl.write_text("1\n")
    forwarding.hold("x", state=state, sysctl=str(sysctl))
    forwarding.release("x", state=state, sysctl=str(sysctl))
    assert sysctl.read_text().strip() == "1"
