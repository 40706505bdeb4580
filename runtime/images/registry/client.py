"""HTTP to one registry (OCI distribution spec) on http.client: auth retries, redirects, errors.

One :class:`Transport` per thread (it holds a keep-alive connection); the
:class:`Authorizer` is shared. Loopback registries (127.0.0.0/8, ::1,
localhost) and the engine's insecure registries are spoken to over plain HTTP,
as Docker does; everything else over TLS with the system CAs.
"""

from __future__ import annotations

import http.client
import ipaddress
import json
import logging
import socket
import ssl
import urllib.parse
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, BinaryIO

from runtime.api import reference
from runtime.api.errors import CoveError, Forbidden, NotFound
from runtime.images.registry.auth import Authorizer, Unauthorized

if TYPE_CHECKING:
    from runtime.images.store import ImageStore

log = logging.getLogger(__name__)
TIMEOUT = 60.0
DOCKER_HUB = "registry-1.docker.io"
USER_AGENT = "cove/0.1 (docker-compatible)"


class RegistryError(CoveError):
    """The registry failed or refused a request (status kept for the caller)."""


def is_insecure(host: str, insecure: tuple[str, ...]) -> bool:
    name = host.rsplit(":", 1)[0].strip("[]") if not host.endswith("]") else host.strip("[]")
    if name == "localhost" or host in insecure or name in insecure:
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def endpoint(store: ImageStore, domain: str, *, for_pull: bool) -> tuple[str, str]:
    """(scheme, host:port) to talk to for *domain*; Docker Hub may go to a mirror for pulls."""
    if domain == reference.DEFAULT_DOMAIN:
        if for_pull and store.registry_mirrors:
            url = urllib.parse.urlsplit(store.registry_mirrors[0])
            return url.scheme or "https", url.netloc or url.path
        return "https", DOCKER_HUB
    scheme = "http" if is_insecure(domain, store.insecure_registries) else "https"
    return scheme, domain


class Transport:
    def __init__(self, store: ImageStore, domain: str, auth: Authorizer, *,
                 for_pull: bool = True) -> None:
        self.scheme, self.host = endpoint(store, domain, for_pull=for_pull)
        self.auth = auth
        self._conn: http.client.HTTPConnection | None = None

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _connection(self) -> http.client.HTTPConnection:
        if self._conn is None:
            self._conn = _connect(self.scheme, self.host)
        return self._conn

    def request(self, method: str, path: str, headers: Mapping[str, str] | None = None,
                body: bytes | BinaryIO | None = None, *, stream: bool = False
                ) -> http.client.HTTPResponse:
        """Send with auth; on 401 answer the challenge once and resend (rewinding the body)."""
        sent = self.auth.header()
        resp = self._send(method, path, headers, body, sent)
        if resp.status == 401:
            challenge = resp.getheader("WWW-Authenticate", "")
            resp.read()
            new = self.auth.challenge(self, challenge, sent)
            if hasattr(body, "seek"):
                body.seek(0)  # type: ignore[union-attr]
            resp = self._send(method, path, headers, body, new)
            if resp.status == 401:
                resp.read()
                raise Unauthorized("unauthorized: authentication required")
        return resp

    def _send(self, method: str, path: str, headers: Mapping[str, str] | None,
              body: bytes | BinaryIO | None, authorization: str) -> http.client.HTTPResponse:
        hdrs = {"User-Agent": USER_AGENT, **(headers or {})}
        if authorization:
            hdrs["Authorization"] = authorization
        for attempt in (1, 2):
            conn = self._connection()
            try:
                conn.request(method, path, body=body, headers=hdrs)
                return conn.getresponse()
            except (ConnectionError, http.client.RemoteDisconnected, BrokenPipeError) as e:
                self.close()  # a stale keep-alive connection: retry once on a new one
                if attempt == 2 or (body is not None and not hasattr(body, "seek")):
                    raise RegistryError(f"{self.host}: {e}") from None
                if hasattr(body, "seek"):
                    body.seek(0)  # type: ignore[union-attr]
            except (OSError, http.client.HTTPException) as e:
                self.close()
                raise RegistryError(f"{self.host}: {_describe(e)}") from None
        raise AssertionError("unreachable")

    def fetch_url(self, url: str, headers: Mapping[str, str]) -> tuple[int, bytes]:
        """A one-off GET of an absolute URL (token realm); no registry auth attached."""
        resp, conn = open_url(url, headers)
        try:
            return resp.status, resp.read(1 << 20)
        finally:
            conn.close()

    def ping(self) -> None:
        resp = self.request("GET", "/v2/")
        resp.read()
        if resp.status != 200:
            raise RegistryError(f"{self.host}: /v2/ answered {resp.status}")

    def json(self, path: str) -> Any:
        resp = self.request("GET", path, {"Accept": "application/json"})
        body = resp.read(16 << 20)
        check(resp, body, path)
        return json.loads(body)


def open_url(url: str, headers: Mapping[str, str], method: str = "GET"
             ) -> tuple[http.client.HTTPResponse, http.client.HTTPConnection]:
    """GET an absolute URL (following up to 5 redirects, e.g. blob storage); caller closes."""
    for _ in range(5):
        parts = urllib.parse.urlsplit(url)
        conn = _connect(parts.scheme, parts.netloc)
        path = parts.path + (f"?{parts.query}" if parts.query else "")
        try:
            conn.request(method, path or "/", headers={"User-Agent": USER_AGENT, **headers})
            resp = conn.getresponse()
        except (OSError, http.client.HTTPException) as e:
            conn.close()
            raise RegistryError(f"{parts.netloc}: {_describe(e)}") from None
        if resp.status in (301, 302, 303, 307, 308) and resp.getheader("Location"):
            url = urllib.parse.urljoin(url, resp.getheader("Location", ""))
            resp.read()
            conn.close()
            continue
        return resp, conn
    raise RegistryError(f"too many redirects fetching {urllib.parse.urlsplit(url).netloc}")


def _connect(scheme: str, host: str) -> http.client.HTTPConnection:
    if scheme == "http":
        return http.client.HTTPConnection(host, timeout=TIMEOUT)
    return http.client.HTTPSConnection(host, timeout=TIMEOUT,
                                       context=ssl.create_default_context())


def _describe(e: BaseException) -> str:
    if isinstance(e, socket.timeout):
        return "timed out"
    if isinstance(e, ssl.SSLError):
        return f"TLS error: {e.reason or e}"
    return str(e) or type(e).__name__


def check(resp: http.client.HTTPResponse, body: bytes, what: str) -> None:
    """Raise the error a non-2xx registry answer stands for (registry message when given)."""
    if 200 <= resp.status < 300:
        return
    message = _error_message(body) or f"{resp.status} {resp.reason}"
    if resp.status == 401:
        raise Unauthorized(f"unauthorized: {message}")
    if resp.status == 403:
        raise Forbidden(f"denied: {message}")
    if resp.status == 404:
        raise NotFound(f"{what}: not found: {message}")
    raise RegistryError(f"{what}: registry answered {resp.status}: {message}")


def _error_message(body: bytes) -> str:
    try:
        errors = json.loads(body).get("errors") or []
        return "; ".join(str(e.get("message") or e.get("code")) for e in errors)
    except (ValueError, AttributeError):
        return ""
