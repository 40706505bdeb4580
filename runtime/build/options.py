"""What a build is asked for: its options (the /build query), the registry logins for FROM
pulls, and the build args every Dockerfile has without declaring them."""

from __future__ import annotations

from dataclasses import dataclass, field

from runtime.api import reference
from runtime.images.platforms import host
from runtime.images.registry.auth import Credentials

# Build args RUN sees in its environment without an ARG (docker's predefined proxy args);
# they are not recorded in the image history.
PROXY_ARGS = frozenset({
    "HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "FTP_PROXY", "ftp_proxy",
    "NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy",
})
HUB_AUTH_KEY = "https://index.docker.io/v1/"  # moby's IndexServer: Docker Hub's auth key


@dataclass(frozen=True, slots=True)
class Options:
    tags: tuple[str, ...] = ()
    dockerfile: str = "Dockerfile"
    build_args: dict[str, str | None] = field(default_factory=dict)
    target: str = ""
    nocache: bool = False
    pull: bool = False
    quiet: bool = False
    labels: dict[str, str] = field(default_factory=dict)
    network: str = ""
    rm: bool = True
    forcerm: bool = False
    cache_from: tuple[str, ...] = ()
    extra_hosts: tuple[str, ...] = ()  # ``host:ip``: /etc/hosts entries of RUN containers
    # X-Registry-Config: registry (as the client keyed it) → its login, for FROM pulls
    registry_auths: dict[str, Credentials] = field(default_factory=dict)
    legacy_output: bool = False  # the client speaks API < 1.44: moby 20.10-24's wording


def resolve_auth(auths: dict[str, Credentials], domain: str) -> Credentials | None:
    """The login X-Registry-Config holds for *domain* (moby's ResolveAuthConfig).

    Docker Hub's is keyed ``https://index.docker.io/v1/``; others by host[:port],
    else by any key that is that host once scheme and path are stripped
    (``https://registry.example:5000/v2/``). None: pull anonymously.
    """
    if not auths:
        return None
    if domain in (reference.DEFAULT_DOMAIN, reference.LEGACY_DOMAIN):
        return auths.get(HUB_AUTH_KEY)
    if domain in auths:
        return auths[domain]
    for key, creds in auths.items():
        if _hostname(key) == domain:
            return creds
    return None


def _hostname(key: str) -> str:
    scheme, sep, rest = key.partition("://")
    if sep and scheme in ("http", "https"):
        key = rest
    return key.partition("/")[0]


def builtin_args() -> dict[str, str]:
    plat = host()
    value = f"{plat.os}/{plat.architecture}" + (f"/{plat.variant}" if plat.variant else "")
    out = {}
    for prefix in ("BUILD", "TARGET"):
        out.update({f"{prefix}PLATFORM": value, f"{prefix}OS": plat.os,
                    f"{prefix}ARCH": plat.architecture, f"{prefix}VARIANT": plat.variant})
    return out
