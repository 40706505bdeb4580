"""Image endpoints of the Docker Engine API: list, inspect, history, tag, rmi, prune,
import, save, load, pull, push and registry login.

Image names contain ``/`` and ``:``, so per-image routes use ``{name:.*}``; the
fixed paths (``/images/json``, ``/images/create``, ...) are registered first.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import itertools
import json
import urllib.request
from collections.abc import Iterator
from types import ModuleType
from typing import TYPE_CHECKING, Any, BinaryIO, cast

from runtime.api import reference
from runtime.api.errors import CoveError, InvalidArgument, Unavailable
from runtime.engine.http import Request, Response, json_lines, json_response, no_content
from runtime.engine.router import Router
from runtime.images import views

if TYPE_CHECKING:
    from runtime.engine.engine import Engine
    from runtime.images.registry.auth import Credentials


def _archive() -> ModuleType:
    """runtime.images.archive, imported on first use (save/load): engine start-up is slow
    under TCG in the VM guest, and most engines never save or load."""
    from runtime.images import archive

    return archive


def register(router: Router, engine: Engine) -> None:
    store = engine.images
    config = getattr(engine, "config", None)
    if config is not None:
        store.insecure_registries = tuple(getattr(config, "insecure_registries", ()))
        store.registry_mirrors = tuple(getattr(config, "registry_mirrors", ()))

    def list_images(req: Request) -> Response:
        images = views.listed(store.list(), all_=req.bool_arg("all"))
        images = views.filter_images(store, images, req.filters())
        images.sort(key=lambda i: i.created, reverse=True)
        return json_response([views.summary(i, req.api_version) for i in images])

    def inspect(req: Request) -> Response:
        image = store.get(req.params["name"])
        return json_response(views.inspect(store, image, req.api_version))

    def history(req: Request) -> Response:
        return json_response(views.history(store, store.get(req.params["name"])))

    def tag(req: Request) -> Response:
        repo = req.str_arg("repo")
        if not repo:
            raise InvalidArgument("repository name (repo) is required")
        ref = reference.join_repo_tag(repo, req.str_arg("tag"))
        if ref.digest:
            raise InvalidArgument("refusing to create a tag with a digest reference")
        store.tag(req.params["name"], str(ref))
        return no_content(201)

    def delete(req: Request) -> Response:
        return json_response(store.delete(req.params["name"], force=req.bool_arg("force")))

    def prune(req: Request) -> Response:
        return json_response(store.prune(req.filters()))

    def create(req: Request) -> Response:
        if req.has("fromSrc"):
            return _import(req)
        if req.str_arg("fromImage"):
            return _pull(req)
        raise InvalidArgument("fromImage or fromSrc is required")

    def _import(req: Request) -> Response:
        src = req.str_arg("fromSrc")
        repo = req.str_arg("repo")
        ref = str(reference.join_repo_tag(repo, req.str_arg("tag"))) if repo else None
        changes = req.query.get("changes", [])
        stream: BinaryIO
        if src == "-":
            stream = req.body()
        elif src.startswith(("http://", "https://")):
            stream = cast(BinaryIO, urllib.request.urlopen(src, timeout=60))
        else:
            raise InvalidArgument(f"fromSrc must be '-' or an http(s) URL, not {src!r}")
        with stream:
            image = store.import_tar(stream, ref, changes, req.str_arg("message"))
        return json_lines([{"status": image.id}])

    def _pull(req: Request) -> Response:
        from runtime.images.registry.pull import pull_messages

        ref = reference.join_repo_tag(req.str_arg("fromImage"), req.str_arg("tag"))
        return json_lines(primed(pull_messages(store, ref, _auth(req), req.str_arg("platform"))))

    def push(req: Request) -> Response:
        from runtime.images.registry.push import push_messages

        name = req.params["name"]
        tag = req.str_arg("tag")
        ref = reference.parse(name)
        if tag:
            ref = ref.with_tag(tag)
        return json_lines(primed(push_messages(store, ref, _auth(req),
                                               all_tags=not tag and not ref.tag)))

    def save_many(req: Request) -> Response:
        names = req.query.get("names", [])
        if not names:
            raise InvalidArgument("no images to save (names is required)")
        return Response(body=_archive().save(store, names), content_type="application/x-tar")

    def save_one(req: Request) -> Response:
        return Response(body=_archive().save(store, [req.params["name"]]),
                        content_type="application/x-tar")

    def load(req: Request) -> Response:
        try:
            lines = _archive().load(store, req.body())
        except CoveError as e:
            # moby reports a bad archive in-band, after a 200 (docker-py raises ImageLoadError).
            with contextlib.suppress(Exception):
                req.drain()
            return json_lines([{"errorDetail": {"message": e.message}, "error": e.message}])
        return json_lines({"stream": line + "\n"} for line in lines)

    def search(req: Request) -> Response:
        raise Unavailable("image search is not supported by this engine")

    def auth(req: Request) -> Response:
        from runtime.images.registry.auth import login

        body = req.json({}) or {}
        token = login(store, _credentials(body))
        return json_response({"Status": "Login Succeeded", "IdentityToken": token})

    router.add("GET", "/images/json", list_images)
    router.add("POST", "/images/create", create)
    router.add("POST", "/images/load", load)
    router.add("POST", "/images/prune", prune)
    router.add("GET", "/images/get", save_many)
    router.add("GET", "/images/search", search)
    router.add("POST", "/auth", auth)
    router.add("GET", "/images/{name:.+}/json", inspect)
    router.add("GET", "/images/{name:.+}/history", history)
    router.add("POST", "/images/{name:.+}/tag", tag)
    router.add("POST", "/images/{name:.+}/push", push)
    router.add("GET", "/images/{name:.+}/get", save_one)
    router.add("DELETE", "/images/{name:.+}", delete)


def primed(messages: Iterator[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """Run a stream to its first message now, so early errors (auth, not found) get a status."""
    first = next(messages, None)
    if first is None:
        return iter(())
    return itertools.chain([first], messages)


def _auth(req: Request) -> Credentials | None:
    header = req.headers.get("X-Registry-Auth", "")
    if not header:
        return None
    try:
        padded = header + "=" * (-len(header) % 4)
        data = json.loads(base64.urlsafe_b64decode(padded.encode()))
    except (binascii.Error, ValueError):
        raise InvalidArgument("invalid X-Registry-Auth header") from None
    return _credentials(data) if isinstance(data, dict) else None


def _credentials(data: dict[str, Any]) -> Credentials:
    from runtime.images.registry.auth import Credentials

    username, password = str(data.get("username") or ""), str(data.get("password") or "")
    if not username and data.get("auth"):
        try:
            username, _, password = base64.b64decode(str(data["auth"])).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            raise InvalidArgument("invalid auth field in credentials") from None
    return Credentials(
        username=username, password=password,
        server=str(data.get("serveraddress") or ""),
        identity_token=str(data.get("identitytoken") or ""),
        registry_token=str(data.get("registrytoken") or ""),
    )

