"""HTTP to one registry (OCI distribution spec) on http.client: auth retries, redirects, errors.

One :class:`Transport` per thread (it holds a keep-alive connection); the
:class:`Authorizer` is shared. Insecure registries (the engine's
``--insecure-registry`` list, plus loopback: 127.0.0.0/8, ::1, localhost) are
tried over HTTPS without certificate checks first and over plain HTTP when
that fails, as Docker does; everything else only over TLS with the system CAs.
Docker Hub pulls go to each configured mirror in order, then to Docker Hub.
"""

from __future__ import annotations

import dataclasses
import http.client
import ipaddress
import json
import logging
import socket
import ssl
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass
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
_SEND_BLOCK = 256 << 10


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


@dataclass(frozen=True, slots=True)
class Endpoint:
    """Where to send a registry's requests. *insecure*: no certificate checks, and
    plain HTTP when the HTTPS handshake fails."""

    scheme: str
    host: str
    insecure: bool = False
    mirror: bool = False
    probed: bool = False  # the scheme of an insecure endpoint is already decided


def endpoints(store: ImageStore, domain: str, *, for_pull: bool) -> list[Endpoint]:
    """Endpoints to try for *domain*, in order: Docker Hub's mirrors for pulls, then the origin."""
    if domain == reference.DEFAULT_DOMAIN:
        out = []
        for mirror in store.registry_mirrors if for_pull else ():
            url = urllib.parse.urlsplit(mirror if "://" in mirror else "https://" + mirror)
            host = url.netloc
            insecure = url.scheme == "http" or is_insecure(host, store.insecure_registries)
            # An http:// mirror is taken at its word: no HTTPS probe.
            out.append(Endpoint(url.scheme or "https", host, insecure, mirror=True,
                                probed=url.scheme == "http"))
        return [*out, Endpoint("https", DOCKER_HUB)]
    return [Endpoint("https", domain, is_insecure(domain, store.insecure_registries))]


class Transport:
    def __init__(self, store: ImageStore, domain: str, auth: Authorizer, *,
                 for_pull: bool = True, at: Endpoint | None = None) -> None:
        self.endpoint = at or endpoints(store, domain, for_pull=for_pull)[-1]
        self.scheme, self.host = self.endpoint.scheme, self.endpoint.host
        self.auth = auth
        self._conn: http.client.HTTPConnection | None = None
        self._probed = not self.endpoint.insecure or self.endpoint.probed

    def resolved(self) -> Endpoint:
        """This transport's endpoint with the scheme it settled on (for sibling threads)."""
        if not self._probed:  # benign if two threads race: both find the same scheme
            self.scheme, self._probed = probe_scheme(self.host), True
        return dataclasses.replace(self.endpoint, scheme=self.scheme, probed=True)

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _connection(self) -> http.client.HTTPConnection:
        self.resolved()
        if self._conn is None:
            self._conn = _connect(self.scheme, self.host, verify=not self.endpoint.insecure)
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


def _connect(scheme: str, host: str, *, verify: bool = True) -> http.client.HTTPConnection:
    # blocksize: how much of a file body http.client reads per send (default 8 KiB).
    if scheme == "http":
        return http.client.HTTPConnection(host, timeout=TIMEOUT, blocksize=_SEND_BLOCK)
    context = ssl.create_default_context()
    if not verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return http.client.HTTPSConnection(host, timeout=TIMEOUT, context=context,
                                       blocksize=_SEND_BLOCK)


def probe_scheme(host: str) -> str:
    """"https" when *host* completes a TLS handshake (certificate unchecked), else "http".

    Docker's --insecure-registry rule. Only the handshake decides: a server that
    is down fails the same way over either scheme, so it keeps "https".
    """
    conn = _connect("https", host, verify=False)
    conn.timeout = 10
    try:
        conn.connect()
        return "https"
    except (ssl.SSLError, ConnectionResetError, http.client.HTTPException):
        log.debug("registry %s: no TLS, using plain HTTP", host)
        return "http"
    except OSError:
        return "https"
    finally:
        conn.close()


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
