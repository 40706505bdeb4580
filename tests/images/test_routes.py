"""The image endpoints through a real Unix-socket HTTP server, driven by docker-py and the CLI."""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import tarfile
import threading
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import docker
import pytest

from runtime.engine.http import UnixHTTPServer
from runtime.engine.router import Router
from runtime.engine.routes_images import register
from runtime.images.store import ImageStore
from tests.images.layers import add_image, dir_, file, tar_bytes
from tests.images.registry import Registry, docker_archive, start_registry


@pytest.fixture
def sock(store: ImageStore, tmp_path: Path) -> Iterator[str]:
    router = Router()
    register(router, SimpleNamespace(images=store, config=None))  # type: ignore[arg-type]
    path = str(tmp_path / "engine.sock")
    server = UnixHTTPServer(path, router.dispatch)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield path
    server.shutdown()
    thread.join()


@pytest.fixture
def client(sock: str) -> Iterator[Any]:
    c = docker.DockerClient(base_url=f"unix://{sock}", version="1.44")
    yield c
    c.close()


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    reg = start_registry(tmp_path_factory.mktemp("registry"))
    archive = tmp_path_factory.mktemp("archives") / "one.tar"
    docker_archive(archive, [tar_bytes([dir_("etc"), file("etc/os", b"x")])], Cmd=["sh"])
    reg.push_archive(archive, "lib/one:1")
    yield reg
    reg.stop()


def test_import_list_inspect_history_tag_rm(client: Any, busybox_tar: Path) -> None:
    out = client.api.import_image_from_data(busybox_tar.read_bytes(), repository="bb", tag="1",
                                            changes=['CMD ["sh"]', "LABEL a=b"])
    image_id = json.loads(out.strip().splitlines()[-1])["status"]
    assert image_id.startswith("sha256:")
    (img,) = client.images.list()
    assert img.id == image_id and img.tags == ["bb:1"] and img.labels == {"a": "b"}
    raw = client.api.images()
    assert isinstance(raw[0]["Created"], int) and raw[0]["Containers"] == -1
    attrs = client.images.get("bb:1").attrs
    assert attrs["Config"]["Cmd"] == ["sh"] and attrs["GraphDriver"]["Name"] == "overlay2"
    assert attrs["Created"].endswith("Z") and attrs["RootFS"]["Type"] == "layers"
    hist = client.api.history("bb:1")
    assert hist[0]["Id"] == image_id and hist[0]["Tags"] == ["bb:1"]
    assert img.tag("localhost:5000/a/b", "v1")
    assert client.images.get("localhost:5000/a/b:v1").id == image_id
    assert client.api.inspect_image("localhost:5000/a/b:v1")["Id"] == image_id
    assert client.api.images(filters={"reference": "localhost:5000/a/*"})[0]["Id"] == image_id
    assert client.api.images(filters={"label": "a=c"}) == []
    assert client.api.remove_image("localhost:5000/a/b:v1") == [
        {"Untagged": "localhost:5000/a/b:v1"}]
    with pytest.raises(docker.errors.ImageNotFound):
        client.images.get("nope")
    deleted = client.api.remove_image("bb:1")
    assert {"Deleted": image_id} in deleted
    assert client.images.list() == []


def test_untagged_and_prune(client: Any, store: ImageStore, sock: str) -> None:
    dangling = add_image(store, [tar_bytes([file("x", b"1")])])
    (summary,) = client.api.images()
    assert summary["RepoTags"] == [] and summary["RepoDigests"] == []
    old = docker.APIClient(base_url=f"unix://{sock}", version="1.41")
    assert old.images()[0]["RepoTags"] == ["<none>:<none>"]
    old.close()
    result = client.images.prune()
    assert result["ImagesDeleted"][0] == {"Deleted": dangling.id}


def test_save_load_round_trip(client: Any, store: ImageStore, tmp_path: Path) -> None:
    layers = [tar_bytes([dir_("etc"), file("etc/a", b"a")]), tar_bytes([file("etc/.wh.a")])]
    img = add_image(store, layers, "example.com/saved:1", Cmd=["true"])
    data = b"".join(client.images.get("example.com/saved:1").save(named=True))
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        names = tar.getnames()
        manifest = json.loads(tar.extractfile("manifest.json").read())  # type: ignore[union-attr]
    assert {"index.json", "oci-layout", "manifest.json"} <= set(names)
    assert manifest[0]["RepoTags"] == ["example.com/saved:1"]
    client.images.remove(img.id, force=True)
    (loaded,) = client.images.load(data)
    assert loaded.id == img.id and loaded.tags == ["example.com/saved:1"]
    archive = tmp_path / "saved.tar"
    archive.write_bytes(data)
    for transport in ("docker-archive", "oci-archive"):
        out = subprocess.run(["skopeo", "inspect", f"{transport}:{archive}"], check=True,
                             capture_output=True)
        assert len(json.loads(out.stdout)["Layers"]) == 2


def test_pull_push_through_api(client: Any, registry: Registry) -> None:
    image = client.images.pull(f"{registry.host}/lib/one", tag="1")
    assert image.tags == [f"{registry.host}/lib/one:1"]
    lines = list(client.api.pull(f"{registry.host}/lib/one", tag="1", stream=True, decode=True))
    assert lines[-1]["status"] == f"Status: Image is up to date for {registry.host}/lib/one:1"
    image.tag(f"{registry.host}/lib/two", "2")
    out = list(client.images.push(f"{registry.host}/lib/two", tag="2", stream=True, decode=True))
    assert out[-1]["aux"]["Tag"] == "2"
    assert registry.inspect("lib/two:2")["Digest"] == out[-1]["aux"]["Digest"]
    with pytest.raises(docker.errors.NotFound):
        client.images.pull(f"{registry.host}/lib/none", tag="1")


def test_search_unavailable(client: Any) -> None:
    with pytest.raises(docker.errors.APIError) as err:
        client.api.search("busybox")
    assert err.value.response.status_code == 503


@pytest.mark.skipif(shutil.which("docker") is None, reason="no docker CLI")
def test_docker_cli(sock: str, registry: Registry, tmp_path: Path) -> None:
    def docker_cli(*args: str, stdin: bytes | None = None) -> str:
        out = subprocess.run(["docker", "-H", f"unix://{sock}", *args], input=stdin,
                             capture_output=True, check=True, timeout=60)
        return out.stdout.decode()

    ref = f"{registry.host}/lib/one:1"
    assert "Downloaded newer image" in docker_cli("pull", ref)
    docker_cli("tag", ref, "cli/thing:x")
    assert "cli/thing" in docker_cli("images")
    docker_cli("save", "-o", str(tmp_path / "s.tar"), "cli/thing:x")
    docker_cli("rmi", "cli/thing:x", ref)
    assert "Loaded image: cli/thing:x" in docker_cli("load", "-i", str(tmp_path / "s.tar"))
    docker_cli("tag", "cli/thing:x", f"{registry.host}/cli/pushed:1")
    assert "digest: sha256:" in docker_cli("push", f"{registry.host}/cli/pushed:1")
    inspect = json.loads(docker_cli("image", "inspect", "cli/thing:x"))
    assert "cli/thing:x" in inspect[0]["RepoTags"]
