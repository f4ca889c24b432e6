#!/usr/bin/env bash
# Run a Pulumi operation on a stack of this project with a local file backend:
#   scripts/pulumi-stack.sh up|preview|destroy|refresh STACK [extra pulumi args]
# Finds or builds the Pulumi CLI, creates the backend directory, the passphrase
# file and the stack on first use, and says plainly what is missing otherwise.
set -euo pipefail
cd "$(dirname "$0")/.."

op=${1:?usage: pulumi-stack.sh up|preview|destroy|refresh STACK}
stack=${2:?usage: pulumi-stack.sh up|preview|destroy|refresh STACK}
shift 2

cache=${DOCKYARD_CACHE:-$HOME/.cache/dockyard}
export PULUMI_BACKEND_URL=${PULUMI_BACKEND_URL:-file://$cache/state}
export PULUMI_SKIP_UPDATE_CHECK=1
export PULUMI_DIY_BACKEND_NO_LEGACY_WARNING=1

stack_file="stacks/Pulumi.$stack.yaml"
if [ ! -f "$stack_file" ]; then
  echo "dockyard: no stack file $stack_file." >&2
  echo "  Stacks live in stacks/Pulumi.<stack>.yaml; copy stacks/Pulumi.example.yaml to start one." >&2
  exit 1
fi

# The offline testbed stack installs the test bed's artifacts (real ones from
# $DOCKYARD_TEST_ARTIFACTS, the official downloads, or STAND-INs): choose and link them so
# its sha256File pins exist. The choice is printed.
if [ "$stack" = testbed ]; then
  .venv/bin/python -m tools.testbed >/dev/null
fi

# Validate offline first: a bad stack file never reaches Pulumi or a host.
.venv/bin/python -m dockyard_resources validate "$stack_file" >/dev/null || {
  .venv/bin/python -m dockyard_resources validate "$stack_file" >&2 || true
  exit 1
}

bindir=$(scripts/pulumi-cli.sh) || { echo "dockyard: could not find or build the Pulumi CLI (see above)." >&2; exit 1; }
export PATH="$bindir:$PATH"

case "$PULUMI_BACKEND_URL" in
  file://*) mkdir -p "${PULUMI_BACKEND_URL#file://}" ;;
esac

# Secrets in state are encrypted with a passphrase; generate one per user once.
if [ -z "${PULUMI_CONFIG_PASSPHRASE:-}" ] && [ -z "${PULUMI_CONFIG_PASSPHRASE_FILE:-}" ]; then
  export PULUMI_CONFIG_PASSPHRASE_FILE="$cache/passphrase"
fi
if [ -n "${PULUMI_CONFIG_PASSPHRASE_FILE:-}" ] && [ ! -s "$PULUMI_CONFIG_PASSPHRASE_FILE" ]; then
  mkdir -p "$(dirname "$PULUMI_CONFIG_PASSPHRASE_FILE")"
  (umask 077 && head -c 32 /dev/urandom | base64 >"$PULUMI_CONFIG_PASSPHRASE_FILE")
  echo "dockyard: generated a state passphrase in $PULUMI_CONFIG_PASSPHRASE_FILE (keep it)." >&2
fi

# Pulumi runs in the stack's own project directory outside the checkout (it writes the
# passphrase salt into the stack file): the shipped stacks/*.yaml stay as they are.
workdir=$(.venv/bin/python -m dockyard_resources workdir "$stack_file")
cd "$workdir"
echo "dockyard: stack $stack runs in $workdir (from $stack_file)" >&2

if ! pulumi stack select "$stack" >/dev/null 2>&1; then
  pulumi stack init "$stack" --secrets-provider passphrase >/dev/null
fi

case "$op" in
  up|destroy|refresh) exec pulumi "$op" --stack "$stack" --yes "$@" ;;
  preview) exec pulumi preview --stack "$stack" "$@" ;;
  *) echo "dockyard: unknown operation '$op' (up, preview, destroy, refresh)" >&2; exit 2 ;;
esac
