"""The iptables fallback of firewall.py, for hosts without nftables (Docker's model).

Same job, same interface as :class:`runtime.net.firewall.Firewall`, built the
way dockerd does it: chains of our own in the ``nat`` and ``filter`` tables,
reached by one jump each from the built-in chains, and removed (jumps first)
when the last bridge goes. iptables has no sets, so the state (bridges and
published ports) is kept here and our chains are rewritten whole by one
``iptables-restore --noflush`` per change: declaring a chain in a restore
script flushes it, and the rest of the host's ruleset is left alone. That is
one process per change, more than the in-process nftables path, but this is
the fallback.

Chains, for prefix P (``COVE`` or ``COVE-<bridge>`` for a test engine):

- nat ``P-DNAT`` (from PREROUTING and OUTPUT, local destinations): published ports.
- nat ``P-POST`` (from POSTROUTING): masquerade loopback sources going to a bridge
  (127.0.0.1 publishing), hairpin DNAT, and NAT'ed subnets leaving through a
  non-Cove interface (``P-MASQ`` returns for our bridges).
- filter ``P-FWD`` (from FORWARD): established, DNAT'ed (not into --internal),
  within one bridge accepted; --internal bridges cut off; between two of our
  bridges dropped (``P-ISO``, Docker's isolation stage).
"""

from __future__ import annotations

import shutil
import subprocess
import threading
from collections.abc import Iterable
from pathlib import Path

from runtime.api.errors import Internal
from runtime.net.firewall import BridgeRules, PortRule

_MAX_PREFIX = 20  # chain names are at most 28 characters; our longest suffix is 7

# Host-wide (several engines share ``ip nat``/``ip filter``): which of them iptables-nft
# created for Cove, so they go again once unused, even after the engine that made them died.
CREATED_TABLES_DIR = Path("/run/cove-iptables-created")


class IptablesError(Internal):
    pass


def chain_prefix(table: str) -> str:
    """``cove`` -> ``COVE``; ``cove_cvt1a2b3c`` -> ``COVE-cvt1a2b3c`` (one per engine)."""
    if table == "cove":
        return "COVE"
    suffix = table.removeprefix("cove_").removeprefix("cove")
    return ("COVE-" + suffix)[:_MAX_PREFIX]


class IptablesFirewall:
    def __init__(self, table: str = "cove", binary: str = "iptables") -> None:
        self.table = table
        self.binary = binary
        self.prefix = chain_prefix(table)
        self._lock = threading.Lock()
        self._bridges: dict[str, BridgeRules] = {}
        self._ports: dict[tuple[str, str, int], PortRule] = {}
        self._installed = False
        # iptables-nft tables (``ip nat``/``ip filter``) that did not exist before we first
        # wrote rules: removed again with our chains when nothing else uses them. Marked
        # under /run too, so an engine restarted after a crash still knows they were ours.
        self._created_tables: set[str] = set()
        self.created_marks = CREATED_TABLES_DIR

    # ------------------------------------------------------------------ Firewall interface
    def rebuild(self, bridges: Iterable[BridgeRules], ports: Iterable[PortRule]) -> None:
        with self._lock:
            self._bridges = {b.bridge: b for b in bridges}
            self._ports = {_port_key(p): p for p in ports}
            self._remove_jumps()  # whatever a crashed engine left, ours are rewritten whole
            self._installed = False
            self._apply()

    def destroy(self) -> None:
        with self._lock:
            self._bridges.clear()
            self._ports.clear()
            self._uninstall()

    def add_bridge(self, rules: BridgeRules) -> None:
        with self._lock:
            self._bridges[rules.bridge] = rules
            self._apply()

    def remove_bridge(self, rules: BridgeRules) -> None:
        with self._lock:
            self._bridges.pop(rules.bridge, None)
            if self._bridges or self._ports:
                self._apply()
            else:
                self._uninstall()  # Docker's model: the chains go with the last network

    def publish(self, ports: Iterable[PortRule]) -> None:
        with self._lock:
            self._ports.update((_port_key(p), p) for p in ports)
            self._apply()

    def unpublish(self, ports: Iterable[PortRule]) -> None:
        with self._lock:
            for p in ports:
                self._ports.pop(_port_key(p), None)
            if self._installed:
                self._apply()

    def listing(self) -> str:
        """Our chains as ``iptables -S`` prints them (nat first, then filter)."""
        out = []
        for table in ("nat", "filter"):
            proc = self._run([f"{self.binary}-save", "-t", table], check=False)
            out += [ln for ln in proc.stdout.splitlines() if self.prefix + "-" in ln]
        return "\n".join(out) + "\n"

    # ------------------------------------------------------------------ rules
    def _apply(self) -> None:
        if not self._installed:
            created = self._missing_nft_tables()
            self._mark_created(created)
            self._created_tables |= created
        script = self._nat_script() + self._filter_script()
        self._run([f"{self.binary}-restore", "-w", "--noflush"], stdin=script)
        if not self._installed:
            self._add_jumps()
            self._installed = True

    def _chain(self, name: str) -> str:
        return f"{self.prefix}-{name}"

    def _nat_script(self) -> str:
        dnat, post, masq = self._chain("DNAT"), self._chain("POST"), self._chain("MASQ")
        lines = ["*nat", f":{dnat} - [0:0]", f":{post} - [0:0]", f":{masq} - [0:0]"]
        specific = [p for p in self._ports.values() if p.host_ip not in ("", "0.0.0.0")]
        wildcard = [p for p in self._ports.values() if p.host_ip in ("", "0.0.0.0")]
        for p in specific + wildcard:  # an address-specific binding wins over a wildcard
            dest = f"-d {p.host_ip}/32 " if p in specific else ""
            lines.append(f"-A {dnat} {dest}-p {p.proto} -m {p.proto} --dport {p.host_port} "
                         f"-j DNAT --to-destination {p.ctr_ip}:{p.ctr_port}")
        for b in self._bridges.values():
            lines += [f"-A {post} -s 127.0.0.0/8 -o {b.bridge} -j MASQUERADE",
                      f"-A {post} -s {b.subnet} -o {b.bridge} -m conntrack --ctstate DNAT "
                      "-j MASQUERADE"]
            if b.nat and not b.internal:
                lines.append(f"-A {post} -s {b.subnet} -j {masq}")
            lines.append(f"-A {masq} -o {b.bridge} -j RETURN")
        lines.append(f"-A {masq} -j MASQUERADE")
        return "\n".join(lines) + "\nCOMMIT\n"

    def _filter_script(self) -> str:
        fwd, ok, iso = self._chain("FWD"), self._chain("DNATOK"), self._chain("ISO")
        lines = ["*filter", f":{fwd} - [0:0]", f":{ok} - [0:0]", f":{iso} - [0:0]",
                 f"-A {fwd} -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT",
                 f"-A {fwd} -m conntrack --ctstate DNAT -j {ok}"]
        bridges = list(self._bridges.values())
        for b in bridges:
            lines.append(f"-A {fwd} -i {b.bridge} -o {b.bridge} -j ACCEPT")
        for b in (b for b in bridges if b.internal):
            lines += [f"-A {fwd} -i {b.bridge} -j DROP", f"-A {fwd} -o {b.bridge} -j DROP",
                      f"-A {ok} -o {b.bridge} -j RETURN"]
        for b in bridges:
            lines += [f"-A {fwd} -i {b.bridge} -j {iso}", f"-A {iso} -o {b.bridge} -j DROP"]
        lines.append(f"-A {ok} -j ACCEPT")
        return "\n".join(lines) + "\nCOMMIT\n"

    # ------------------------------------------------------------------ jumps and removal
    def _jumps(self) -> list[tuple[str, str, list[str], bool]]:
        """(table, built-in chain, match+target, insert first?) of each jump into ours."""
        local = ["-m", "addrtype", "--dst-type", "LOCAL", "-j", self._chain("DNAT")]
        return [("nat", "PREROUTING", local, False), ("nat", "OUTPUT", local, False),
                ("nat", "POSTROUTING", ["-j", self._chain("POST")], True),
                ("filter", "FORWARD", ["-j", self._chain("FWD")], True)]

    def _add_jumps(self) -> None:
        for table, chain, rule, first in self._jumps():
            if self._run([self.binary, "-w", "-t", table, "-C", chain, *rule],
                         check=False).returncode == 0:
                continue
            where = ["-I", chain, "1"] if first else ["-A", chain]
            self._run([self.binary, "-w", "-t", table, *where, *rule])

    def _remove_jumps(self) -> None:
        for table, chain, rule, _first in self._jumps():
            for _ in range(16):  # duplicates from older runs go too; bounded all the same
                if self._run([self.binary, "-w", "-t", table, "-D", chain, *rule],
                             check=False).returncode != 0:
                    break

    def _uninstall(self) -> None:
        self._remove_jumps()
        for table, names in (("nat", ("DNAT", "POST", "MASQ")),
                             ("filter", ("FWD", "DNATOK", "ISO"))):
            for name in names:  # flush all first: a chain still referenced cannot be deleted
                self._run([self.binary, "-w", "-t", table, "-F", self._chain(name)], check=False)
            for name in names:
                self._run([self.binary, "-w", "-t", table, "-X", self._chain(name)], check=False)
        self._installed = False
        for table in sorted(self._created_tables | self._marked_created()):
            if self._unused(table):
                self._run(["nft", "delete", "table", "ip", table], check=False)
                (self.created_marks / table).unlink(missing_ok=True)
        self._created_tables.clear()

    def _mark_created(self, tables: set[str]) -> None:
        if tables:
            self.created_marks.mkdir(mode=0o700, exist_ok=True)
        for table in tables:
            (self.created_marks / table).touch()

    def _marked_created(self) -> set[str]:
        try:
            return {p.name for p in self.created_marks.iterdir() if p.name in ("nat", "filter")}
        except FileNotFoundError:
            return set()

    def _missing_nft_tables(self) -> set[str]:
        """Which of nat/filter an nf_tables-based iptables would create (none for legacy)."""
        if shutil.which("nft") is None or "nf_tables" not in self._run(
                [self.binary, "--version"], check=False).stdout:
            return set()
        return {t for t in ("nat", "filter")
                if self._run(["nft", "list", "table", "ip", t], check=False).returncode != 0}

    def _unused(self, table: str) -> bool:
        """No rule, no chain of anyone's and no policy but ACCEPT left in *table*."""
        text = self._run([f"{self.binary}-save", "-t", table], check=False).stdout
        lines = [ln for ln in text.splitlines() if ln and ln[0] in ":-"]
        return all(ln.startswith(":") and ln.split()[1] == "ACCEPT" for ln in lines)

    @staticmethod
    def _run(argv: list[str], *, stdin: str | None = None,
             check: bool = True) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(argv, input=stdin, capture_output=True, text=True, check=False)
        if check and proc.returncode != 0:
            raise IptablesError(f"{argv[0]}: {proc.stderr.strip() or 'failed'}")
        return proc


def _port_key(p: PortRule) -> tuple[str, str, int]:
    return p.proto, p.host_ip or "0.0.0.0", p.host_port
