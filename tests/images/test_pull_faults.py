"""Pulls from a registry that lies, fails, cuts connections or wants a Bearer token."""

from __future__ import annotations

import os

import pytest

from runtime.api.errors import CoveError
from runtime.api.reference import parse
from runtime.images.content import DigestMismatch
from runtime.images.registry.auth import Credentials, Unauthorized
from runtime.images.registry.pull import pull_messages
from runtime.images.store import ImageStore
from tests.images.fakeregistry import Behaviour, serve
from tests.images.layers import file, tar_bytes

LAYERS = [tar_bytes([file("a", os.urandom(200_000))]), tar_bytes([file("b", b"b")])]


def pull(store: ImageStore, host: str, creds: Credentials | None = None) -> list[str]:
    msgs = pull_messages(store, parse(f"{host}/x/y:1"), creds)
    return [m["status"] for m in msgs if "status" in m]


def assert_clean(store: ImageStore) -> None:
    store.gc()
    assert store.list() == []
    assert store.snapshots.layers() == []
    assert list((store.layout.snapshots / "staging").iterdir()) == []


@pytest.mark.parametrize("behaviour", [Behaviour(lie_digest=True), Behaviour(lie_size=10)])
def test_lying_registry_refused(store: ImageStore, behaviour: Behaviour) -> None:
    with serve(LAYERS, behaviour) as (host, _), pytest.raises(DigestMismatch):
        pull(store, host)
    assert_clean(store)
    assert store.content.digests() == set()
    with serve(LAYERS, Behaviour()) as (host, _):
        assert pull(store, host)[-1].startswith("Status: Downloaded")


@pytest.mark.parametrize("status", [500, 403, 404])
def test_blob_errors(store: ImageStore, status: int) -> None:
    with serve(LAYERS, Behaviour(fail_status=status)) as (host, _), pytest.raises(CoveError):
        pull(store, host)
    assert_clean(store)


def test_interrupted_download_resumes(store: ImageStore) -> None:
    behaviour = Behaviour(truncate_once=True)
    with serve(LAYERS, behaviour) as (host, _):
        assert pull(store, host)[-1].startswith("Status: Downloaded")
    assert behaviour.ranges and behaviour.ranges[0] != "bytes=0-"


def test_bearer_anonymous_and_credentials(store: ImageStore) -> None:
    with serve(LAYERS, Behaviour(bearer=True)) as (host, reg):
        assert pull(store, host)[-1].startswith("Status: Downloaded")
        assert any(p.startswith("/token?service=fake&scope=repository%3Ax%2Fy%3Apull")
                   for p in reg.b.seen)
    store.delete(f"{host}/x/y:1")
    with serve(LAYERS, Behaviour(bearer=True, user="u", password="p")) as (host, _):
        with pytest.raises(Unauthorized):
            pull(store, host)
        with pytest.raises(Unauthorized):
            pull(store, host, Credentials("u", "bad"))
        assert pull(store, host, Credentials("u", "p"))[-1].startswith("Status: Downloaded")


def test_hostile_layer_refused_then_good_pull(store: ImageStore) -> None:
    evil = [tar_bytes([file("../../escape", b"x")])]
    with serve(evil, Behaviour()) as (host, _), pytest.raises(CoveError, match="traversal"):
        pull(store, host)
    assert_clean(store)
    with serve(LAYERS, Behaviour()) as (host, _):
        assert pull(store, host)[-1].startswith("Status: Downloaded")
