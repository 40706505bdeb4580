#!/usr/bin/env bash
# Builds Cove's guest base: a Debian bookworm root tree as a tarball, plus the kernel and initrd
# for direct kernel boot. Stage 1 of the guest image (vmhost/guestimage.py adds Cove on top).
#
#   build-base.sh OUTDIR [MIRROR]
#
# Writes OUTDIR/base.tar, OUTDIR/vmlinuz, OUTDIR/initrd.img. Needs mmdebstrap (root, or
# unprivileged user namespaces for --mode=unshare). SOURCE_DATE_EPOCH pins timestamps.
set -euo pipefail
out=${1:?usage: build-base.sh OUTDIR [MIRROR]}
mirror=${2:-http://deb.debian.org/debian}
mkdir -p "$out"
out=$(cd "$out" && pwd)
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-1700000000}

packages=(
  linux-image-cloud-amd64 initramfs-tools zstd   # kernel + a small initrd (virtio modules are =m)
  openssh-server                                 # the only way in: the host relays over SSH
  python3 python3-platformdirs                   # engine + guest agent (stdlib + platformdirs)
  socat busybox-static                           # fast dial-stdio; tiny initrd + early init
  iproute2 nftables iptables kmod procps e2fsprogs util-linux libseccomp2 ca-certificates
)

mode=auto
[ "$(id -u)" -eq 0 ] && mode=root

mmdebstrap --variant=apt --mode="$mode" --format=tar \
  --include="$(IFS=,; echo "${packages[*]}")" \
  --dpkgopt='path-exclude=/usr/share/man/*' \
  --dpkgopt='path-exclude=/usr/share/doc/*' \
  --dpkgopt='path-include=/usr/share/doc/*/copyright' \
  --dpkgopt='path-exclude=/usr/share/locale/*' \
  --dpkgopt='path-exclude=/usr/share/info/*' \
  --dpkgopt='path-exclude=/usr/share/lintian/*' \
  --essential-hook='mkdir -p "$1/etc/initramfs-tools/conf.d"' \
  --essential-hook='printf "MODULES=list\nCOMPRESS=zstd\n" > "$1/etc/initramfs-tools/conf.d/cove.conf"' \
  --essential-hook='printf "virtio_pci\nvirtio_blk\nvirtio_net\nvirtio_console\next4\n" > "$1/etc/initramfs-tools/modules"' \
  --customize-hook="cp \"\$1\"/boot/vmlinuz-* '$out/vmlinuz'; cp \"\$1\"/boot/initrd.img-* '$out/initrd.img'" \
  --customize-hook='rm -rf "$1"/boot/* "$1"/vmlinuz* "$1"/initrd.img*' \
  --customize-hook='rm -f "$1"/etc/ssh/ssh_host_*' \
  --customize-hook='rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/*.bin "$1"/var/log/*.log' \
  --customize-hook="sh '$(dirname "$0")/prune-modules.sh' \"\$1\"" \
  --customize-hook="sh '$(dirname "$0")/configure.sh' \"\$1\"" \
  bookworm "$out/base.tar" "$mirror"
