"""Bench: cold pull of a 4-layer ~95 MB incompressible image from a local docker-registry.

Compares against the floor ``curl | zcat | tar -x`` of the same blobs and against a
private dockerd (Debian's docker.io, its own data root, ``--insecure-registry``)
pulling the same image, then times a push of the pulled image to a fresh
repository (every blob uploaded) by both. Peak memory is the child's VmHWM: a
forked child's ``ru_maxrss`` starts at the parent's (this script holds the
layers), which once made a 51 MB pull read as 143 MB.
Run as root: ``python -m bench.images_pull``.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import DOCKER_CLI, Dockerd  # noqa: E402
from tests.images.layers import file, tar_bytes  # noqa: E402
from tests.images.registry import Registry, docker_archive, start_registry  # noqa: E402

LAYER_MB = 24
LAYERS = 4

_CHILD = r"""
import json, sys, time
from pathlib import Path
from runtime.api.reference import parse
from runtime.engine.events import EventBus
from runtime.images.registry.pull import pull_messages
from runtime.images.registry.push import push_messages
from runtime.images.store import ImageStore
from runtime.layout import EngineLayout
data, verb, ref = sys.argv[1], sys.argv[2], sys.argv[3]
store = ImageStore(EngineLayout(Path(data), Path(data) / "run"), EventBus())
t = time.monotonic()
if verb == "pull":
    for _ in pull_messages(store, parse(ref, default_tag=True), None):
        pass
else:
    store.tag(sys.argv[4], ref)
    store.delete(sys.argv[4])
    for _ in push_messages(store, parse(ref), None):
        pass
took = time.monotonic() - t
hwm = next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM"))
print(json.dumps({"seconds": took, "max_rss_mb": hwm / 1024}))
"""


def _image(tmp: Path, reg: Registry) -> None:
    layers = [tar_bytes([file(f"layer{i}/data", os.urandom(LAYER_MB << 20))])
              for i in range(LAYERS)]
    archive = tmp / "big.tar"
    docker_archive(archive, layers, Cmd=["sh"])
    reg.push_archive(archive, "bench/big:1")


def _floor(tmp: Path, reg: Registry) -> float:
    manifest = json.loads(subprocess.run(
        ["curl", "-sf", "-H", "Accept: application/vnd.docker.distribution.manifest.v2+json",
         f"http://{reg.host}/v2/bench/big/manifests/1"], capture_output=True, check=True).stdout)
    out = tmp / "floor"
    start = time.monotonic()
    for layer in manifest["layers"]:
        d = out / layer["digest"][7:]
        d.mkdir(parents=True)
        subprocess.run(f"curl -sf http://{reg.host}/v2/bench/big/blobs/{layer['digest']}"
                       f" | zcat | tar -x -C {d}", shell=True, check=True)
    return time.monotonic() - start


def _child(data: Path, *args: str) -> dict[str, float]:
    out = subprocess.run([sys.executable, "-c", _CHILD, str(data), *args], cwd=ROOT,
                         capture_output=True, check=True, text=True)
    result: dict[str, float] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


class _InsecureDockerd(Dockerd):
    """bench.common's private dockerd, told the local registry is plain HTTP."""

    def __init__(self, base: Path, registry: str) -> None:
        super().__init__(base)
        self.registry = registry

    def _network_flags(self) -> list[str]:
        return [*super()._network_flags(), "--insecure-registry", self.registry]


def _docker(tmp: Path, reg: Registry, target: Registry) -> dict[str, float]:
    """dockerd's cold pull and full push of the same image ({} when dockerd is missing)."""
    if not shutil.which("dockerd"):
        return {}
    d = _InsecureDockerd(tmp / "dockerd", reg.host)
    d.base.mkdir()
    try:
        d.start()
        docker = [DOCKER_CLI, "-H", d.host]
        start = time.monotonic()
        subprocess.run([*docker, "pull", "-q", f"{reg.host}/bench/big:1"], check=True,
                       capture_output=True)
        pull = time.monotonic() - start
        subprocess.run([*docker, "tag", f"{reg.host}/bench/big:1",
                        f"{target.host}/bench/dcopy:1"], check=True, capture_output=True)
        start = time.monotonic()
        subprocess.run([*docker, "push", "-q", f"{target.host}/bench/dcopy:1"], check=True,
                       capture_output=True)
        return {"pull": pull, "push": time.monotonic() - start}
    finally:
        with contextlib.suppress(Exception):
            d.stop()


def main() -> None:
    tmp = Path(tempfile.mkdtemp(prefix="cove-bench-"))
    reg = start_registry(tmp / "registry")
    # Pushes go to a second, empty registry: nothing to cross-mount, every blob uploaded.
    target = start_registry(tmp / "target")
    try:
        _image(tmp, reg)
        subprocess.run(["sync"], check=True)
        floor = _floor(tmp, reg)
        pull = _child(tmp / "cove", "pull", f"{reg.host}/bench/big:1")
        push = _child(tmp / "cove", "push", f"{target.host}/bench/copy:1",
                      f"{reg.host}/bench/big:1")
        size = sum(f.stat().st_size for f in (tmp / "cove" / "content").rglob("*") if f.is_file())
        docker = _docker(tmp, reg, target)
        print(f"image: {LAYERS} layers x {LAYER_MB} MiB random data, blobs {size / 1e6:.1f} MB")
        print(f"floor  curl|zcat|tar -x : {floor:6.2f} s")
        print(f"cove   cold pull        : {pull['seconds']:6.2f} s  "
              f"(x{pull['seconds'] / floor:.2f} of floor), peak RSS {pull['max_rss_mb']:.0f} MB")
        print(f"cove   push (all blobs) : {push['seconds']:6.2f} s, "
              f"peak RSS {push['max_rss_mb']:.0f} MB")
        if docker:
            print(f"docker cold pull        : {docker['pull']:6.2f} s  "
                  f"(x{docker['pull'] / floor:.2f} of floor)")
            print(f"docker push (all blobs) : {docker['push']:6.2f} s")
            print(f"cove/docker             : pull x{pull['seconds'] / docker['pull']:.2f}, "
                  f"push x{push['seconds'] / docker['push']:.2f}")
    finally:
        reg.stop()
        target.stop()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
