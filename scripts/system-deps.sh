#!/usr/bin/env bash
# Install the Debian packages the machine running Pulumi needs, when they are missing.
# Re-running is cheap: it only checks. Asks for sudo only when a package is missing.
#   scripts/system-deps.sh deploy STACK_FILE   what `make setup`/`make up` need for that stack:
#                                               only its provision kinds' packages (a stack of
#                                               remote hosts needs none, and no root)
#   scripts/system-deps.sh test                every kind's packages and the tests' tools
# The packages per kind are dockyard_resources/system_packages.py's (needs .venv).
set -euo pipefail
called_from=$PWD
cd "$(dirname "$0")/.."

usage() { echo "usage: $0 deploy STACK_FILE | test" >&2; exit 2; }
case "${1:-}" in
  deploy)
    [ $# -eq 2 ] || usage
    file=$2
    [[ "$file" = /* ]] || file="$called_from/$file"
    listed=$(.venv/bin/python -m dockyard_resources.system_packages "$file") ;;
  test)
    [ $# -eq 1 ] || usage
    # Besides every kind's: ssh and ssh-keygen; the real sshd the transport tests start; sudo
    # (the tests log in as a sudo user); dpkg-deb for the sysbox stand-in; shellcheck for
    # make lint and the rendered scripts; curl for scripts/pulumi-cli.sh.
    listed=$(.venv/bin/python -m dockyard_resources.system_packages --all)
    listed+="
openssh-client
openssh-server
sudo
dpkg-dev
shellcheck
curl" ;;
  *) usage ;;
esac

missing=()
while read -r pkg; do
  [ -n "$pkg" ] || continue
  status=$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)
  [ "$status" = "install ok installed" ] || missing+=("$pkg")
done <<<"$listed"
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
# Through env: sudo's env_reset would drop a DEBIAN_FRONTEND set in front of it.
"${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
echo "installed: ${missing[*]}" >&2
