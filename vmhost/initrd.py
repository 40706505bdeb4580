"""A tiny initrd: busybox + the virtio modules, then switch_root to /usr/sbin/cove-init.

Debian's initramfs-tools initrd starts udev, which costs about 6 s under TCG. The cloud
kernel has ext4 built in but virtio_pci/virtio_blk as modules, so all the initrd must do is
load those (dependency order from modules.dep), find the disk with serial ``cove-root``,
mount it and switch_root. Written as a newc cpio, gzip-compressed, from the image tree.
"""

from __future__ import annotations

import gzip
import io
from pathlib import Path

from runtime.api.errors import Internal

MODULES = ("virtio_pci", "virtio_blk", "virtio_net", "virtio_console")
INIT = """#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin
mkdir -p /proc /sys /dev /newroot
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
for m in $(cat /modules.order); do insmod "$m" 2>/dev/null; done
root=""
i=0
while [ -z "$root" ] && [ $i -lt 400 ]; do
  for s in /sys/block/vd*/serial; do
    [ -e "$s" ] && [ "$(cat "$s")" = cove-root ] && root=/dev/$(basename "$(dirname "$s")")
  done
  [ -z "$root" ] && sleep 0.05
  i=$((i+1))
done
[ -n "$root" ] || root=/dev/vda
mount -t ext4 -o rw,noatime "$root" /newroot || { echo "cove initrd: cannot mount $root"; sh; }
umount /proc /sys
mount --move /dev /newroot/dev
exec switch_root /newroot /usr/sbin/cove-init
"""


def _module_closure(moddir: Path, names: tuple[str, ...]) -> list[str]:
    """Relative .ko paths for *names* and their dependencies, dependencies first."""
    deps: dict[str, list[str]] = {}
    for line in (moddir / "modules.dep").read_text().splitlines():
        path, _, rest = line.partition(":")
        deps[path] = rest.split()
    by_name = {Path(p).name.split(".ko")[0].replace("-", "_"): p for p in deps}
    order: list[str] = []

    def visit(path: str) -> None:
        if path in order:
            return
        for dep in deps.get(path, []):
            visit(dep)
        order.append(path)

    for name in names:
        if name in by_name:
            visit(by_name[name])
    return order


class _Cpio:
    def __init__(self) -> None:
        self.buf = io.BytesIO()
        self.ino = 1

    def add(self, name: str, data: bytes = b"", mode: int = 0o100644) -> None:
        fields = [self.ino, mode, 0, 0, 1, 0, len(data), 0, 0, 0, 0, len(name) + 1, 0]
        self.ino += 1
        self.buf.write(b"070701" + b"".join(b"%08X" % f for f in fields))
        self.buf.write(name.encode() + b"\0")
        self.buf.write(b"\0" * (-(110 + len(name) + 1) % 4))
        self.buf.write(data)
        self.buf.write(b"\0" * (-len(data) % 4))

    def finish(self) -> bytes:
        self.add("TRAILER!!!", mode=0)
        return self.buf.getvalue()


def build_initrd(tree: Path, out: Path) -> None:
    kernels = sorted((tree / "usr/lib/modules").iterdir())
    busybox = tree / "usr/bin/busybox"
    if not kernels or not busybox.exists():
        raise Internal("initrd: the tree has no kernel modules or no busybox-static")
    moddir = kernels[-1]
    cpio = _Cpio()
    for d in ("bin", "dev", "proc", "sys", "newroot", "lib", "lib/modules"):
        cpio.add(d, mode=0o040755)
    cpio.add("bin/busybox", busybox.read_bytes(), mode=0o100755)
    cpio.add("init", INIT.encode(), mode=0o100755)
    order = []
    for rel in _module_closure(moddir, MODULES):
        name = f"lib/modules/{Path(rel).name}"
        cpio.add(name, (moddir / rel).read_bytes())
        order.append("/" + name)
    cpio.add("modules.order", ("\n".join(order) + "\n").encode())
    out.write_bytes(gzip.compress(cpio.finish(), compresslevel=9, mtime=0))
