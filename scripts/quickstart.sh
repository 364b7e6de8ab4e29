#!/usr/bin/env bash
# Sets up a Debian machine, builds Kiseki and runs the main job on the embedded default
# volume (RocksDB metadata and a local data directory): format it on first use, then
# show its status and check it.
source "$(dirname "$0")/lib.sh"

ensure_build_env
log "building kiseki"
cargo_release build -p kiseki-mount --bin kiseki
KISEKI="$CARGO_TARGET_DIR/release/kiseki"

log "kiseki init (formats the default volume on first use)"
"$KISEKI" init
log "kiseki status"
"$KISEKI" status
log "kiseki fsck"
"$KISEKI" fsck
