#!/usr/bin/env bash
# Writes a tarball of a minimal busybox root filesystem (from Debian's busybox-static) to stdout.
# BUSYBOX=PATH takes another busybox-static binary, e.g. an arm64 one from a guest image
# (tests/vmhost/test_vm_arm64.py); when this host cannot run it, the applet links are those of
# the host's /bin/busybox (the same Debian package, so the same applets).
set -euo pipefail
bb=${BUSYBOX:-/bin/busybox}
[ -f "$bb" ] || { echo "busybox-rootfs: $bb missing (apt-get install busybox-static)" >&2; exit 1; }
applets=$("$bb" --list-full 2>/dev/null) || applets=$(/bin/busybox --list-full)
root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
chmod 755 "$root"
mkdir -p "$root"/{bin,etc,tmp,root,home,var/spool/mail,var/www,proc,sys,dev,usr/bin,usr/sbin,sbin}
chmod 1777 "$root/tmp"
cp "$bb" "$root/bin/busybox"
chmod 755 "$root/bin/busybox"
for applet in $applets; do
  [ -e "$root/$applet" ] || ln -s /bin/busybox "$root/$applet"
done
cat > "$root/etc/passwd" <<'P'
root:x:0:0:root:/root:/bin/sh
daemon:x:1:1:daemon:/usr/sbin:/bin/false
bin:x:2:2:bin:/bin:/bin/false
sys:x:3:3:sys:/dev:/bin/false
www-data:x:33:33:www-data:/var/www:/bin/false
operator:x:37:37:Operator:/var:/bin/false
nobody:x:65534:65534:nobody:/home:/bin/false
P
cat > "$root/etc/group" <<'G'
root:x:0:
daemon:x:1:
bin:x:2:
sys:x:3:
adm:x:4:
tty:x:5:
disk:x:6:
wheel:x:10:root
mail:x:12:
www-data:x:33:
operator:x:37:
users:x:100:
nogroup:x:65534:
G
tar -C "$root" --sort=name --mtime=@0 --numeric-owner --owner=0 --group=0 -cf - .
