#!/usr/bin/env bash
# Builds Cove's guest base: a Debian bookworm root tree as a tarball, plus the kernel for direct
# kernel boot. Stage 1 of the guest image (vmhost/guestimage.py adds Cove on top, and its own
# tiny initrd: vmhost/initrd.py).
#
#   build-base.sh OUTDIR [MIRROR] [ARCH]
#
# Writes OUTDIR/base.tar, OUTDIR/vmlinuz. Needs mmdebstrap (root, or
# unprivileged user namespaces for --mode=unshare). SOURCE_DATE_EPOCH pins timestamps.
# ARCH is a Debian architecture (amd64, arm64; default: this machine's). A foreign ARCH runs
# the packages' maintainer scripts under qemu-user: the caller (vmhost/guestimage.py)
# registers binfmt_misc for the build; mmdebstrap checks it with arch-test.
set -euo pipefail
out=${1:?usage: build-base.sh OUTDIR [MIRROR] [ARCH]}
mirror=${2:-http://deb.debian.org/debian}
arch=${3:-$(dpkg --print-architecture)}
mkdir -p "$out"
out=$(cd "$out" && pwd)
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-1700000000}

packages=(
  "linux-image-cloud-$arch" zstd                 # kernel (virtio modules are =m: vmhost/initrd.py)
  openssh-server                                 # the only way in: the host relays over SSH
  python3 python3-platformdirs                   # engine + guest agent (stdlib + platformdirs)
  socat busybox-static                           # fast dial-stdio; tiny initrd + early init
  iproute2 nftables iptables kmod procps e2fsprogs util-linux libseccomp2 ca-certificates
)

mode=auto
[ "$(id -u)" -eq 0 ] && mode=root

# initramfs-tools comes with the kernel (a dependency), but its kernel hook is not installed:
# the initrd it builds is never booted (vmhost/initrd.py writes a tiny one), and building it
# costs minutes when a foreign-arch build runs it under qemu-user.

# Two steps that cost much under qemu-user, for nothing we keep: the usrmerge package's
# conversion (mmdebstrap's merged-usr hook lays the tree out merged from the start), and
# openssh-server generating host keys (placeholders make its postinst skip them; the seed
# brings the real, pinned key and the customize hook below removes them).
hooks=()
[ -d /usr/share/mmdebstrap/hooks/merged-usr ] && hooks+=(--hook-dir=/usr/share/mmdebstrap/hooks/merged-usr)

mmdebstrap --variant=apt --mode="$mode" --format=tar --architectures="$arch" "${hooks[@]}" \
  --include="$(IFS=,; echo "${packages[*]}")" \
  --essential-hook='mkdir -p "$1/etc/ssh" && for t in rsa ecdsa ed25519; do : > "$1/etc/ssh/ssh_host_${t}_key"; done' \
  --dpkgopt='path-exclude=/usr/share/man/*' \
  --dpkgopt='path-exclude=/usr/share/doc/*' \
  --dpkgopt='path-include=/usr/share/doc/*/copyright' \
  --dpkgopt='path-exclude=/usr/share/locale/*' \
  --dpkgopt='path-exclude=/usr/share/info/*' \
  --dpkgopt='path-exclude=/usr/share/lintian/*' \
  --dpkgopt='path-exclude=/etc/kernel/postinst.d/initramfs-tools' \
  --customize-hook="cp \"\$1\"/boot/vmlinuz-* '$out/vmlinuz'" \
  --customize-hook='rm -rf "$1"/boot/* "$1"/vmlinuz* "$1"/initrd.img*' \
  --customize-hook='rm -f "$1"/etc/ssh/ssh_host_*' \
  --customize-hook='rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/*.bin "$1"/var/log/*.log' \
  --customize-hook="sh '$(dirname "$0")/prune-modules.sh' \"\$1\"" \
  --customize-hook="sh '$(dirname "$0")/configure.sh' \"\$1\"" \
  bookworm "$out/base.tar" "$mirror"
