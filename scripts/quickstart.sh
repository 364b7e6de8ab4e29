#!/usr/bin/env bash
# Sets up a Debian machine, builds and installs Kiseki, and runs the main job: mount the
# embedded default volume (RocksDB metadata and a local data directory, formatted on
# first use) at ${KISEKI_MOUNTPOINT:-/mnt/kiseki} in the background, then show it.
source "$(dirname "$0")/lib.sh"

"$KISEKI_ROOT/scripts/install.sh"
MP="${KISEKI_MOUNTPOINT:-/mnt/kiseki}"
as_root mkdir -p "$MP"
if grep -q " $MP fuse.kiseki " /proc/self/mountinfo; then
    log "$MP is already a kiseki mount"
else
    log "kiseki mount $MP -d (formats the default volume on first use)"
    as_root kiseki mount "$MP" -d
fi
log "the volume at $MP"
df -h "$MP"
echo "hello from kiseki" | as_root tee "$MP/hello.txt" >/dev/null
ls -l "$MP"
log "kiseki status"
as_root kiseki status
log "done: use $MP like any directory; 'kiseki umount $MP' unmounts it"
