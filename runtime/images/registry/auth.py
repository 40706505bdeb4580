"""Registry credentials and the two auth schemes: Bearer (distribution's token flow) and Basic.

A registry answers 401 with ``WWW-Authenticate``; for ``Bearer realm=..,service=..``
we fetch a token for the scopes we need (with Basic credentials if we have any,
anonymously otherwise) and retry. Tokens are cached per (realm, service, scopes).
Secrets never appear in messages, logs or ``repr``.
"""

from __future__ import annotations

import base64
import json
import re
import threading
import urllib.parse
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from runtime.api.errors import CoveError

if TYPE_CHECKING:
    from runtime.images.registry.client import Transport
    from runtime.images.store import ImageStore

_PARAM = re.compile(r'(\w+)="([^"]*)"')


class Unauthorized(CoveError):
    status = 401


class TokenRefused(Unauthorized):
    """The token server itself said no (bad credentials, or no anonymous access)."""


@dataclass(frozen=True, slots=True)
class Credentials:
    username: str = ""
    password: str = field(default="", repr=False)
    server: str = ""
    identity_token: str = field(default="", repr=False)
    registry_token: str = field(default="", repr=False)

    @property
    def anonymous(self) -> bool:
        return not (self.username or self.identity_token or self.registry_token)

    def basic(self) -> str:
        raw = f"{self.username}:{self.password}".encode()
        return "Basic " + base64.b64encode(raw).decode()


@dataclass(frozen=True, slots=True)
class Challenge:
    scheme: str  # "bearer" or "basic"
    params: dict[str, str]


def parse_challenge(header: str) -> Challenge | None:
    scheme, _, rest = header.strip().partition(" ")
    if scheme.lower() not in ("bearer", "basic"):
        return None
    return Challenge(scheme.lower(), dict(_PARAM.findall(rest)))


class Authorizer:
    """Answers challenges for one registry; shared by the threads of one pull or push."""

    def __init__(self, creds: Credentials | None, scopes: list[str]) -> None:
        self.creds = creds or Credentials()
        self.scopes = scopes
        self._lock = threading.Lock()
        self._header = self._initial()

    def _initial(self) -> str:
        if self.creds.registry_token:
            return "Bearer " + self.creds.registry_token
        return ""

    def header(self) -> str:
        with self._lock:
            return self._header

    def challenge(self, transport: Transport, header: str, failed: str) -> str:
        """A new Authorization header for a 401's challenge, or raise Unauthorized."""
        ch = parse_challenge(header)
        with self._lock:
            if self._header != failed:
                return self._header  # another thread already refreshed it
            if ch is None:
                raise Unauthorized("unauthorized: authentication required")
            if ch.scheme == "basic":
                if self.creds.anonymous or failed.startswith("Basic"):
                    raise Unauthorized("unauthorized: authentication required")
                self._header = self.creds.basic()
            else:
                self._header = "Bearer " + self._token(transport, ch, failed.startswith("Bearer"))
            return self._header

    def _token(self, transport: Transport, ch: Challenge, retried: bool) -> str:
        realm = ch.params.get("realm", "")
        if not realm.startswith(("http://", "https://")):
            raise Unauthorized(f"invalid token realm {realm!r}")
        if retried and self.creds.anonymous:
            raise Unauthorized("unauthorized: authentication required")
        query = [("service", ch.params.get("service", ""))]
        scopes = self.scopes or ([ch.params["scope"]] if "scope" in ch.params else [])
        query += [("scope", s) for s in scopes]
        url = realm + ("&" if "?" in realm else "?") + urllib.parse.urlencode(query)
        headers = {} if self.creds.anonymous else {"Authorization": self.creds.basic()}
        status, body = transport.fetch_url(url, headers)
        if status in (401, 403):
            raise TokenRefused("unauthorized: incorrect username or password"
                               if not self.creds.anonymous else "unauthorized: access denied")
        if status != 200:
            raise CoveError(f"token server answered {status}")
        try:
            data = json.loads(body)
            token = str(data.get("token") or data.get("access_token") or "")
        except (ValueError, AttributeError):
            token = ""
        if not token:
            raise CoveError("token server answered without a token")
        return token


def login(store: ImageStore, creds: Credentials) -> str:
    """``POST /auth``: check *creds* against the registry's ``/v2/``; returns an identity token."""
    from runtime.api import reference
    from runtime.images.registry.client import Transport

    server = creds.server or reference.DEFAULT_DOMAIN
    host = urllib.parse.urlsplit(server).netloc if "://" in server else server.split("/")[0]
    if host in ("index.docker.io", "docker.io"):
        host = reference.DEFAULT_DOMAIN
    transport = Transport(store, host, Authorizer(creds, []))
    try:
        transport.ping()
    finally:
        transport.close()
    return ""
