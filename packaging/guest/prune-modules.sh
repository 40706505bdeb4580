#!/bin/sh
# Drops kernel modules a Cove guest never loads (hardware drivers, sound, GPUs, wireless):
# about 90 MiB of the cloud kernel's /usr/lib/modules. Keeps fs, net, virtio, crypto, lib.
set -eu
root=$1
for kdir in "$root"/usr/lib/modules/*/kernel; do
  rm -rf "$kdir"/sound "$kdir"/drivers/gpu "$kdir"/drivers/media "$kdir"/drivers/infiniband \
         "$kdir"/drivers/net/ethernet "$kdir"/drivers/net/wireless "$kdir"/drivers/scsi \
         "$kdir"/drivers/hid "$kdir"/drivers/input "$kdir"/drivers/usb "$kdir"/drivers/hwmon \
         "$kdir"/drivers/mtd "$kdir"/drivers/nvme "$kdir"/drivers/target "$kdir"/drivers/md \
         "$kdir"/drivers/edac "$kdir"/drivers/iio "$kdir"/drivers/isdn "$kdir"/fs/nls \
         "$kdir"/fs/btrfs "$kdir"/fs/xfs "$kdir"/fs/ocfs2 "$kdir"/fs/gfs2 "$kdir"/fs/nfs \
         "$kdir"/fs/nfsd "$kdir"/fs/ceph "$kdir"/fs/smb "$kdir"/fs/cifs "$kdir"/net/wireless \
         "$kdir"/net/mac80211 "$kdir"/net/bluetooth "$kdir"/net/sunrpc "$kdir"/net/ceph
  ver=$(basename "$(dirname "$kdir")")
  chroot "$root" depmod -a "$ver" 2>/dev/null || true
done
