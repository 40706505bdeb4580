"""A container's /etc/hosts, /etc/resolv.conf and /etc/hostname: written into its state
directory before it starts and bind-mounted in (docker's way, so they stay editable)."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from runtime.layout import CONTAINER_HOSTNAME, CONTAINER_HOSTS, CONTAINER_RESOLV
from runtime.net import files
from runtime.net.model import Net
from runtime.net.store import ContainerState
from runtime.spec import Mount

_BIND = ("rbind", "rprivate")


def file_mounts(d: Path) -> tuple[Mount, ...]:
    """The binds of the three files kept in the container directory *d*."""
    return tuple(
        Mount(destination=dest, type="bind", source=str(d / fname), options=_BIND)
        for dest, fname in (("/etc/hosts", CONTAINER_HOSTS),
                            ("/etc/resolv.conf", CONTAINER_RESOLV),
                            ("/etc/hostname", CONTAINER_HOSTNAME)))


def write_files(d: Path, st: ContainerState, *, domainname: str, host_config: dict[str, Any],
                host_resolv_path: str, host_mode: bool, gateway: str,
                links: list[tuple[str, str]], embedded_dns: bool) -> tuple[Mount, ...]:
    """Write the three files into *d* and return their binds. *host_mode*: --network host
    (the host's hosts entries and, without DNS options, its resolv.conf as is); *gateway*
    is what ``host-gateway`` in --add-host stands for; *links* are legacy-link lines."""
    d.mkdir(parents=True, exist_ok=True)
    host = files.read_host_resolv(host_resolv_path)
    extra = files.parse_extra_hosts(list(host_config.get("ExtraHosts") or []), gateway)
    extra += links
    ips = [ip for ep in st.endpoints.values() for ip in (ep.ip, ep.ip6) if ip]
    files.write_file(d / CONTAINER_HOSTS, files.hosts_file(
        hostname=st.hostname, domainname=domainname, ips=ips, extra=extra,
        host_copy=host_mode))
    dns = list(host_config.get("Dns") or [])
    search = list(host_config.get("DnsSearch") or [])
    opts = list(host_config.get("DnsOptions") or [])
    if host_mode and not (dns or search or opts):
        try:
            text = Path(host_resolv_path).read_text()
        except OSError:
            text = ""
    else:
        text = files.resolv_conf(host, dns=dns, search=search, options=opts,
                                 embedded=embedded_dns)
    files.write_file(d / CONTAINER_RESOLV, text)
    files.write_file(d / CONTAINER_HOSTNAME, f"{st.hostname}\n")
    return file_mounts(d)


def link_hosts(st: ContainerState, states: Iterable[ContainerState], default: Net,
               host_config: dict[str, Any]) -> list[tuple[str, str]]:
    """/etc/hosts lines of legacy links on the default bridge, as moby writes them:
    ``<ip>\t<alias> <hostname> <name>`` (the name only when it differs from the alias).
    On user networks links are DNS aliases instead (see resolver.resolve_name)."""
    if st.mode != default.id:
        return []
    known = list(states)
    out = []
    for spec in host_config.get("Links") or []:
        ref, _, alias = str(spec).partition(":")
        ref = ref.strip("/")
        alias = (alias or ref).strip("/").rsplit("/", 1)[-1]
        child = _state_named(known, ref)
        ep = child.endpoints.get(default.id) if child else None
        if child is None or ep is None:
            continue
        names = [alias, child.hostname or child.container_id[:12]]
        if alias != child.name:
            names.append(child.name)
        out.append((ep.ip, " ".join(names)))
    return out


def _state_named(states: Iterable[ContainerState], ref: str) -> ContainerState | None:
    for other in states:
        if other.name == ref or (len(ref) >= 12 and other.container_id.startswith(ref)):
            return other
    return None


def rewrite_hosts(d: Path, st: ContainerState) -> None:
    """Keep /etc/hosts of a running container in line with its addresses (in place)."""
    path = d / CONTAINER_HOSTS
    if not path.exists():
        return
    lines = [ln for ln in path.read_text().splitlines(keepends=True)
             if not ln.rstrip().endswith(f"\t{st.hostname}") and
             f"\t{st.hostname}." not in ln]
    lines += [f"{ip}\t{st.hostname}\n" for ep in st.endpoints.values()
              for ip in (ep.ip, ep.ip6) if ip]
    files.write_file(path, "".join(lines))
