"""backends.py: nftables when it works, iptables when it does not, or as forced."""

from __future__ import annotations

import shutil

import pytest

from runtime.api.errors import Unavailable
from runtime.net import backends
from runtime.net.firewall import Firewall
from runtime.net.iptables import IptablesFirewall, chain_prefix


class _NoNft:
    def __init__(self) -> None:
        raise Unavailable("nftables is not installed")


def test_auto_falls_back_to_iptables_without_nftables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(backends.ENV_BACKEND, raising=False)
    monkeypatch.setattr(backends, "Nft", _NoNft)
    fw = backends.make_firewall("cove_cvtx")
    assert isinstance(fw, IptablesFirewall) and fw.prefix == "COVE-cvtx"
    with pytest.raises(Unavailable):
        backends.make_firewall("cove_cvtx", "nftables")


@pytest.mark.skipif(shutil.which("iptables-legacy-restore") is None, reason="no iptables-legacy")
def test_env_forces_a_backend(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(backends.ENV_BACKEND, "iptables")
    monkeypatch.setenv(backends.ENV_IPTABLES, "iptables-legacy")
    fw = backends.make_firewall("cove")
    assert isinstance(fw, IptablesFirewall) and fw.binary == "iptables-legacy"
    monkeypatch.setenv(backends.ENV_BACKEND, "nftables")
    assert isinstance(backends.make_firewall("cove"), Firewall)
    monkeypatch.setenv(backends.ENV_BACKEND, "pf")
    with pytest.raises(Unavailable, match="expected nftables"):
        backends.make_firewall("cove")


def test_chain_names_fit_iptables() -> None:
    assert chain_prefix("cove") == "COVE"
    assert len(chain_prefix("cove_" + "b" * 15) + "-DNATOK") <= 28
