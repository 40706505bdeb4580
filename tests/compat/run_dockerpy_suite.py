"""Runs docker-py 7.1.0's own integration suite (the offline subset) against a fresh Cove engine.

The suite is someone else's code: it is never copied into this repository. Point
``COVE_DOCKERPY_CHECKOUT`` at a checkout of docker/docker-py tag 7.1.0 (default
``/tmp/docker-py-7.1.0``), e.g.::

    git --git-dir=<docker-py.git> archive 7.1.0 | tar x -C /tmp/docker-py-7.1.0

``COVE_DOCKERPY_PYTHON`` picks the interpreter that runs it (it needs docker==7.1.0,
pytest, pytest-timeout and paramiko; default ``/tmp/dpyvenv/bin/python`` if present,
else this one). Usage (root)::

    .venv/bin/python -m tests.compat.run_dockerpy_suite [extra pytest args]

The subset and deselections are compat-notes §d.3: swarm, plugins, credential
helpers, contexts and everything that pulls from Docker Hub or fetches URLs is
left out; ``ConnectionTimeoutTest`` is *always* deselected (it dials a
non-loopback address).
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
import tarfile
import tempfile
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

from tests.harness import EngineProcess

ROOT = Path(__file__).resolve().parents[2]
CHECKOUT = Path(os.environ.get("COVE_DOCKERPY_CHECKOUT", "/tmp/docker-py-7.1.0"))
API_VERSION = "1.44"
# The images the suite expects, all served by one busybox rootfs (compat-notes §d.2).
IMAGES = (("alpine", "3.10"), ("alpine", "latest"), ("busybox", "latest"),
          ("hello-world", "latest"))

MODULES = (
    "api_client_test.py", "client_test.py", "errors_test.py", "api_volume_test.py",
    "models_volumes_test.py", "api_container_test.py", "api_exec_test.py",
    "api_healthcheck_test.py", "models_containers_test.py", "models_resources_test.py",
    "regression_test.py", "api_network_test.py", "models_networks_test.py",
    "api_image_test.py", "models_images_test.py", "api_build_test.py",
)
DESELECT = (
    # Dials 192.168.10.2: never allowed here.
    "api_client_test.py::ConnectionTimeoutTest",
    # Fetch external URLs or pull from Docker Hub.
    "api_build_test.py::BuildTest::test_build_streaming",
    "api_build_test.py::BuildTest::test_build_from_stringio",
    "api_image_test.py::PullImageTest",
    "api_image_test.py::ImportImageTest::test_get_load_image",
    "api_image_test.py::ImportImageTest::test_import_from_url",
    "api_image_test.py::PruneImagesTest::test_prune_images",
    "api_image_test.py::InspectDistributionTest",
    "models_images_test.py::ImageCollectionTest::test_list",
    "models_images_test.py::ImageCollectionTest::test_list_with_repository",
    "models_images_test.py::ImageCollectionTest::test_pull",
    "models_images_test.py::ImageCollectionTest::test_pull_with_tag",
    "models_images_test.py::ImageCollectionTest::test_pull_with_sha",
    "models_images_test.py::ImageCollectionTest::test_pull_multiple",
    "models_images_test.py::ImageTest::test_tag_and_remove",
    # Swarm-only.
    "api_network_test.py::TestNetworks::test_create_network_attachable",
    "api_network_test.py::TestNetworks::test_create_network_ingress",
    "api_network_test.py::TestNetworks::test_create_inspect_network_with_scope",
)


@dataclass
class SuiteResult:
    passed: int = 0
    skipped: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)
    returncode: int = 0

    @property
    def total(self) -> int:
        return self.passed + self.skipped + len(self.failed)

    def summary(self) -> str:
        lines = [f"docker-py 7.1.0 offline subset: {self.passed} passed, "
                 f"{len(self.failed)} failed, {self.skipped} skipped of {self.total}"]
        lines += [f"  FAIL {name}: {why}" for name, why in self.failed]
        return "\n".join(lines)


def checkout_present(path: Path = CHECKOUT) -> bool:
    return (path / "tests" / "integration" / "base.py").is_file()


def suite_python() -> str:
    configured = os.environ.get("COVE_DOCKERPY_PYTHON")
    if configured:
        return configured
    default = Path("/tmp/dpyvenv/bin/python")
    return str(default) if default.exists() else sys.executable


def busybox_tar(into: Path) -> Path:
    out = into / "busybox-rootfs.tar"
    with open(out, "wb") as f:
        subprocess.run(["bash", str(ROOT / "packaging" / "busybox-rootfs.sh")], stdout=f,
                       check=True)
    return out


# What alpine's base image has and busybox's does not, that the suite relies on
# (``exec_create(user='postgres')``, ``workdir='/var/opt'``).
ALPINE_USERS = "postgres:x:70:70::/var/lib/postgresql:/bin/sh\n"
ALPINE_GROUPS = "postgres:x:70:\n"
ALPINE_DIRS = ("opt", "mnt", "srv", "media", "run", "var/opt", "var/lib", "var/log",
               "var/cache", "var/tmp", "var/lib/postgresql")


def alpine_like(busybox: Path, into: Path) -> Path:
    """The busybox rootfs with alpine's extra users and directories."""
    out = into / "alpine-like.tar"
    with tarfile.open(busybox) as src, tarfile.open(out, "w") as dst:
        names = set()
        for member in src.getmembers():
            names.add(member.name.strip("./"))
            data = src.extractfile(member) if member.isreg() else None
            extra = {"etc/passwd": ALPINE_USERS, "etc/group": ALPINE_GROUPS}.get(
                member.name.strip("./"))
            if data is not None and extra:
                content = data.read() + extra.encode()
                member.size = len(content)
                dst.addfile(member, io.BytesIO(content))
            else:
                dst.addfile(member, data)
        for d in ALPINE_DIRS:
            if d not in names:
                info = tarfile.TarInfo(d)
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                dst.addfile(info)
    return out


def preload(engine: EngineProcess, tar: Path) -> None:
    alpine = alpine_like(tar, tar.parent)
    for repo, tag in IMAGES:
        engine.import_image(alpine if repo == "alpine" else tar, repo, tag)


def pytest_argv(checkout: Path, junit: Path, extra: list[str]) -> list[str]:
    integ = "tests/integration/"
    argv = [suite_python(), "-m", "pytest", "-p", "no:cacheprovider", "--timeout", "120",
            "-q", "-rfE", f"--junitxml={junit}", *(integ + m for m in MODULES)]
    for node in DESELECT:
        argv += ["--deselect", integ + node]
    return argv + extra


def parse_junit(junit: Path) -> SuiteResult:
    result = SuiteResult()
    for case in ET.parse(junit).getroot().iter("testcase"):
        name = f"{case.get('classname', '')}::{case.get('name', '')}"
        problem = case.find("failure")
        if problem is None:
            problem = case.find("error")
        if problem is not None:
            message = (problem.get("message") or problem.text or "").strip().splitlines()
            result.failed.append((name, message[0][:200] if message else "?"))
        elif case.find("skipped") is not None:
            result.skipped += 1
        else:
            result.passed += 1
    return result


def run(checkout: Path = CHECKOUT, extra: list[str] | None = None,
        workdir: Path | None = None) -> SuiteResult:
    """Start an engine, preload the images, run the suite, stop the engine."""
    base = workdir or Path(tempfile.mkdtemp(prefix="cove-dockerpy-"))
    engine = EngineProcess(base / "engine")
    try:
        engine.start()
        preload(engine, busybox_tar(base))
        junit = base / "junit.xml"
        env = {**os.environ, "DOCKER_HOST": engine.url, "DOCKER_TEST_API_VERSION": API_VERSION,
               "DOCKER_CONFIG": str(base / "docker-config")}
        env.pop("DOCKER_TLS_VERIFY", None)
        proc = subprocess.run(pytest_argv(checkout, junit, extra or []), cwd=checkout, env=env,
                              check=False)
        result = parse_junit(junit) if junit.exists() else SuiteResult()
        result.returncode = proc.returncode
        return result
    finally:
        engine.cleanup()


def main(argv: list[str]) -> int:
    if not checkout_present():
        print(f"no docker-py checkout at {CHECKOUT} (set COVE_DOCKERPY_CHECKOUT)",
              file=sys.stderr)
        return 2
    result = run(extra=argv)
    print(result.summary())
    return 0 if not result.failed else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
