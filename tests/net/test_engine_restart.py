"""Private engines that are restarted or killed: volumes survive, crashes leave nothing behind.

Each test starts its own engine (tests.harness, own bridge and 10.213.x.0/24), so
stopping or SIGKILLing it touches no other test. The crash test runs on both
packet-filter backends (``COVE_FIREWALL`` forces the one of the engine it starts).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
from pathlib import Path
from typing import Any

import pytest

from runtime.net.iptables import chain_prefix
from runtime.net.manager import table_for
from runtime.net.plumbing import veth_name
from tests.harness import descendants
from tests.net.helpers import cli, http_get

pytestmark = [pytest.mark.root,
              pytest.mark.skipif(shutil.which("docker") is None, reason="no docker CLI")]

HTTPD = "mkdir -p /www && echo hi > /www/index.html && exec httpd -f -p 80 -h /www"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("0.0.0.0", 0))
        return int(s.getsockname()[1])


def test_volume_survives_container_removal_and_engine_restart(private_engine: Any) -> None:
    eng = private_engine
    cli(eng, "run", "--name", "writer", "-v", "keep:/data", "busybox", "sh", "-c",
        "echo persisted > /data/f")
    cli(eng, "rm", "writer")
    eng.stop()
    eng.start()
    out = cli(eng, "run", "--rm", "-v", "keep:/data", "busybox", "cat", "/data/f").stdout
    assert out == "persisted\n"
    assert "keep" in cli(eng, "volume", "ls", "-q").stdout.split()
    cli(eng, "volume", "rm", "keep")


def _nft_tables() -> set[str]:
    out = subprocess.run(["nft", "list", "tables"], capture_output=True, text=True).stdout
    return set(out.splitlines())


def _kernel_traces(eng: Any, backend: str, port: int) -> str:
    """What of the published *port* the packet filter still carries."""
    if backend == "iptables":
        prefix = chain_prefix(table_for(eng.bridge))
        text = ""
        for table in ("nat", "filter"):
            text += subprocess.run(["iptables-save", "-t", table], capture_output=True,
                                   text=True).stdout
        return "\n".join(ln for ln in text.splitlines() if prefix in ln and str(port) in ln)
    listing = subprocess.run(["nft", "list", "table", "ip", table_for(eng.bridge)],
                             capture_output=True, text=True).stdout
    return "\n".join(ln for ln in listing.splitlines() if f"{port} :" in ln)


@pytest.mark.parametrize("backend", ["nftables", "iptables"])
def test_sigkill_leaves_nothing_and_ports_can_be_published_again(
        tmp_path: Path, busybox_tar: Path, monkeypatch: pytest.MonkeyPatch, backend: str) -> None:
    from tests.harness import EngineProcess

    monkeypatch.setenv("COVE_FIREWALL", backend)
    tables_before = _nft_tables()
    eng = EngineProcess(tmp_path / "engine")
    eng.start()
    try:
        eng.import_image(busybox_tar, "busybox")
        port, port2 = free_port(), free_port()
        net_id = cli(eng, "network", "create", "--subnet", "10.213.241.0/24", "crashnet").stdout
        cli(eng, "run", "-d", "--name", "web", "-p", f"{port}:80", "busybox", "sh", "-c", HTTPD)
        cli(eng, "run", "-d", "--name", "web2", "--network", "crashnet", "--ip", "10.213.241.9",
            "-p", f"127.0.0.1:{port2}:80", "busybox", "sh", "-c", HTTPD)
        assert b"hi" in http_get(port, timeout=30) and b"hi" in http_get(port2, timeout=30)
        assert _kernel_traces(eng, backend, port)
        ids = cli(eng, "ps", "-q", "--no-trunc").stdout.split()
        bridge_id = cli(eng, "network", "inspect", "-f", "{{.Id}}", "bridge").stdout.strip()
        veths = [veth_name(ids[0], bridge_id), veth_name(ids[0], net_id.strip()),
                 veth_name(ids[1], bridge_id), veth_name(ids[1], net_id.strip())]
        assert any(v in subprocess.run(["ip", "-o", "link"], capture_output=True,
                                       text=True).stdout for v in veths)
        # The crash: the engine and everything it started (monitors, containers) die at once.
        assert eng.proc is not None
        doomed = descendants(eng.proc.pid)
        for pid in doomed:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        eng.proc.wait(timeout=10)
        eng.proc = None
        assert _kernel_traces(eng, backend, port)  # the kernel kept it: now the engine must
        eng.start()
        assert [p for p in doomed if Path(f"/proc/{p}").exists() and
                Path(f"/proc/{p}/status").read_text().find("State:\tZ") < 0] == []
        links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
        assert not [v for v in veths if v in links]
        netns = eng.exec_root / "netns"
        assert not netns.exists() or list(netns.iterdir()) == []
        assert _kernel_traces(eng, backend, port) == ""
        assert _kernel_traces(eng, backend, port2) == ""
        assert cli(eng, "network", "inspect", "-f", "{{len .Containers}}",
                   "crashnet").stdout.strip() == "0"
        # Same host ports and the same fixed address again: nothing is still allocated.
        cli(eng, "rm", "-f", "web", "web2")
        cli(eng, "run", "-d", "--name", "web3", "-p", f"{port}:80", "busybox", "sh", "-c", HTTPD)
        cli(eng, "run", "-d", "--name", "web4", "--network", "crashnet", "--ip", "10.213.241.9",
            "-p", f"127.0.0.1:{port2}:80", "busybox", "sh", "-c", HTTPD)
        assert b"hi" in http_get(port, timeout=30) and b"hi" in http_get(port2, timeout=30)
        out = cli(eng, "run", "--rm", "--network", "crashnet", "busybox", "nslookup",
                  "web4").stdout
        assert "10.213.241.9" in out  # the embedded DNS is back too
    finally:
        if eng.proc is None:
            with contextlib.suppress(Exception):
                eng.start()
        eng.cleanup()
    assert _kernel_traces(eng, backend, port) == ""
    # Tables iptables-nft created for the crashed engine go too: the restarted one knew.
    assert not {"table ip nat", "table ip filter"} & (_nft_tables() - tables_before)
