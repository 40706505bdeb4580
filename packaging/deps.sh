#!/usr/bin/env bash
# Installs what Cove needs on a Debian 12 host and creates .venv/ with Cove in it.
# Idempotent: a second run only checks. Usage: packaging/deps.sh [EXTRAS]  (e.g. "test")
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-}"

apt_packages=(python3 python3-venv python3-pip busybox-static iproute2 nftables iptables
              libseccomp2 procps util-linux kmod)
pip_extras="$extras"
if [ "$extras" = "test" ]; then
  apt_packages+=(docker-registry skopeo apache2-utils curl zstd gcc libc6-dev
                 golang-docker-credential-helpers pass gnupg
                 libgl1 libegl1 libxkbcommon0 libfontconfig1 libdbus-1-3
                 docker.io)
  # Desktop on a real X display (tests/desktop, bench/desktop_screens.py): Xvfb, an XEmbed
  # tray host, pointer clicks, and the xcb libraries Qt's xcb platform plugin loads.
  apt_packages+=(xvfb trayer xdotool libxcb-cursor0 libxcb-icccm4 libxcb-image0
                 libxcb-keysyms1 libxcb-randr0 libxcb-render-util0 libxcb-shape0 libxcb-xkb1
                 libxkbcommon-x11-0)
  # VM path: guest image build and tests marked "vm" (packaging/guest/README.md)
  apt_packages+=(qemu-system-x86 qemu-utils libvirt-daemon-system libvirt-clients libvirt-dev
                 pkg-config python3-dev mmdebstrap e2fsprogs openssh-client)
  # arm64 guest on an amd64 host (tests/vmhost/test_vm_arm64.py): qemu-system-aarch64 under
  # TCG; the cross-built image runs maintainer scripts under qemu-user (binfmt_misc,
  # registered by the build itself) and mmdebstrap checks that with arch-test. xmllint lets
  # virt-xml-validate check the domain XML against libvirt's schema (test_backends.py).
  apt_packages+=(qemu-system-arm qemu-user-static arch-test libxml2-utils)
  pip_extras="test,desktop,vm"
  # Client tests drive the real docker CLI; Debian ships it in docker.io.
  command -v docker >/dev/null 2>&1 || apt_packages+=(docker.io)
fi
missing=()
for p in "${apt_packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "cove: installing Debian packages: ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
stamp=".venv/.cove-installed-${extras:-base}"
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  .venv/bin/pip install -q --upgrade pip >/dev/null
  # compat mode: a plain .pth path entry, no import hook on every `cove` start
  if [ -n "$pip_extras" ]; then
    .venv/bin/pip install -q -e ".[$pip_extras]" --config-settings editable_mode=compat
  else
    .venv/bin/pip install -q -e . --config-settings editable_mode=compat
  fi
  touch "$stamp"
fi
# Bytecode ahead of time: `cove` starts often, and PYTHONDONTWRITEBYTECODE may be set.
.venv/bin/python -m compileall -q -j 0 runtime vmhost guestagent desktop >/dev/null
