# What `python -m dockyard_resources status` reads from one host, in one round trip.
# Arguments: PREFIX ROOT pairs, one per instance of the stack on this host. Prints one JSON
# object per line: first the host, then each instance. Read-only; values never come from the
# shell's input, only from arguments. jq is one of the SysboxHost's prerequisites.
# shellcheck shell=bash
set -uo pipefail

sysbox_version() {
  local runc
  for runc in /usr/local/lib/dockyard/sysbox-*/sysbox-runc; do
    [ -x "$runc" ] || continue
    "$runc" --version 2>/dev/null | sed -n 's/^[[:space:]]*version:[[:space:]]*//p' | head -n 1
    return 0
  done
}

jq -cn \
  --arg sysbox "$(systemctl is-active dockyard-sysbox.service 2>/dev/null || true)" \
  --arg version "$(sysbox_version)" \
  --arg kernel "$(uname -r)" \
  '{kind: "host", sysboxService: $sysbox, sysboxVersion: $version, kernel: $kernel}'

while [ "$#" -ge 2 ]; do
  prefix=$1 root=$2
  shift 2
  unit="${prefix}docker.service"
  docker="$root/bin/docker"
  active=$(systemctl is-active "$unit" 2>/dev/null || true)
  enabled=$(systemctl is-enabled "$unit" 2>/dev/null || true)
  socket=""
  if [ -S "$root/run/docker.sock" ]; then socket=$(stat -c '%U:%G:%a' "$root/run/docker.sock"); fi
  version="" running="" total=""
  if [ "$active" = active ] && [ -x "$docker" ]; then
    version=$(timeout 20 "$docker" version --format '{{.Server.Version}}' 2>/dev/null || true)
    running=$(timeout 20 "$docker" ps -q 2>/dev/null | wc -l)
    total=$(timeout 20 "$docker" ps -aq 2>/dev/null | wc -l)
  fi
  # iptables prints the tag quoted or bare, depending on the build.
  rules=$(iptables -w -S FORWARD 2>/dev/null |
    grep -cF -e "--comment \"dockyard:$prefix\"" -e "--comment dockyard:$prefix " || true)
  jq -cn \
    --arg prefix "$prefix" --arg active "$active" --arg enabled "$enabled" \
    --arg socket "$socket" --arg version "$version" --arg running "$running" \
    --arg total "$total" --arg rules "$rules" \
    '{kind: "instance", prefix: $prefix, active: $active, enabled: $enabled, socket: $socket,
      dockerVersion: $version, running: $running, containers: $total, forwardRules: $rules}'
done
