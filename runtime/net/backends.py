"""Pick the packet-filter backend at run time: nftables when it works, else iptables.

``COVE_FIREWALL`` (``nftables`` | ``iptables`` | ``auto``, the default) forces one;
``COVE_IPTABLES`` names the iptables binary (``iptables``, ``iptables-nft``,
``iptables-legacy``). Tests use both to run an engine on the fallback.
"""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Iterable
from typing import Protocol

from runtime.api.errors import CoveError, Unavailable
from runtime.net.firewall import BridgeRules, Firewall, PortRule
from runtime.net.iptables import IptablesFirewall
from runtime.net.nftlib import Nft

log = logging.getLogger(__name__)

ENV_BACKEND = "COVE_FIREWALL"
ENV_IPTABLES = "COVE_IPTABLES"


class FirewallBackend(Protocol):
    table: str

    def rebuild(self, bridges: Iterable[BridgeRules], ports: Iterable[PortRule]) -> None: ...
    def destroy(self) -> None: ...
    def add_bridge(self, rules: BridgeRules) -> None: ...
    def remove_bridge(self, rules: BridgeRules) -> None: ...
    def publish(self, ports: Iterable[PortRule]) -> None: ...
    def unpublish(self, ports: Iterable[PortRule]) -> None: ...
    def listing(self) -> str: ...


def make_firewall(table: str, choice: str | None = None) -> FirewallBackend:
    choice = (choice or os.environ.get(ENV_BACKEND) or "auto").lower()
    if choice not in ("auto", "nftables", "iptables"):
        raise Unavailable(f"{ENV_BACKEND}={choice}: expected nftables, iptables or auto")
    if choice != "iptables":
        try:
            nft = Nft()
            nft.run("list tables")  # the library may be there while the kernel lacks nf_tables
            return Firewall(table, nft)
        except CoveError as e:
            if choice == "nftables":
                raise
            log.info("nftables unusable (%s): falling back to iptables", e)
    binary = os.environ.get(ENV_IPTABLES) or "iptables"
    if shutil.which(binary) is None or shutil.which(f"{binary}-restore") is None:
        raise Unavailable("no packet filter: need nftables (libnftables1 or nft) or iptables")
    return IptablesFirewall(table, binary)
