#!/usr/bin/env bash
# Builds kiseki and installs it: /usr/local/bin/kiseki, plus the mount(8) helpers
# /sbin/mount.kiseki and /sbin/mount.fuse.kiseki (links to it), so fstab lines of type
# `kiseki` or `fuse.kiseki` work with `mount DIR`.
source "$(dirname "$0")/lib.sh"

ensure_build_env
log "building kiseki"
cargo_release build -p kiseki-mount --bin kiseki
as_root install -m 0755 "$CARGO_TARGET_DIR/release/kiseki" /usr/local/bin/kiseki
for helper in /sbin/mount.kiseki /sbin/mount.fuse.kiseki; do
    as_root ln -sfn /usr/local/bin/kiseki "$helper"
done
log "installed /usr/local/bin/kiseki, /sbin/mount.kiseki and /sbin/mount.fuse.kiseki"
