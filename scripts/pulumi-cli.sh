#!/usr/bin/env bash
# Prints the directory holding a `pulumi` CLI usable with the Python SDK, building it
# from Go modules when none is on PATH (the machines cannot download Pulumi's release
# binaries, but reach the Go module proxy). Usage:
#   PATH="$(scripts/pulumi-cli.sh):$PATH"
# Build output goes to a log file; only the bin dir is printed on stdout.
# See docs/pulumi-cli.md for the version situation and timings.
set -euo pipefail

# The Go proxy does not serve pkg/v3@v3.272.0 (the Python SDK pin), so the CLI is the
# nearest newer release it serves. The Python SDK helper scripts come from the sdk
# module at the SDK's own version, so they match the installed `pulumi` wheel.
PULUMI_CLI_VERSION="${PULUMI_CLI_VERSION:-3.274.1}"
PULUMI_SDK_SCRIPTS_VERSION="${PULUMI_SDK_SCRIPTS_VERSION:-3.272.0}"
# Fork that pkg/go.mod substitutes for atotto/clipboard (non-local replace to copy).
CLIPBOARD_REPLACE="github.com/tgummerer/clipboard@v0.0.0-20241001131231-d02d263e614e"

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
LANGHOST_SRC="$SCRIPT_DIR/pulumi-cli/language-python"

log() { printf 'pulumi-cli: %s\n' "$*" >&2; }

if [[ -z "${PULUMI_CLI_FORCE_BUILD:-}" ]] && command -v pulumi >/dev/null 2>&1; then
    dirname "$(command -v pulumi)"
    exit 0
fi

CACHE_ROOT="${DOCKYARD_CACHE:-$HOME/.cache/dockyard}/pulumi-cli"
# The language host source is ours, so its content is part of the cache key.
LANGHOST_HASH="$(cat "$LANGHOST_SRC"/go.mod "$LANGHOST_SRC"/*.go | sha256sum | cut -c1-12)"
VERSION_KEY="${PULUMI_CLI_VERSION}-sdk${PULUMI_SDK_SCRIPTS_VERSION}-host${LANGHOST_HASH}"
FINAL_DIR="$CACHE_ROOT/$VERSION_KEY"
STAMP="$FINAL_DIR/.complete"

if [[ -f "$STAMP" && -x "$FINAL_DIR/bin/pulumi" ]]; then
    echo "$FINAL_DIR/bin"
    exit 0
fi

mkdir -p "$CACHE_ROOT"

# Where Pulumi's own site is reachable (a user's machine), its official installer is the
# quick way: the release that matches the Python SDK pin, into the cache, PATH untouched.
OFFICIAL_DIR="$CACHE_ROOT/official-$PULUMI_SDK_SCRIPTS_VERSION"
if [[ -x "$OFFICIAL_DIR/bin/pulumi" ]]; then
    echo "$OFFICIAL_DIR/bin"
    exit 0
fi
if [[ "${PULUMI_CLI_OFFICIAL:-1}" != 0 ]] &&
    curl -fsS --max-time 10 -o /dev/null https://get.pulumi.com/ 2>/dev/null; then
    log "installing Pulumi CLI v$PULUMI_SDK_SCRIPTS_VERSION with Pulumi's official installer into $OFFICIAL_DIR"
    if curl -fsSL https://get.pulumi.com | sh -s -- --version "$PULUMI_SDK_SCRIPTS_VERSION" \
        --install-root "$OFFICIAL_DIR" --no-edit-path >&2; then
        echo "$OFFICIAL_DIR/bin"
        exit 0
    fi
    log "the official installer failed; building from Go modules instead"
fi

# Offline: build from Go modules. Without a `go` on PATH, the Go toolchain itself comes from
# the module proxy (golang.org/toolchain), which these machines reach.
GO_TOOLCHAIN_VERSION="${GO_TOOLCHAIN_VERSION:-1.26.8}"
ensure_go() {
    command -v go >/dev/null 2>&1 && return 0
    local arch dir proxy zip
    case "$(uname -m)" in x86_64) arch=amd64 ;; aarch64) arch=arm64 ;; *) arch=$(uname -m) ;; esac
    dir="$CACHE_ROOT/go$GO_TOOLCHAIN_VERSION"
    if [[ ! -x "$dir/bin/go" ]]; then
        proxy="${GOPROXY:-https://proxy.golang.org}"
        proxy="${proxy%%,*}"
        [[ "$proxy" == direct || "$proxy" == off ]] && proxy=https://proxy.golang.org
        zip="$CACHE_ROOT/.go$GO_TOOLCHAIN_VERSION.zip"
        log "no go on PATH: fetching Go $GO_TOOLCHAIN_VERSION from $proxy (about 70 MB, once)"
        curl -fsSL --retry 3 -o "$zip" \
            "$proxy/golang.org/toolchain/@v/v0.0.1-go$GO_TOOLCHAIN_VERSION.linux-$arch.zip" || {
            log "could not fetch the Go toolchain; install Go >= 1.26.6 and retry"
            exit 1
        }
        rm -rf "$dir" "$dir.tmp"
        python3 - "$zip" "$dir.tmp" <<'PY'
import sys, zipfile, os
zip_path, dest = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(zip_path) as archive:
    for info in archive.infolist():
        # Members are golang.org/toolchain@<version>/<path>: keep <path>.
        _, _, rest = info.filename.partition("@")
        relative = rest.split("/", 1)[1] if "/" in rest else ""
        if not relative or relative.endswith("/"):
            continue
        target = os.path.join(dest, relative)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        with archive.open(info) as source, open(target, "wb") as out:
            out.write(source.read())
        if relative.startswith(("bin/", "pkg/tool/")):
            os.chmod(target, 0o755)
PY
        mv "$dir.tmp" "$dir"
        rm -f "$zip"
    fi
    export PATH="$dir/bin:$PATH"
}
ensure_go
# One builder at a time; a second caller waits, then finds the stamp.
exec 9>"$CACHE_ROOT/.lock"
flock 9
if [[ -f "$STAMP" && -x "$FINAL_DIR/bin/pulumi" ]]; then
    echo "$FINAL_DIR/bin"
    exit 0
fi

# Leftovers of a build that was killed outright; safe to remove while holding the lock.
rm -rf "$CACHE_ROOT"/.build-*
WORK_DIR="$(mktemp -d "$CACHE_ROOT/.build-$VERSION_KEY.XXXXXX")"
LOG_FILE="$CACHE_ROOT/build-$VERSION_KEY.log"
cleanup() { rm -rf "$WORK_DIR"; }
trap cleanup EXIT

fail() {
    log "build failed: $*"
    log "last lines of $LOG_FILE:"
    tail -n 40 "$LOG_FILE" >&2 || true
    exit 1
}

export GOFLAGS="-mod=mod"
export GOTOOLCHAIN="${GOTOOLCHAIN:-local}"
export CGO_ENABLED=0
VERSION_LDFLAG="-X github.com/pulumi/pulumi/sdk/v3/go/common/version.Version=v$PULUMI_CLI_VERSION"
LDFLAGS="-s -w $VERSION_LDFLAG"
STAGE_BIN="$WORK_DIR/out/bin"
mkdir -p "$STAGE_BIN"
: >"$LOG_FILE"
start_s=$SECONDS
log "no pulumi on PATH: building Pulumi CLI v$PULUMI_CLI_VERSION from Go modules into $FINAL_DIR (first time 5-20 minutes on 2 cores, then cached; log: $LOG_FILE)"

# Wrapper module: pkg/go.mod's replace directives apply only inside pkg, so the
# non-local one is copied here; its local `sdk/v3 => ../sdk` is replaced by the
# published sdk module of the same version (a plain requirement).
build_cli() {
    local mod="$WORK_DIR/cli"
    mkdir -p "$mod"
    cd "$mod"
    go mod init dockyard.local/pulumi-cli-build
    go mod edit -replace "github.com/atotto/clipboard=$CLIPBOARD_REPLACE"
    go get "github.com/pulumi/pulumi/pkg/v3@v$PULUMI_CLI_VERSION" \
        "github.com/pulumi/pulumi/sdk/v3@v$PULUMI_CLI_VERSION"
    # The version ldflag would label any build; make sure the sources are that release.
    local resolved
    resolved="$(go list -m -f '{{.Version}}' github.com/pulumi/pulumi/pkg/v3)"
    [[ "$resolved" == "v$PULUMI_CLI_VERSION" ]] || {
        echo "resolved pkg/v3 $resolved, wanted v$PULUMI_CLI_VERSION" >&2
        return 1
    }
    go build -trimpath -ldflags "$LDFLAGS" -o "$STAGE_BIN/pulumi" \
        github.com/pulumi/pulumi/pkg/v3/cmd/pulumi
}

# The upstream language host module is not served by the proxy; ours lives in the
# repo and is built against the same sdk version as the CLI.
build_language_host() {
    local mod="$WORK_DIR/langhost"
    cp -r "$LANGHOST_SRC" "$mod"
    cd "$mod"
    go get "github.com/pulumi/pulumi/sdk/v3@v$PULUMI_CLI_VERSION"
    go build -trimpath -ldflags "$LDFLAGS" -o "$STAGE_BIN/pulumi-language-python" .
}

# The two helper scripts ship in the sdk module under python/.
copy_python_scripts() {
    local dir
    cd "$WORK_DIR"
    dir="$(go mod download -json "github.com/pulumi/pulumi/sdk/v3@v$PULUMI_SDK_SCRIPTS_VERSION" |
        sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')"
    [[ -n "$dir" ]]
    install -m 0755 "$dir/python/cmd/pulumi-language-python-exec" "$STAGE_BIN/"
    install -m 0755 "$dir/python/dist/pulumi-resource-pulumi-python" "$STAGE_BIN/"
}

# Runs one step in a subshell with errexit in force. Bash ignores `set -e` inside
# anything used as a condition (`step || fail`), which would let a failed `go get`
# fall through to a build of whatever version `go build -mod=mod` picks.
run_step() {
    local name="$1" rc
    shift
    set +e
    # In the background so that a signal interrupts `wait` instead of waiting for go.
    (
        set -e
        "$@"
    ) >>"$LOG_FILE" 2>&1 &
    STEP_PID=$!
    wait "$STEP_PID"
    rc=$?
    STEP_PID=""
    set -e
    [[ $rc -eq 0 ]] || fail "$name"
}

kill_tree() {
    local child
    for child in $(pgrep -P "$1" || true); do
        kill_tree "$child"
    done
    kill -TERM "$1" 2>/dev/null || true
}

# An interrupted build must not leave `go build` running into a deleted temp dir.
STEP_PID=""
on_signal() {
    if [[ -n "$STEP_PID" ]]; then
        kill_tree "$STEP_PID"
        wait "$STEP_PID" 2>/dev/null || true
    fi
    log "interrupted; nothing was published"
    exit 130
}
trap on_signal INT TERM

check_version() {
    local built
    built="$("$STAGE_BIN/pulumi" version)"
    echo "built pulumi reports $built"
    [[ "$built" == "v$PULUMI_CLI_VERSION" ]]
}

run_step "pulumi CLI" build_cli
run_step "pulumi-language-python" build_language_host
run_step "python helper scripts" copy_python_scripts
run_step "built pulumi does not run or reports another version" check_version
elapsed=$((SECONDS - start_s))
printf 'built in %ss\n' "$elapsed" >"$WORK_DIR/out/.complete"

# Atomic publish: a half-built tree never appears under FINAL_DIR.
rm -rf "$FINAL_DIR"
mv "$WORK_DIR/out" "$FINAL_DIR"
log "built in ${elapsed}s"
echo "$FINAL_DIR/bin"
