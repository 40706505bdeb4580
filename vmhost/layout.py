"""Every host-side file and directory name of the VM path, in one place (Lima's filenames.go).

Instance directory (``<data>/vms/<name>/``)::

    vm.json              the frozen VMSpec the instance was created with
    id_ed25519[.pub]     the client key the host logs in with (generated per VM)
    host_ed25519[.pub]   the guest's SSH host key (generated here, pinned, sent via the seed)
    known_hosts          the pinned host key in OpenSSH format (for `ssh` by hand)
    seed.tar             the seed disk (guestagent.seed), rewritten on every start
    root.qcow2           throwaway overlay over the cached root image, recreated on every start
    data.raw             engine data (/var/lib/cove), sparse; survives re-creation and upgrades
    serial.log           the guest console
    supervisor.pid       pid of `python -m vmhost.supervisor`
    supervisor.log       its log (JSON lines)
    events.jsonl         VM events (starting, ssh-ready, ready, port-forward, stopped, error)
    ssh.port             the 127.0.0.1 port forwarded to the guest's sshd
    docker.sock          the relay: Docker API of the guest engine (or in the short runtime dir)
    relay.json           a TCP relay's {"host": "tcp://127.0.0.1:PORT", "token": ...}, 0600
                         (Windows, or COVE_VM_RELAY=tcp: no Unix sockets there)

Guest image cache (``/var/cache/cove/guest`` as root, else the user cache dir)::

    base-<key>/{base.tar,vmlinuz}                 stage 1 (mmdebstrap), keyed by recipe + arch
    image-<key>/{root.raw,vmlinuz,initrd.img,manifest.json}   stage 2 (+ cove wheel)
    image-release-<version>-<arch>/{same files}   a downloaded release (vmhost.release.ensure)
    .image-release-<version>-<arch>.lock          one download of a release at a time

Release downloads, under the cache dir itself (dropped once a release is unpacked)::

    downloads/by-url-sha256/<sha>/{url,data,sha256,data.partial}   data.partial: resumable

Which image ``cove vm start`` boots (vmhost.guestimage.resolve): ``COVE_GUEST_IMAGE`` (a dir
as above), else a local build where the host can, else the release for this cove version;
``COVE_GUEST_SOURCE=auto|build|release`` forces one, ``COVE_RELEASE_URL`` moves the release.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

APP = "cove"
VMS_DIR = "vms"
VM_JSON = "vm.json"
CLIENT_KEY = "id_ed25519"
HOST_KEY = "host_ed25519"
KNOWN_HOSTS = "known_hosts"
SEED = "seed.tar"
ROOT_OVERLAY = "root.qcow2"
DATA_DISK = "data.raw"
SERIAL_LOG = "serial.log"
SUPERVISOR_PID = "supervisor.pid"
SUPERVISOR_LOG = "supervisor.log"
EVENTS = "events.jsonl"
SSH_PORT = "ssh.port"
RELAY_SOCKET = "docker.sock"
RELAY_JSON = "relay.json"
STATE_JSON = "state.json"

IMAGE_ROOT = "root.raw"
IMAGE_KERNEL = "vmlinuz"
IMAGE_INITRD = "initrd.img"
IMAGE_MANIFEST = "manifest.json"
BASE_TAR = "base.tar"
DOWNLOADS = "downloads/by-url-sha256"

SYSTEM_CACHE = Path("/var/cache/cove")
SOCKET_PATH_MAX = 100  # macOS sun_path is 104 bytes including the NUL


def data_home() -> Path:
    """Where instance directories live; COVE_VM_HOME overrides (tests, CI)."""
    if env := os.environ.get("COVE_VM_HOME"):
        return Path(env)
    import platformdirs

    return Path(platformdirs.user_data_path(APP))


def is_root() -> bool:
    """Root on a Unix host (system-wide libvirt and paths); never on Windows."""
    if sys.platform == "win32":
        return False
    return os.geteuid() == 0


def cache_home() -> Path:
    if env := os.environ.get("COVE_CACHE"):
        return Path(env)
    if is_root():
        return SYSTEM_CACHE
    import platformdirs

    return Path(platformdirs.user_cache_path(APP))


@dataclass(frozen=True, slots=True)
class InstanceLayout:
    dir: Path

    @classmethod
    def named(cls, name: str) -> InstanceLayout:
        return cls(data_home() / VMS_DIR / name)

    @property
    def name(self) -> str:
        return self.dir.name

    @property
    def vm_json(self) -> Path:
        return self.dir / VM_JSON

    @property
    def client_key(self) -> Path:
        return self.dir / CLIENT_KEY

    @property
    def host_key(self) -> Path:
        return self.dir / HOST_KEY

    @property
    def known_hosts(self) -> Path:
        return self.dir / KNOWN_HOSTS

    @property
    def seed(self) -> Path:
        return self.dir / SEED

    @property
    def root_overlay(self) -> Path:
        return self.dir / ROOT_OVERLAY

    @property
    def data_disk(self) -> Path:
        return self.dir / DATA_DISK

    @property
    def serial_log(self) -> Path:
        return self.dir / SERIAL_LOG

    @property
    def supervisor_pid(self) -> Path:
        return self.dir / SUPERVISOR_PID

    @property
    def supervisor_log(self) -> Path:
        return self.dir / SUPERVISOR_LOG

    @property
    def events(self) -> Path:
        return self.dir / EVENTS

    @property
    def ssh_port(self) -> Path:
        return self.dir / SSH_PORT

    @property
    def state_json(self) -> Path:
        return self.dir / STATE_JSON

    @property
    def relay_json(self) -> Path:
        return self.dir / RELAY_JSON

    @property
    def relay_socket(self) -> Path:
        """docker.sock in the instance dir, or a short fallback when the path is too long."""
        path = self.dir / RELAY_SOCKET
        if len(str(path)) <= SOCKET_PATH_MAX:
            return path
        import hashlib
        import tempfile

        digest = hashlib.sha256(str(self.dir).encode()).hexdigest()[:12]
        return Path(tempfile.gettempdir()) / f"cove-{digest}.sock"
