from __future__ import annotations

from pathlib import Path

import pytest

from runtime.cli import opts
from runtime.cli.base import CliError, filters_from


@pytest.mark.parametrize(
    ("spec", "exposed", "bindings"),
    [
        ("80", ["80/tcp"], {"80/tcp": [{"HostIp": "", "HostPort": ""}]}),
        ("8080:80", ["80/tcp"], {"80/tcp": [{"HostIp": "", "HostPort": "8080"}]}),
        (
            "127.0.0.1:8080:80/udp",
            ["80/udp"],
            {"80/udp": [{"HostIp": "127.0.0.1", "HostPort": "8080"}]},
        ),
        ("127.0.0.1::80", ["80/tcp"], {"80/tcp": [{"HostIp": "127.0.0.1", "HostPort": ""}]}),
        ("[::1]:8080:80", ["80/tcp"], {"80/tcp": [{"HostIp": "::1", "HostPort": "8080"}]}),
        (
            "9000-9001:7000-7001",
            ["7000/tcp", "7001/tcp"],
            {
                "7000/tcp": [{"HostIp": "", "HostPort": "9000"}],
                "7001/tcp": [{"HostIp": "", "HostPort": "9001"}],
            },
        ),
        ("8000-8010:80", ["80/tcp"], {"80/tcp": [{"HostIp": "", "HostPort": "8000-8010"}]}),
        (
            "7000-7001",
            ["7000/tcp", "7001/tcp"],
            {
                "7000/tcp": [{"HostIp": "", "HostPort": ""}],
                "7001/tcp": [{"HostIp": "", "HostPort": ""}],
            },
        ),
    ],
)
def test_publish(spec: str, exposed: list[str], bindings: dict[str, object]) -> None:
    got_exposed, got_bindings = opts.parse_publish([spec])
    assert sorted(got_exposed) == exposed
    assert got_bindings == bindings


@pytest.mark.parametrize("spec", ["8080:80/xyz", "a:80", "9000-9002:7000-7001", "70000", ""])
def test_publish_errors(spec: str) -> None:
    with pytest.raises(CliError):
        opts.parse_publish([spec])


def test_expose_ranges() -> None:
    assert opts.parse_expose(["80", "90-91/udp"]) == {"80/tcp": {}, "90/udp": {}, "91/udp": {}}


def test_env_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FROM_HOST", "h")
    monkeypatch.delenv("UNSET_ONE", raising=False)
    f = tmp_path / "env"
    f.write_text('# comment\n\nA=1\n  B = spaced\nC="quoted"\nFROM_HOST\nUNSET_ONE\nD=x=y\n')
    with pytest.raises(CliError, match="whitespaces"):
        opts.parse_env_file(str(f))
    f.write_text('# comment\n\nA=1\nC="quoted"\nFROM_HOST\nUNSET_ONE\nD=x=y\n')
    assert opts.parse_env_file(str(f)) == ["A=1", 'C="quoted"', "FROM_HOST=h", "D=x=y"]
    with pytest.raises(CliError, match="open"):
        opts.parse_env_file(str(tmp_path / "missing"))


def test_env_flags(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOSTVAR", "v")
    assert opts.parse_env(["A=1", "HOSTVAR", "NOPE_NOT_SET_X"]) == ["A=1", "HOSTVAR=v"]


def test_restart_ulimit_mount_tmpfs_hosts() -> None:
    assert opts.parse_restart("on-failure:3") == {"Name": "on-failure", "MaximumRetryCount": 3}
    assert opts.parse_restart("always")["Name"] == "always"
    with pytest.raises(CliError):
        opts.parse_restart("always:3")
    assert opts.parse_ulimit("nofile=1024:2048") == {"Name": "nofile", "Soft": 1024, "Hard": 2048}
    assert opts.parse_ulimit("nproc=10")["Hard"] == 10
    assert opts.parse_mount("type=bind,source=/a,target=/b,readonly") == {
        "Type": "bind",
        "Source": "/a",
        "Target": "/b",
        "ReadOnly": True,
    }
    assert opts.parse_mount("type=tmpfs,dst=/t,tmpfs-size=1m")["TmpfsOptions"] == {
        "SizeBytes": 1024 * 1024
    }
    with pytest.raises(CliError):
        opts.parse_mount("type=bind,source=/a")
    assert opts.parse_tmpfs(["/run:rw,size=64m", "/x"]) == {"/run": "rw,size=64m", "/x": ""}
    assert opts.parse_add_host(["h:1.2.3.4", "g=::1"]) == ["h:1.2.3.4", "g:::1"]
    assert opts.split_volumes(["/data", "/a:/b:ro", "named:/c"]) == (
        ["/a:/b:ro", "named:/c"],
        {"/data": {}},
    )


def test_format_ports_folds_ranges() -> None:
    ports = [
        {"IP": "0.0.0.0", "PrivatePort": 80, "PublicPort": 8080, "Type": "tcp"},
        {"IP": "::", "PrivatePort": 80, "PublicPort": 8080, "Type": "tcp"},
        {"IP": "0.0.0.0", "PrivatePort": 7000, "PublicPort": 9000, "Type": "udp"},
        {"IP": "0.0.0.0", "PrivatePort": 7001, "PublicPort": 9001, "Type": "udp"},
        {"PrivatePort": 443, "Type": "tcp"},
    ]
    assert opts.format_ports(ports) == (
        "0.0.0.0:8080->80/tcp, [::]:8080->80/tcp, 443/tcp, 0.0.0.0:9000-9001->7000-7001/udp"
    )


def test_filters() -> None:
    assert filters_from(["label=a=b", "label=c", "status=exited"]) == {
        "label": ["a=b", "c"],
        "status": ["exited"],
    }
    with pytest.raises(CliError):
        filters_from(["nokey"])
