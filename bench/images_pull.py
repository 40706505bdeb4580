"""Bench: cold pull of a 4-layer ~95 MB incompressible image from a local docker-registry.

Compares against the floor ``curl | zcat | tar -x`` of the same blobs, then times a
push of the pulled image to a fresh repository (every blob uploaded), and reports
the peak RSS of the process doing each. Run as root: ``python -m bench.images_pull``.
"""

from __future__ import annotations

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

from tests.images.layers import file, tar_bytes  # noqa: E402
from tests.images.registry import Registry, docker_archive, start_registry  # noqa: E402

LAYER_MB = 24
LAYERS = 4

_CHILD = r"""
import json, resource, sys, time
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
print(json.dumps({"seconds": time.monotonic() - t,
                  "max_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
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


def _others(tmp: Path, reg: Registry, floor: float) -> list[str]:
    """docker / podman on the same image when they can run here (podman with a private root)."""
    out = []
    ref = f"{reg.host}/bench/big:1"
    commands = {
        "docker": ["docker", "pull", "-q", ref],
        "podman": ["podman", "--root", str(tmp / "podman"), "--runroot", str(tmp / "podman-run"),
                   "pull", "-q", "--tls-verify=false", ref],
    }
    for tool, cmd in commands.items():
        if not shutil.which(tool) or subprocess.run([tool, "info"], capture_output=True
                                                    ).returncode != 0:
            continue
        start = time.monotonic()
        if subprocess.run(cmd, capture_output=True).returncode == 0:
            took = time.monotonic() - start
            out.append(f"{tool:6} cold pull        : {took:6.2f} s  (x{took / floor:.2f} of floor)")
    return out


def main() -> None:
    tmp = Path(tempfile.mkdtemp(prefix="cove-bench-"))
    reg = start_registry(tmp / "registry")
    try:
        _image(tmp, reg)
        subprocess.run(["sync"], check=True)
        floor = _floor(tmp, reg)
        pull = _child(tmp / "cove", "pull", f"{reg.host}/bench/big:1")
        push = _child(tmp / "cove", "push", f"{reg.host}/bench/copy:1", f"{reg.host}/bench/big:1")
        size = sum(f.stat().st_size for f in (tmp / "cove" / "content").rglob("*") if f.is_file())
        print(f"image: {LAYERS} layers x {LAYER_MB} MiB random data, blobs {size / 1e6:.1f} MB")
        print(f"floor  curl|zcat|tar -x : {floor:6.2f} s")
        print(f"cove   cold pull        : {pull['seconds']:6.2f} s  "
              f"(x{pull['seconds'] / floor:.2f} of floor), peak RSS {pull['max_rss_mb']:.0f} MB")
        print(f"cove   push (all blobs) : {push['seconds']:6.2f} s, "
              f"peak RSS {push['max_rss_mb']:.0f} MB")
        for line in _others(tmp, reg, floor):
            print(line)
    finally:
        reg.stop()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
