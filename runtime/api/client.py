"""A typed client for the Docker Engine API that Cove's engine speaks.

Used by the ``cove`` CLI and the desktop app. Methods are thin: they name the
endpoint and its parameters and return Docker's JSON as plain dicts/lists,
streams as iterators, attach/exec as a :class:`Hijacked` socket. Bodies
(``config`` arguments) are Docker's request JSON, passed through untouched.

    client = Client()                       # $COVE_HOST or the default socket
    for c in client.containers(all=True):
        print(c["Id"][:12], c["Status"])
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator, Mapping
from typing import Any
from urllib.parse import quote

from runtime.api.wire import (
    API_VERSION,
    JSON,
    BaseClient,
    Body,
    DaemonResponse,
    Hijacked,
    Waiter,
    encode_auth,
    encode_query,
)

__all__ = [
    "API_VERSION",
    "JSON",
    "Client",
    "DaemonResponse",
    "Filters",
    "Hijacked",
    "Waiter",
    "encode_auth",
    "encode_query",
]

Filters = Mapping[str, list[str]]


def _q(name: str) -> str:
    """Quote a path segment; image names keep their '/' and ':' as docker sends them."""
    return quote(name, safe="/:@")


class Client(BaseClient):
    # --- system -------------------------------------------------------------

    def ping(self) -> dict[str, str]:
        """GET /_ping; returns the response headers (Api-Version, Ostype, ...)."""
        resp = self.open("GET", "/_ping")
        try:
            resp.read()
            return dict(resp.headers)
        finally:
            resp.close()

    def version(self) -> JSON:
        return dict(self.call("GET", "/version"))

    def info(self) -> JSON:
        return dict(self.call("GET", "/info"))

    def df(self) -> JSON:
        return dict(self.call("GET", "/system/df"))

    def events(
        self, since: str | None = None, until: str | None = None, filters: Filters | None = None
    ) -> Iterator[JSON]:
        return self.stream_json(
            "GET", "/events", {"since": since, "until": until, "filters": filters}
        )

    def auth(self, config: JSON) -> JSON:
        return dict(self.call("POST", "/auth", json_body=config) or {})

    # --- containers ---------------------------------------------------------

    def containers(
        self,
        all: bool = False,
        limit: int | None = None,
        size: bool = False,
        filters: Filters | None = None,
    ) -> list[JSON]:
        q = {"all": all or None, "limit": limit, "size": size or None, "filters": filters}
        return list(self.call("GET", "/containers/json", q))

    def create_container(
        self, config: JSON, name: str | None = None, platform: str | None = None
    ) -> JSON:
        """POST /containers/create; ``config`` is Config + HostConfig + NetworkingConfig."""
        q = {"name": name or None, "platform": platform or None}
        return dict(self.call("POST", "/containers/create", q, json_body=config))

    def inspect_container(self, id: str, size: bool = False) -> JSON:
        return dict(self.call("GET", f"/containers/{_q(id)}/json", {"size": size or None}))

    def start(self, id: str, detach_keys: str | None = None) -> None:
        self.call("POST", f"/containers/{_q(id)}/start", {"detachKeys": detach_keys})

    def stop(self, id: str, timeout: int | None = None, signal: str | None = None) -> None:
        self.call("POST", f"/containers/{_q(id)}/stop", {"t": timeout, "signal": signal})

    def restart(self, id: str, timeout: int | None = None, signal: str | None = None) -> None:
        self.call("POST", f"/containers/{_q(id)}/restart", {"t": timeout, "signal": signal})

    def kill(self, id: str, signal: str | None = None) -> None:
        self.call("POST", f"/containers/{_q(id)}/kill", {"signal": signal})

    def pause(self, id: str) -> None:
        self.call("POST", f"/containers/{_q(id)}/pause")

    def unpause(self, id: str) -> None:
        self.call("POST", f"/containers/{_q(id)}/unpause")

    def remove_container(
        self, id: str, force: bool = False, volumes: bool = False, link: bool = False
    ) -> None:
        q = {"force": force or None, "v": volumes or None, "link": link or None}
        self.call("DELETE", f"/containers/{_q(id)}", q)

    def rename(self, id: str, name: str) -> None:
        self.call("POST", f"/containers/{_q(id)}/rename", {"name": name})

    def wait(self, id: str, condition: str | None = None) -> JSON:
        """Block until the container meets ``condition``; {"StatusCode": N, "Error": ...}."""
        return self.wait_begin(id, condition).result()

    def wait_begin(self, id: str, condition: str | None = None) -> Waiter:
        """Send the wait and return once the engine has registered it (headers received).

        ``run`` needs this order: wait is registered before start, so a container
        that exits (or is removed) at once is still seen.
        """
        return Waiter(self.open("POST", f"/containers/{_q(id)}/wait", {"condition": condition}))

    def resize(self, id: str, height: int, width: int) -> None:
        self.call("POST", f"/containers/{_q(id)}/resize", {"h": height, "w": width})

    def attach(
        self,
        id: str,
        *,
        stdin: bool = False,
        stdout: bool = True,
        stderr: bool = True,
        logs: bool = False,
        detach_keys: str | None = None,
    ) -> Hijacked:
        q = {
            "stream": True,
            "stdin": stdin or None,
            "stdout": stdout or None,
            "stderr": stderr or None,
            "logs": logs or None,
            "detachKeys": detach_keys,
        }
        return self.hijack(f"/containers/{_q(id)}/attach", q)

    def logs(
        self,
        id: str,
        *,
        stdout: bool = True,
        stderr: bool = True,
        follow: bool = False,
        timestamps: bool = False,
        tail: str | None = None,
        since: str | None = None,
        until: str | None = None,
        tty: bool | None = None,
    ) -> Iterator[tuple[int, bytes]]:
        """(stream, bytes) pairs; ``tty`` forces raw/multiplexed parsing (else Content-Type)."""
        q = {
            "stdout": stdout or None,
            "stderr": stderr or None,
            "follow": follow or None,
            "timestamps": timestamps or None,
            "tail": tail,
            "since": since,
            "until": until,
        }
        return self.stream_output(f"/containers/{_q(id)}/logs", q, tty)

    def top(self, id: str, ps_args: str | None = None) -> JSON:
        return dict(self.call("GET", f"/containers/{_q(id)}/top", {"ps_args": ps_args}))

    def stats(self, id: str, stream: bool = True) -> Iterator[JSON]:
        q = {"stream": stream, "one-shot": None if stream else True}
        return self.stream_json("GET", f"/containers/{_q(id)}/stats", q)

    def changes(self, id: str) -> list[JSON]:
        return list(self.call("GET", f"/containers/{_q(id)}/changes") or [])

    def export(self, id: str) -> Iterator[bytes]:
        return self.stream_bytes("GET", f"/containers/{_q(id)}/export")

    def update_container(self, id: str, config: JSON) -> JSON:
        return dict(self.call("POST", f"/containers/{_q(id)}/update", json_body=config) or {})

    def prune_containers(self, filters: Filters | None = None) -> JSON:
        return dict(self.call("POST", "/containers/prune", {"filters": filters}) or {})

    def stat_path(self, id: str, path: str) -> JSON:
        """HEAD .../archive: the X-Docker-Container-Path-Stat header, decoded."""
        resp = self.open("HEAD", f"/containers/{_q(id)}/archive", {"path": path})
        resp.close()
        return _path_stat(resp.getheader("X-Docker-Container-Path-Stat"))

    def get_archive(self, id: str, path: str) -> tuple[JSON, Iterator[bytes]]:
        """A tar of ``path`` in the container, with its path stat."""
        resp = self.open("GET", f"/containers/{_q(id)}/archive", {"path": path})
        stat = _path_stat(resp.getheader("X-Docker-Container-Path-Stat"))

        def chunks() -> Iterator[bytes]:
            try:
                while chunk := resp.read1(65536):
                    yield chunk
            finally:
                resp.close()

        return stat, chunks()

    def put_archive(
        self,
        id: str,
        path: str,
        data: Body,
        no_overwrite_dir_non_dir: bool = True,
        copy_uidgid: bool = False,
    ) -> None:
        q = {
            "path": path,
            "noOverwriteDirNonDir": no_overwrite_dir_non_dir or None,
            "copyUIDGID": copy_uidgid or None,
        }
        self.call(
            "PUT",
            f"/containers/{_q(id)}/archive",
            q,
            data=data,
            headers={"Content-Type": "application/x-tar"},
        )

    def commit(
        self,
        container: str,
        repo: str | None = None,
        tag: str | None = None,
        *,
        comment: str | None = None,
        author: str | None = None,
        pause: bool = True,
        changes: list[str] | None = None,
        config: JSON | None = None,
    ) -> JSON:
        q = {
            "container": container,
            "repo": repo,
            "tag": tag,
            "comment": comment,
            "author": author,
            "pause": pause,
            "changes": changes,
        }
        return dict(self.call("POST", "/commit", q, json_body=config or {}))

    # --- exec ---------------------------------------------------------------

    def exec_create(self, id: str, config: JSON) -> JSON:
        return dict(self.call("POST", f"/containers/{_q(id)}/exec", json_body=config))

    def exec_start(self, exec_id: str, config: JSON) -> Hijacked | None:
        """Start an exec: hijacked unless config["Detach"] (then None)."""
        if config.get("Detach"):
            self.call("POST", f"/exec/{exec_id}/start", json_body=config)
            return None
        return self.hijack(f"/exec/{exec_id}/start", json_body=config)

    def exec_resize(self, exec_id: str, height: int, width: int) -> None:
        self.call("POST", f"/exec/{exec_id}/resize", {"h": height, "w": width})

    def exec_inspect(self, exec_id: str) -> JSON:
        return dict(self.call("GET", f"/exec/{exec_id}/json"))

    # --- images -------------------------------------------------------------

    def images(
        self, all: bool = False, filters: Filters | None = None, digests: bool = False
    ) -> list[JSON]:
        q = {"all": all or None, "filters": filters, "digests": digests or None}
        return list(self.call("GET", "/images/json", q))

    def inspect_image(self, name: str) -> JSON:
        return dict(self.call("GET", f"/images/{_q(name)}/json"))

    def image_history(self, name: str) -> list[JSON]:
        return list(self.call("GET", f"/images/{_q(name)}/history"))

    def pull(
        self,
        image: str,
        tag: str | None = None,
        platform: str | None = None,
        auth: Mapping[str, Any] | None = None,
    ) -> Iterator[JSON]:
        """POST /images/create?fromImage=..; JSON-lines progress."""
        q = {"fromImage": image, "tag": tag, "platform": platform or None}
        return self.stream_json(
            "POST", "/images/create", q, headers={"X-Registry-Auth": encode_auth(auth)}
        )

    def push(
        self, name: str, tag: str | None = None, auth: Mapping[str, Any] | None = None
    ) -> Iterator[JSON]:
        return self.stream_json(
            "POST",
            f"/images/{_q(name)}/push",
            {"tag": tag},
            headers={"X-Registry-Auth": encode_auth(auth)},
        )

    def tag_image(self, source: str, repo: str, tag: str | None = None) -> None:
        self.call("POST", f"/images/{_q(source)}/tag", {"repo": repo, "tag": tag})

    def remove_image(self, name: str, force: bool = False, noprune: bool = False) -> list[JSON]:
        q = {"force": force or None, "noprune": noprune or None}
        return list(self.call("DELETE", f"/images/{_q(name)}", q) or [])

    def prune_images(self, filters: Filters | None = None) -> JSON:
        return dict(self.call("POST", "/images/prune", {"filters": filters}) or {})

    def save_images(self, names: list[str]) -> Iterator[bytes]:
        return self.stream_bytes("GET", "/images/get", {"names": names})

    def load_images(self, data: Body, quiet: bool = False) -> Iterator[JSON]:
        return self.stream_json(
            "POST",
            "/images/load",
            {"quiet": quiet},
            data=data,
            headers={"Content-Type": "application/x-tar"},
        )

    def import_image(
        self,
        data: Body,
        repo: str | None = None,
        tag: str | None = None,
        *,
        changes: list[str] | None = None,
        message: str | None = None,
        platform: str | None = None,
    ) -> Iterator[JSON]:
        """POST /images/create?fromSrc=- with a rootfs tarball body."""
        q = {
            "fromSrc": "-",
            "repo": repo,
            "tag": tag,
            "changes": changes,
            "message": message,
            "platform": platform,
        }
        return self.stream_json(
            "POST", "/images/create", q, data=data, headers={"Content-Type": "application/x-tar"}
        )

    def build(
        self,
        context: Body,
        params: Mapping[str, Any],
        registry_config: Mapping[str, Any] | None = None,
    ) -> Iterator[JSON]:
        """POST /build with a tar context; ``params`` are /build's query parameters."""
        q = {k: _build_param(v) for k, v in params.items()}
        headers = {"Content-Type": "application/x-tar"}
        if registry_config:
            headers["X-Registry-Config"] = encode_auth(registry_config)
        return self.stream_json("POST", "/build", q, data=context, headers=headers)

    # --- networks -----------------------------------------------------------

    def networks(self, filters: Filters | None = None) -> list[JSON]:
        return list(self.call("GET", "/networks", {"filters": filters}))

    def inspect_network(self, id: str, verbose: bool = False) -> JSON:
        return dict(self.call("GET", f"/networks/{_q(id)}", {"verbose": verbose or None}))

    def create_network(self, config: JSON) -> JSON:
        return dict(self.call("POST", "/networks/create", json_body=config))

    def remove_network(self, id: str) -> None:
        self.call("DELETE", f"/networks/{_q(id)}")

    def connect_network(self, id: str, container: str, endpoint_config: JSON | None = None) -> None:
        body = {"Container": container, "EndpointConfig": endpoint_config or {}}
        self.call("POST", f"/networks/{_q(id)}/connect", json_body=body)

    def disconnect_network(self, id: str, container: str, force: bool = False) -> None:
        body = {"Container": container, "Force": force}
        self.call("POST", f"/networks/{_q(id)}/disconnect", json_body=body)

    def prune_networks(self, filters: Filters | None = None) -> JSON:
        return dict(self.call("POST", "/networks/prune", {"filters": filters}) or {})

    # --- volumes ------------------------------------------------------------

    def volumes(self, filters: Filters | None = None) -> JSON:
        """{"Volumes": [...], "Warnings": [...]}."""
        return dict(self.call("GET", "/volumes", {"filters": filters}))

    def inspect_volume(self, name: str) -> JSON:
        return dict(self.call("GET", f"/volumes/{_q(name)}"))

    def create_volume(self, config: JSON) -> JSON:
        return dict(self.call("POST", "/volumes/create", json_body=config))

    def remove_volume(self, name: str, force: bool = False) -> None:
        self.call("DELETE", f"/volumes/{_q(name)}", {"force": force or None})

    def prune_volumes(self, filters: Filters | None = None) -> JSON:
        return dict(self.call("POST", "/volumes/prune", {"filters": filters}) or {})


def _path_stat(header: str | None) -> JSON:
    if not header:
        return {}
    try:
        stat = json.loads(base64.b64decode(header))
    except ValueError:
        return {}
    return stat if isinstance(stat, dict) else {}


def _build_param(value: Any) -> Any:
    """/build wants maps (buildargs, labels) as JSON strings, lists as repeated keys."""
    if isinstance(value, Mapping):
        return json.dumps(dict(value), separators=(",", ":"))
    return value
