"""Debian's docker-registry started for a test, plus image archives skopeo can push into it."""

from __future__ import annotations

import io
import json
import shutil
import socket
import subprocess
import tarfile
import time
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from runtime.images import digest as dg
from tests.images.layers import config_for


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Registry:
    host: str  # 127.0.0.1:PORT
    proc: subprocess.Popen[bytes]
    root: Path
    user: str = ""
    password: str = ""

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        shutil.rmtree(self.root, ignore_errors=True)

    def push_archive(self, archive: Path, name: str) -> None:
        creds = ["--dest-creds", f"{self.user}:{self.password}"] if self.user else []
        subprocess.run(["skopeo", "copy", "-q", "--dest-tls-verify=false", *creds,
                        f"docker-archive:{archive}", f"docker://{self.host}/{name}"],
                       check=True, capture_output=True)

    def inspect(self, name: str) -> dict[str, object]:
        creds = ["--creds", f"{self.user}:{self.password}"] if self.user else []
        out = subprocess.run(["skopeo", "inspect", "--tls-verify=false", *creds,
                              f"docker://{self.host}/{name}"], check=True, capture_output=True)
        data: dict[str, object] = json.loads(out.stdout)
        return data


def start_registry(tmp: Path, auth: str = "", tls: tuple[Path, Path] | None = None) -> Registry:
    """docker-registry on 127.0.0.1:<free port>; *auth* is a YAML ``auth:`` block or "";
    *tls* (certificate, key) serves HTTPS instead of HTTP."""
    port = free_port()
    root = tmp
    (root / "data").mkdir(parents=True, exist_ok=True)
    config = root / "config.yml"
    config.write_text(
        "version: 0.1\n"
        "log:\n  level: error\n  accesslog:\n    disabled: true\n"
        f"storage:\n  filesystem:\n    rootdirectory: {root / 'data'}\n"
        "  delete:\n    enabled: true\n"
        f"http:\n  addr: 127.0.0.1:{port}\n"
        + (f"  tls:\n    certificate: {tls[0]}\n    key: {tls[1]}\n" if tls else "") + auth
    )
    proc = subprocess.Popen(["docker-registry", "serve", str(config)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    host = f"127.0.0.1:{port}"
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(f"http://{host}/v2/", timeout=1)
            break
        except urllib.error.HTTPError:
            break  # 401: up, with auth
        except OSError:
            if proc.poll() is not None:
                raise RuntimeError("docker-registry exited") from None
            time.sleep(0.05)
    return Registry(host, proc, root)


def start_auth_registry(tmp: Path, user: str, password: str,
                        root: Path | None = None) -> Registry:
    """A registry that wants *user* / *password* (an htpasswd file in *tmp*); the registry
    keeps its data in *root*, *tmp* by default."""
    htpasswd = tmp / "htpasswd"
    subprocess.run(["htpasswd", "-Bbc", str(htpasswd), user, password], check=True,
                   capture_output=True)
    reg = start_registry(root or tmp,
                         f"auth:\n  htpasswd:\n    realm: test\n    path: {htpasswd}\n")
    reg.user, reg.password = user, password
    return reg


def docker_archive(path: Path, layers: Sequence[bytes], tag: str = "x:latest",
                   **section: object) -> str:
    """A docker-archive with uncompressed *layers*; returns the image ID."""
    diff_ids = [dg.sha256(layer) for layer in layers]
    config = config_for(diff_ids, **section)
    image_id = dg.sha256(config)
    manifest = [{"Config": f"{image_id[7:]}.json", "RepoTags": [tag],
                 "Layers": [f"{d[7:]}/layer.tar" for d in diff_ids]}]
    with tarfile.open(path, "w") as tar:
        _add(tar, f"{image_id[7:]}.json", config)
        for d, layer in zip(diff_ids, layers, strict=True):
            _add(tar, f"{d[7:]}/layer.tar", layer)
        _add(tar, "manifest.json", json.dumps(manifest).encode())
    return image_id


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))
