"""`cove vm` verbs against FakeHypervisor (no VM): parsing, status, rm."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from runtime.cli import vm as cli_vm
from vmhost import instance


@pytest.fixture(autouse=True)
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("COVE_VM_HOME", str(tmp_path))
    monkeypatch.setenv("COVE_VM_BACKEND", "fake")
    return tmp_path


def run(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="cove")
    cli_vm.register(p.add_subparsers(dest="command"))
    args = p.parse_args(argv)
    rc: int = args.func(object(), args)  # runtime.cli.main passes (cli, args)
    return rc


def test_status_and_rm(capsys: pytest.CaptureFixture[str], home: Path) -> None:
    instance.create(instance.InstanceConfig(name="dev", disk_gib=1))
    assert (home / "vms/dev/data.raw").stat().st_size == 1 << 30
    assert (home / "vms/dev/id_ed25519").stat().st_mode & 0o777 == 0o600
    assert run(["vm", "status", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info[0]["name"] == "dev" and info[0]["state"] == "absent"
    assert run(["vm", "rm", "dev"]) == 0
    assert not (home / "vms/dev").exists()
    assert run(["vm", "rm", "dev"]) == 125


def test_bad_name() -> None:
    with pytest.raises(Exception, match="vm name"):
        instance.create(instance.InstanceConfig(name="Bad Name"))


def test_ssh_argv_pins_host_key(home: Path) -> None:
    from vmhost import control

    lay = instance.create(instance.InstanceConfig(name="s", disk_gib=1))
    instance.write_known_hosts(lay, 2345)
    argv = control.ssh_argv("s", ["true"], tty=False)
    assert "StrictHostKeyChecking=yes" in argv and "2345" in argv
    assert (home / "vms/s/known_hosts").read_text().startswith("[127.0.0.1]:2345 ssh-ed25519 ")


def test_seed_has_keys(home: Path) -> None:
    from guestagent.seed import read_seed

    lay = instance.create(instance.InstanceConfig(name="k", disk_gib=1))
    instance.write_seed(lay, instance.load("k"))
    cfg, files = read_seed(lay.seed)
    assert cfg.hostname == "cove-k"
    assert files["authorized_keys"].startswith(b"ssh-ed25519 ")
    assert b"OPENSSH PRIVATE KEY" in files["ssh_host_ed25519_key"]


def test_stable_port_survives_time_wait(home: Path) -> None:
    import socket

    lay = instance.create(instance.InstanceConfig(name="p", disk_gib=1))
    port = instance.free_port()
    instance.write_known_hosts(lay, port)
    with socket.socket() as srv:  # leave a TIME_WAIT on the server side of `port`
        srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        srv.bind(("127.0.0.1", port))
        srv.listen()
        cli = socket.create_connection(("127.0.0.1", port))
        conn, _ = srv.accept()
        conn.close()
        cli.close()
    assert instance.stable_port(lay) == port
