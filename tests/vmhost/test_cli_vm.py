"""`cove vm` verbs against FakeHypervisor (no VM): parsing, status, rm, start flags."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

import pytest

from runtime.api.errors import Conflict, InvalidArgument
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


def _parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="cove")
    cli_vm.register(p.add_subparsers(dest="command"))
    return p.parse_args(argv)


def _start_config(argv: list[str]) -> instance.InstanceConfig:
    """What `cove vm start ARGV` boots with: the flags applied to the instance (the part of
    the verb before it spawns the supervisor)."""
    config: instance.InstanceConfig = cli_vm._config(_parse(["vm", "start", *argv]))
    cli_vm._apply_config(config)
    return config


def _ext4_disk(lay_disk: Path) -> None:
    import subprocess

    subprocess.run(["mkfs.ext4", "-q", "-F", "-L", "cove-data", str(lay_disk)], check=True)


def _fs_bytes(disk: Path) -> int:
    import subprocess

    out = subprocess.run(["dumpe2fs", "-h", str(disk)], capture_output=True, text=True,
                         check=True).stdout
    fields = dict(line.split(":", 1) for line in out.splitlines() if ":" in line)
    return int(fields["Block count"]) * int(fields["Block size"])


def test_start_flags_apply_to_a_stopped_instance(home: Path) -> None:
    """`start --cpus/--memory/--disk` on an existing stopped VM: vm.json takes them, the
    next boot's spec (what the backend redefines the domain from) has them, and the
    formatted data disk grows with its filesystem."""
    from vmhost.backends import get as get_backend

    lay = instance.create(instance.InstanceConfig(name="dev", disk_gib=1))
    _ext4_disk(lay.data_disk)
    config = _start_config(["dev", "--cpus", "4", "--memory", "2048", "--disk", "2"])
    assert instance.load("dev") == config
    assert (config.cpus, config.memory_mib, config.disk_gib) == (4, 2048, 2)
    assert lay.data_disk.stat().st_size == 2 << 30
    assert _fs_bytes(lay.data_disk) == 2 << 30  # resize2fs ran: the guest sees 2 GiB
    hv = get_backend()
    hv.create(_spec(lay, instance.load("dev")))
    res = hv.resources("dev")
    assert (res.cpus, res.memory_mib) == (4, 2048)
    # Flags left out keep the instance's settings (no defaults sneak back in).
    assert _start_config(["dev", "--cpus", "1"]) == instance.InstanceConfig(
        name="dev", cpus=1, memory_mib=2048, disk_gib=2
    )


def test_unformatted_disk_grows_sparse(home: Path) -> None:
    lay = instance.create(instance.InstanceConfig(name="new", disk_gib=1))
    _start_config(["new", "--disk", "3"])
    st = lay.data_disk.stat()
    assert st.st_size == 3 << 30 and st.st_blocks * 512 < 1 << 20  # still sparse


def test_start_refuses_to_shrink_the_disk(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    lay = instance.create(instance.InstanceConfig(name="dev", disk_gib=2))
    before = instance.load("dev")
    with pytest.raises(InvalidArgument, match="cannot shrink to 1 GiB"):
        _start_config(["dev", "--disk", "1", "--cpus", "4"])
    assert instance.load("dev") == before  # nothing half-applied
    assert lay.data_disk.stat().st_size == 2 << 30
    assert run(["vm", "start", "dev", "--disk", "1"]) == InvalidArgument.exit_code
    assert "cannot shrink" in capsys.readouterr().err


def test_running_vm_says_stop_first(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import os

    lay = instance.create(instance.InstanceConfig(name="up", disk_gib=1))
    lay.supervisor_pid.write_text(f"{os.getpid()}\n")  # a live supervisor
    assert run(["vm", "start", "up", "--cpus", "3"]) == Conflict.exit_code
    assert "running with other settings (cpus 2 -> 3)" in capsys.readouterr().err
    assert instance.load("up").cpus == 2
    assert run(["vm", "start", "up", "-q"]) == 0  # same settings: just its socket
    assert capsys.readouterr().out.strip() == f"unix://{lay.relay_socket}"


def test_new_instance_takes_defaults_and_flags(home: Path) -> None:
    config = _start_config(["fresh", "--memory", "512"])
    home_dir = os.path.expanduser("~")
    # The fake backend can share, so a new VM shares the user's home at the same path.
    assert config == instance.InstanceConfig(name="fresh", memory_mib=512, shares=(home_dir,))
    assert _start_config(["other", "--no-share"]).shares == ()
    assert _start_config(["third", "--share", str(home)]).shares == (str(home),)
    with pytest.raises(InvalidArgument, match="data disk"):
        instance.InstanceConfig(name="x", disk_gib=0).validate()


def _spec(lay: Any, config: instance.InstanceConfig) -> Any:
    return instance.spec_for(
        lay,
        config,
        kernel=Path("/k"),
        initrd=Path("/i"),
        cmdline="",
        root_image=Path("/r"),
        ssh_port=2222,
    )
