"""Registry options: insecure registries try HTTPS (unverified) before HTTP, Docker Hub
mirrors are tried in order before the origin, and a missing platform is a clear error."""

from __future__ import annotations

import datetime
import ipaddress
import json
import os
import subprocess
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from runtime.api.errors import NotFound
from runtime.api.reference import parse
from runtime.images.registry.client import DOCKER_HUB, Endpoint, endpoints, probe_scheme
from runtime.images.registry.pull import MEDIA_DOCKER_LIST, pull_messages
from runtime.images.registry.push import push_messages
from runtime.images.store import ImageStore
from tests.images.layers import file, tar_bytes
from tests.images.registry import Registry, docker_archive, free_port, start_registry

pytestmark = pytest.mark.registry

LAYER = tar_bytes([file("etc/options", b"o"), file("bin/sh", b"#!", 0o755)])


def _self_signed(tmp: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = tmp / "tls.crt", tmp / "tls.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("optarchive") / "one.tar"
    docker_archive(path, [LAYER], Cmd=["sh"])
    return path


@pytest.fixture(scope="module")
def tls_registry(tmp_path_factory: pytest.TempPathFactory, archive: Path) -> Iterator[Registry]:
    tmp = tmp_path_factory.mktemp("tlsreg")
    reg = start_registry(tmp / "registry", tls=_self_signed(tmp))
    try:
        reg.push_archive(archive, "secure/one:1")
        yield reg
    finally:
        reg.stop()


@pytest.fixture(scope="module")
def plain_registry(tmp_path_factory: pytest.TempPathFactory, archive: Path) -> Iterator[Registry]:
    reg = start_registry(tmp_path_factory.mktemp("plainreg"))
    try:
        reg.push_archive(archive, "library/mirrored:1")
        _manifest_list(reg, "library/mirrored", "1", "multi")
        yield reg
    finally:
        reg.stop()


def _manifest_list(reg: Registry, repo: str, tag: str, list_tag: str) -> None:
    """Put a manifest list offering the image at *tag* for linux/amd64 only."""
    accept = "application/vnd.docker.distribution.manifest.v2+json"
    req = urllib.request.Request(f"http://{reg.host}/v2/{repo}/manifests/{tag}",
                                 headers={"Accept": accept})
    with urllib.request.urlopen(req) as resp:
        body, digest = resp.read(), resp.headers["Docker-Content-Digest"]
    doc = {"schemaVersion": 2, "mediaType": MEDIA_DOCKER_LIST, "manifests": [
        {"mediaType": accept, "size": len(body), "digest": digest,
         "platform": {"architecture": "amd64", "os": "linux"}}]}
    put = urllib.request.Request(f"http://{reg.host}/v2/{repo}/manifests/{list_tag}",
                                 data=json.dumps(doc).encode(), method="PUT",
                                 headers={"Content-Type": MEDIA_DOCKER_LIST})
    urllib.request.urlopen(put).read()


def _pull(store: ImageStore, ref: str, platform: str = "") -> list[dict[str, Any]]:
    return list(pull_messages(store, parse(ref, default_tag=True), None, platform))


def test_insecure_registry_tries_https_first(store: ImageStore, tls_registry: Registry,
                                             plain_registry: Registry) -> None:
    assert probe_scheme(tls_registry.host) == "https"
    assert probe_scheme(plain_registry.host) == "http"
    # A self-signed HTTPS registry on loopback (insecure by default, as in Docker):
    # it does not speak plain HTTP at all, so this pull proves HTTPS was used.
    _pull(store, f"{tls_registry.host}/secure/one:1")
    store.tag(f"{tls_registry.host}/secure/one:1", f"{tls_registry.host}/secure/two:1")
    list(push_messages(store, parse(f"{tls_registry.host}/secure/two:1"), None))
    assert tls_registry.inspect("secure/two:1")["Digest"]


def test_secure_registries_are_never_downgraded(store: ImageStore) -> None:
    assert endpoints(store, "registry.example.com", for_pull=True) == [
        Endpoint("https", "registry.example.com", insecure=False)]
    store.insecure_registries = ("registry.example.com",)
    assert endpoints(store, "registry.example.com", for_pull=True)[0].insecure


def test_mirrors_in_order_then_origin(store: ImageStore) -> None:
    store.registry_mirrors = ("https://m1.example", "http://127.0.0.1:5001/")
    got = endpoints(store, "docker.io", for_pull=True)
    assert [(e.scheme, e.host, e.mirror) for e in got] == [
        ("https", "m1.example", True), ("http", "127.0.0.1:5001", True),
        ("https", DOCKER_HUB, False)]
    assert not got[0].insecure and got[1].probed  # no downgrade; http:// is used as given
    assert [e.host for e in endpoints(store, "docker.io", for_pull=False)] == [DOCKER_HUB]


def test_pull_falls_back_across_mirrors(store: ImageStore, plain_registry: Registry,
                                        tmp_path: Path) -> None:
    empty = start_registry(tmp_path / "empty")
    try:
        dead = f"http://127.0.0.1:{free_port()}"
        store.registry_mirrors = (dead, f"http://{empty.host}", f"http://{plain_registry.host}")
        msgs = _pull(store, "mirrored:1")
    finally:
        empty.stop()
    assert "Downloaded newer image for mirrored:1" in msgs[-1]["status"]
    assert store.get("docker.io/library/mirrored:1").config["config"]["Cmd"] == ["sh"]


def test_platform_mismatch_is_clear(store: ImageStore, plain_registry: Registry) -> None:
    with pytest.raises(NotFound) as err:
        _pull(store, f"{plain_registry.host}/library/mirrored:multi", "linux/arm64")
    assert err.value.message == "no matching manifest for linux/arm64 in the manifest list entries"
    _pull(store, f"{plain_registry.host}/library/mirrored:multi", "linux/amd64")


def test_platform_error_through_the_docker_cli(engine: Any, plain_registry: Registry) -> None:
    out = subprocess.run(
        ["docker", "pull", "--platform", "linux/arm64",
         f"{plain_registry.host}/library/mirrored:multi"],
        env={**os.environ, "DOCKER_HOST": engine.url}, capture_output=True, text=True,
        timeout=60, check=False)
    assert out.returncode != 0
    assert "no matching manifest for linux/arm64 in the manifest list entries" in out.stderr
