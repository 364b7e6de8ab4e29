#!/usr/bin/env bash
# Coverage-guided fuzzing (cargo-fuzz, libFuzzer) of the meta URL and option parsers,
# the metadata record and key decoders, block decoding and checksums, and the C API.
#
#   scripts/fuzz.sh [TARGET...]        all targets of fuzz/fuzz_targets by default
#
# Each target runs for KISEKI_FUZZ_SECONDS (default 20) on a copy of its committed
# corpus (fuzz/corpus/TARGET), so runs never change the committed files. A crash, a
# panic, a failed assertion, a leak (not checked in c_api), a timeout
# (KISEKI_FUZZ_TIMEOUT seconds for one input, default 30) or running out of memory
# fails the run; the input that did it is kept under fuzz/artifacts/TARGET/ and the
# command that replays it is printed.
# KISEKI_FUZZ_UPDATE_CORPUS=1 then replaces each committed corpus with a minimized
# merge of it and what the run found (at most about 200 inputs), to commit.
#
# Toolchain: cargo-fuzz needs nightly `-Z` flags; they are enabled on the stable
# toolchain with RUSTC_BOOTSTRAP=1 (no nightly toolchain is installed or needed).
# Sanitizer: AddressSanitizer (`-s address`, cargo-fuzz's default) works on this
# machine and is what runs by default; KISEKI_FUZZ_SANITIZER=none builds without it
# (faster, catches panics but not memory errors in unsafe code). Builds also enable
# debug assertions (`-a`), so integer overflow panics too.
#
# cargo-fuzz is installed once into /var/cache/kiseki/tools (cargo install --locked);
# the instrumented builds have their own persistent target directory (their compiler
# flags differ from the main build's), /var/cache/kiseki/fuzz-target, and share sccache.
source "$(dirname "$0")/lib.sh"

seconds="${KISEKI_FUZZ_SECONDS:-20}"
timeout="${KISEKI_FUZZ_TIMEOUT:-30}"
sanitizer="${KISEKI_FUZZ_SANITIZER:-address}"
tools="${KISEKI_TOOLS:-/var/cache/kiseki/tools}"
cargo_fuzz_version="0.13.2"
fuzz_dir="$KISEKI_ROOT/fuzz"

ensure_build_env
main_target_dir="$CARGO_TARGET_DIR"
# lib.sh's CARGO_TARGET_DIR is the main build's; instrumented builds must not share it.
export CARGO_TARGET_DIR="${KISEKI_FUZZ_TARGET_DIR:-/var/cache/kiseki/fuzz-target}"
export RUSTC_BOOTSTRAP=1
mkdir -p "$CARGO_TARGET_DIR"
build_env=(RUSTC_BOOTSTRAP=1 "CARGO_TARGET_DIR=$CARGO_TARGET_DIR")

# RocksDB's C++ does not depend on the Rust flags, but the instrumented build would
# compile it again (about 26 CPU-minutes; sccache misses, its include paths differ).
# When the main build (same librocksdb-sys version) has compiled it, link that static
# library instead (fuzz/build.rs adds the libstdc++ it needs).
rocksdb_version="$(grep -A1 '^name = "librocksdb-sys"$' "$fuzz_dir/Cargo.lock" | sed -n 's/^version = "\(.*\)"$/\1/p')"
prebuilt="$CARGO_TARGET_DIR/prebuilt/librocksdb-sys-$rocksdb_version"
if [ ! -f "$prebuilt/librocksdb.a" ] && [ -n "$rocksdb_version" ]; then
    for out in $(ls -td "$main_target_dir"/release/build/librocksdb-sys-*/ 2>/dev/null); do
        if grep -qx "cargo:cargo_manifest_dir=.*/librocksdb-sys-$rocksdb_version" "$out/output" 2>/dev/null \
            && [ -f "$out/out/librocksdb.a" ]; then
            log "reusing the main build's RocksDB static library ($out)"
            mkdir -p "$prebuilt"
            cp "$out/out/librocksdb.a" "$prebuilt/librocksdb.a.tmp"
            mv "$prebuilt/librocksdb.a.tmp" "$prebuilt/librocksdb.a"
            break
        fi
    done
fi
if [ -f "$prebuilt/librocksdb.a" ]; then
    export ROCKSDB_LIB_DIR="$prebuilt" ROCKSDB_STATIC=1
    build_env+=("ROCKSDB_LIB_DIR=$prebuilt" ROCKSDB_STATIC=1)
else
    log "no prebuilt RocksDB $rocksdb_version: the fuzz build compiles it"
fi

if [ ! -x "$tools/bin/cargo-fuzz" ]; then
    log "installing cargo-fuzz $cargo_fuzz_version (cargo install --locked)"
    CARGO_TARGET_DIR="$tools/target" cargo install --locked --quiet \
        --version "$cargo_fuzz_version" --root "$tools" cargo-fuzz
fi
export PATH="$tools/bin:$PATH"

if [ $# -gt 0 ]; then
    targets=("$@")
else
    mapfile -t targets < <(cd "$KISEKI_ROOT" && cargo fuzz list --fuzz-dir "$fuzz_dir")
fi
if [ ${#targets[@]} -eq 0 ]; then
    echo "no fuzz targets (cargo fuzz list found none)" >&2
    exit 1
fi
fuzz_flags=(--fuzz-dir "$fuzz_dir" --sanitizer "$sanitizer" --debug-assertions)

log "cargo fuzz build (${targets[*]}; sanitizer $sanitizer)"
build_start=$(date +%s)
(cd "$KISEKI_ROOT" && cargo fuzz build "${fuzz_flags[@]}")
log "fuzz build took $(($(date +%s) - build_start)) s"

bin_dir="$CARGO_TARGET_DIR/x86_64-unknown-linux-gnu/release"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

failed=()
summary=()
for t in "${targets[@]}"; do
    corpus="$work/$t/corpus"
    mkdir -p "$corpus" "$fuzz_dir/artifacts/$t"
    if [ -d "$fuzz_dir/corpus/$t" ]; then
        cp -r "$fuzz_dir/corpus/$t/." "$corpus/"
    fi
    log "fuzzing $t for ${seconds} s ($(find "$corpus" -type f | wc -l) seed inputs)"
    out="$work/$t/log"
    extra=()
    case "$t" in
        # The library keeps caches, sessions and the memory volume between inputs, so
        # nearly every input ends with more allocations than frees; libFuzzer would then
        # run a LeakSanitizer scan after each one (15x slower) to report only those.
        c_api) extra=(-detect_leaks=0) ;;
    esac
    rc=0
    "$bin_dir/$t" "$corpus" "${extra[@]}" \
        -max_total_time="$seconds" -timeout="$timeout" -print_final_stats=1 \
        -artifact_prefix="$fuzz_dir/artifacts/$t/" >"$out" 2>&1 || rc=$?
    execs="$(sed -n 's/^stat::number_of_executed_units: *//p' "$out" | tail -n1)"
    rate="$(sed -n 's/^stat::average_exec_per_sec: *//p' "$out" | tail -n1)"
    summary+=("$(printf '%-10s %12s executions %8s/s  exit %s' "$t" "${execs:-?}" "${rate:-?}" "$rc")")
    if [ "$rc" -ne 0 ]; then
        failed+=("$t")
        echo "---- $t failed (exit $rc); the end of its log:" >&2
        tail -n 40 "$out" >&2
        echo "---- what failed:" >&2
        grep -m1 -A4 -E 'panicked at|ERROR: (AddressSanitizer|LeakSanitizer|libFuzzer)' "$out" >&2 || true
        artifact="$(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$out" | tail -n1)"
        if [ -n "$artifact" ]; then
            echo "---- input: $artifact" >&2
            echo "---- reproduce: (cd $KISEKI_ROOT && env ${build_env[*]} $tools/bin/cargo-fuzz run ${fuzz_flags[*]} $t $artifact${extra[*]:+ -- ${extra[*]}})" >&2
            echo "---- minimize:  (cd $KISEKI_ROOT && env ${build_env[*]} $tools/bin/cargo-fuzz tmin ${fuzz_flags[*]} $t $artifact)" >&2
        fi
    fi
    if [ "$rc" -eq 0 ] && [ "${KISEKI_FUZZ_UPDATE_CORPUS:-0}" = 1 ]; then
        # A set cover of the seeds and today's finds: every input that adds a coverage
        # feature; by edges alone when that is still more than 200 files.
        min="$work/$t/min"
        for features in "" -use_counters=0; do
            rm -rf "$min" && mkdir -p "$min"
            "$bin_dir/$t" "${extra[@]}" $features -set_cover_merge=1 "$min" "$corpus" \
                >"$work/$t/merge.log" 2>&1
            [ "$(find "$min" -type f | wc -l)" -le 200 ] && break
        done
        rm -rf "$fuzz_dir/corpus/$t" && mkdir -p "$fuzz_dir/corpus/$t"
        cp -r "$min/." "$fuzz_dir/corpus/$t/"
        log "fuzz/corpus/$t: $(find "$min" -type f | wc -l) inputs, $(du -sb "$min" | cut -f1) bytes"
    fi
done

log "fuzz summary (${seconds} s per target)"
printf '%s\n' "${summary[@]}" >&2
if [ ${#failed[@]} -gt 0 ]; then
    echo "fuzzing found failures in: ${failed[*]}" >&2
    exit 1
fi
