#!/usr/bin/env bash
# Install the Debian packages Dockyard and its tests need on the machine
# running Pulumi, when they are missing. Re-running is cheap: it only checks.
set -euo pipefail

# deploy: what `make up` needs; test: that plus what the tests and linters need.
what=${1:-deploy}
packages=(
  qemu-system-x86   # the local VM (provision kind qemu)
  qemu-utils        # qemu-img overlays
  ipxe-qemu         # virtio-net option ROM qemu loads at start
  debootstrap       # builds the Debian VM image
  e2fsprogs         # mkfs.ext4 -d: image without loop mounts
  openssh-client    # ssh-keygen for host and client keys
  curl
)
case "$what" in
  deploy) ;;
  test)
    packages+=(
      openssh-server  # the real sshd the transport tests start
      sudo            # the transport tests log in as a sudo user
      dpkg-dev        # dpkg-deb to build the sysbox stand-in package
      shellcheck      # make lint and the tests check every rendered host script
    ) ;;
  *) echo "usage: $0 deploy|test" >&2; exit 2 ;;
esac

missing=()
for pkg in "${packages[@]}"; do
  status=$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)
  [ "$status" = "install ok installed" ] || missing+=("$pkg")
done
[ ${#missing[@]} -eq 0 ] && exit 0

SUDO=()
if [ "$(id -u)" -ne 0 ]; then
  if sudo -n true 2>/dev/null; then
    SUDO=(sudo -n)
  else
    echo "Dockyard needs these Debian packages: ${missing[*]}" >&2
    echo "Install them with: sudo apt-get install -y ${missing[*]}" >&2
    exit 1
  fi
fi
echo "installing Debian packages: ${missing[*]}" >&2
"${SUDO[@]}" apt-get update -q >/dev/null
DEBIAN_FRONTEND=noninteractive "${SUDO[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
echo "installed: ${missing[*]}" >&2
