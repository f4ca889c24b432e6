#!/usr/bin/env bash
# Prints the path of a SeaweedFS `weed` binary (an S3-compatible object store), building it
# from its Go module when the cache holds none. The tests use it as a team's shared Pulumi
# backend on loopback (tests/fixtures/s3.py). Usage:
#   WEED=$(scripts/seaweedfs.sh)
# Build output goes to a log file; only the binary's path is printed on stdout.
set -euo pipefail

# SeaweedFS tags (e.g. 3.80) are not Go semver tags, so the module proxy serves it at a
# pseudo-version: this one is `go list -m github.com/seaweedfs/seaweedfs@latest` of 2026-11.
SEAWEEDFS_VERSION="${SEAWEEDFS_VERSION:-v0.0.0-20261109003541-7506e5f91cd6}"
MODULE=github.com/seaweedfs/seaweedfs

log() { printf 'seaweedfs: %s\n' "$*" >&2; }

CACHE_ROOT="${DOCKYARD_CACHE:-$HOME/.cache/dockyard}/seaweedfs"
FINAL_DIR="$CACHE_ROOT/$SEAWEEDFS_VERSION"
STAMP="$FINAL_DIR/.complete"
if [[ -f "$STAMP" && -x "$FINAL_DIR/weed" ]]; then
    echo "$FINAL_DIR/weed"
    exit 0
fi

# Go: on PATH, else the usual install location, else the toolchain scripts/pulumi-cli.sh
# fetched from the module proxy for its own build.
for dir in /usr/local/go/bin "${DOCKYARD_CACHE:-$HOME/.cache/dockyard}"/pulumi-cli/go*/bin; do
    command -v go >/dev/null 2>&1 && break
    [[ -x "$dir/go" ]] && PATH="$dir:$PATH"
done
command -v go >/dev/null 2>&1 || {
    log "no Go toolchain: install Go >= 1.26.6, or let PULUMI_CLI_FORCE_BUILD=1 scripts/pulumi-cli.sh fetch one"
    exit 1
}

mkdir -p "$CACHE_ROOT"
# One builder at a time; a second caller waits, then finds the stamp.
exec 9>"$CACHE_ROOT/.lock"
flock 9
if [[ -f "$STAMP" && -x "$FINAL_DIR/weed" ]]; then
    echo "$FINAL_DIR/weed"
    exit 0
fi

rm -rf "$CACHE_ROOT"/.build-*
WORK_DIR="$(mktemp -d "$CACHE_ROOT/.build-$SEAWEEDFS_VERSION.XXXXXX")"
LOG_FILE="$CACHE_ROOT/build-$SEAWEEDFS_VERSION.log"
trap 'rm -rf "$WORK_DIR"' EXIT
: >"$LOG_FILE"
started=$SECONDS
log "building weed $SEAWEEDFS_VERSION from Go modules into $FINAL_DIR (first time several minutes on 2 cores, then cached; log: $LOG_FILE)"

# A wrapper module: `go install MODULE@VERSION` refuses modules whose go.mod has replace
# directives, and SeaweedFS's has one (go-bip39); it is copied here.
build() {
    mkdir -p "$WORK_DIR/mod" "$WORK_DIR/out"
    cd "$WORK_DIR/mod"
    go mod init dockyard.local/seaweedfs-build
    local gomod
    gomod="$(go mod download -json "$MODULE@$SEAWEEDFS_VERSION" |
        sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",$/\1/p')"
    [[ -f "$gomod" ]]
    # Non-local replaces only (a local path means nothing outside SeaweedFS's own checkout).
    go mod edit -json "$gomod" |
        python3 -c 'import json, sys
for r in json.load(sys.stdin).get("Replace") or []:
    if r["New"].get("Version"):
        print(r["Old"]["Path"] + "=" + r["New"]["Path"] + "@" + r["New"]["Version"])' |
        while read -r replace; do go mod edit -replace "$replace"; done
    go get "$MODULE@$SEAWEEDFS_VERSION"
    CGO_ENABLED=0 GOFLAGS=-mod=mod GOTOOLCHAIN=local \
        go build -trimpath -ldflags "-s -w" -o "$WORK_DIR/out/weed" "$MODULE/weed"
    "$WORK_DIR/out/weed" version
}

# In the background: bash ignores `set -e` inside a subshell used as a condition.
set +e
(
    set -e
    build
) >>"$LOG_FILE" 2>&1 &
wait $!
rc=$?
set -e
if [[ $rc -ne 0 ]]; then
    log "build failed (exit $rc); last lines of $LOG_FILE:"
    tail -n 30 "$LOG_FILE" >&2
    exit 1
fi
elapsed=$((SECONDS - started))
printf 'built in %ss\n' "$elapsed" >"$WORK_DIR/out/.complete"
rm -rf "$FINAL_DIR"
mv "$WORK_DIR/out" "$FINAL_DIR"
log "built in ${elapsed}s"
echo "$FINAL_DIR/weed"
