"""Docker image references (distribution/reference's grammar), stdlib only.

``busybox`` normalises to ``docker.io/library/busybox`` (tag ``latest`` when the
caller asks for a default tag); ``localhost:5000/a/b:1`` keeps its registry;
``name@sha256:<64hex>`` pins a digest. :func:`Reference.familiar` gives the
short form Docker prints (``busybox:latest``). Malformed input raises
:class:`InvalidArgument` with moby's wording ("invalid reference format").
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

from runtime.api.errors import InvalidArgument

DEFAULT_DOMAIN = "docker.io"
LEGACY_DOMAIN = "index.docker.io"
OFFICIAL_PREFIX = "library/"
DEFAULT_TAG = "latest"
MAX_NAME = 255

_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*"
_DOMAIN_LABEL = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN = rf"(?:{_DOMAIN_LABEL}(?:\.{_DOMAIN_LABEL})*|\[[0-9a-fA-F:]+\])(?::[0-9]+)?"
_TAG = r"[\w][\w.-]{0,127}"
_DIGEST = r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}"
_REFERENCE = re.compile(
    rf"^(?P<name>(?:{_DOMAIN}/)?{_COMPONENT}(?:/{_COMPONENT})*)"
    rf"(?::(?P<tag>{_TAG}))?(?:@(?P<digest>{_DIGEST}))?$"
)
_COMPONENT_RE = re.compile(rf"^{_COMPONENT}$")
_TAG_RE = re.compile(rf"^{_TAG}$")
_HEX64 = re.compile(r"^[a-f0-9]{64}$")
_SHA256 = re.compile(r"^sha256:[a-f0-9]{64}$")


@dataclass(frozen=True, slots=True)
class Reference:
    """A normalised reference: ``domain/path[:tag][@digest]``."""

    domain: str
    path: str
    tag: str | None = None
    digest: str | None = None

    @property
    def name(self) -> str:
        """The full repository name, e.g. ``docker.io/library/busybox``."""
        return f"{self.domain}/{self.path}"

    @property
    def familiar_name(self) -> str:
        """The repository as Docker prints it, e.g. ``busybox`` or ``localhost:5000/x``."""
        if self.domain != DEFAULT_DOMAIN:
            return self.name
        if self.path.startswith(OFFICIAL_PREFIX) and "/" not in self.path[len(OFFICIAL_PREFIX) :]:
            return self.path[len(OFFICIAL_PREFIX) :]
        return self.path

    def familiar(self) -> str:
        return self.familiar_name + self._suffix()

    def with_tag(self, tag: str) -> Reference:
        if not _TAG_RE.match(tag):
            raise InvalidArgument(f"invalid tag format: {tag!r}")
        return replace(self, tag=tag, digest=None)

    def with_digest(self, digest: str) -> Reference:
        check_digest(digest)
        return replace(self, tag=None, digest=digest)

    def repository(self) -> Reference:
        return Reference(self.domain, self.path)

    def _suffix(self) -> str:
        out = f":{self.tag}" if self.tag else ""
        return out + (f"@{self.digest}" if self.digest else "")

    def __str__(self) -> str:
        return self.name + self._suffix()


def parse(text: str, *, default_tag: bool = False) -> Reference:
    """Parse and normalise *text*; with *default_tag*, a bare name gets ``:latest``."""
    if not text:
        raise InvalidArgument(
            "invalid reference format: repository name must have at least one component")
    if _HEX64.match(text):
        raise InvalidArgument(
            f"invalid repository name ({text}), cannot specify 64-byte hexadecimal strings"
        )
    m = _REFERENCE.match(text)
    if not m:
        lowered = text.lower()
        if lowered != text and _REFERENCE.match(lowered):
            raise InvalidArgument(
                f"invalid reference format: repository name ({text.split(':')[0]}) "
                "must be lowercase"
            )
        raise InvalidArgument(f"invalid reference format: {text!r}")
    name = m.group("name")
    if len(name) > MAX_NAME:
        raise InvalidArgument("invalid reference format: repository name must not be more"
                              f" than {MAX_NAME} characters")
    domain, path = split_domain(name)
    digest = m.group("digest")
    if digest is not None:
        check_digest(digest)
    tag = m.group("tag")
    if default_tag and tag is None and digest is None:
        tag = DEFAULT_TAG
    return Reference(domain, path, tag, digest)


def split_domain(name: str) -> tuple[str, str]:
    """Docker's rule: the first component is a registry if it has ``.``/``:`` or is localhost."""
    first, sep, rest = name.partition("/")
    if not sep or ("." not in first and ":" not in first and first != "localhost"
                   and first.lower() == first):
        domain, path = DEFAULT_DOMAIN, name
    else:
        domain, path = first, rest
    if domain == LEGACY_DOMAIN:
        domain = DEFAULT_DOMAIN
    if domain == DEFAULT_DOMAIN and "/" not in path:
        path = OFFICIAL_PREFIX + path
    for component in path.split("/"):
        if not _COMPONENT_RE.match(component):
            raise InvalidArgument(f"invalid reference format: {name!r}")
    return domain, path


def check_digest(digest: str) -> None:
    algo, _, hexpart = digest.partition(":")
    if algo == "sha256" and not _SHA256.match(digest):
        raise InvalidArgument(f"invalid checksum digest format: {digest!r}")
    if algo not in ("sha256", "sha384", "sha512") or not hexpart:
        raise InvalidArgument(f"unsupported digest algorithm: {digest!r}")


def is_digest(text: str) -> bool:
    return bool(_SHA256.match(text))


def familiar_string(text: str) -> str:
    """A normalised ``name[:tag][@digest]`` string in Docker's short form."""
    return parse(text).familiar()


def join_repo_tag(repo: str, tag: str) -> Reference:
    """``repo`` and ``tag`` query parameters (``docker tag``/import/pull): ``tag`` may be empty.

    A ``repo`` that already carries a tag or digest keeps it when ``tag`` is empty.
    """
    ref = parse(repo)
    if tag:
        if is_digest(tag):
            return ref.with_digest(tag)
        if ref.tag or ref.digest:
            raise InvalidArgument(f"invalid reference format: {repo!r} already has a tag")
        return ref.with_tag(tag)
    if ref.tag is None and ref.digest is None:
        return ref.with_tag(DEFAULT_TAG)
    return ref
