#!/bin/sh
# Static guest configuration (no per-VM secrets: keys arrive on the seed disk at boot).
set -eu
root=$1
mkdir -p "$root/etc/ssh/sshd_config.d" "$root/etc/cove" "$root/var/lib/cove"
cat > "$root/etc/ssh/sshd_config.d/cove.conf" <<'C'
# Cove guest: key-only root login; keys come from the seed disk (guestagent.init copies them).
HostKey /run/cove/ssh/ssh_host_ed25519_key
AuthorizedKeysFile /run/cove/ssh/authorized_keys
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
UseDNS no
PrintMotd no
MaxSessions 512
MaxStartups 64:30:256
ClientAliveInterval 10
ClientAliveCountMax 3
C
echo cove > "$root/etc/hostname"
printf '127.0.0.1 localhost\n127.0.1.1 cove\n::1 localhost\n' > "$root/etc/hosts"
printf 'nameserver 10.0.2.3\n' > "$root/etc/resolv.conf"
printf '/dev/vda / ext4 rw,noatime 0 1\n' > "$root/etc/fstab"
