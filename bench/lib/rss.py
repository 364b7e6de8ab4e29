#!/usr/bin/env python3
"""Memory of a FUSE daemon, found by its mount point.

    rss.py pids MOUNTPOINT                         # the daemon's pids, one a line
    rss.py sample MOUNTPOINT RESULTS --peer P --ready FILE
                                                   # poll until SIGTERM, then record

The daemon is a process that holds /dev/fuse open and either has the mount point among
its arguments or has a file open in the peer's directory (the mount point's parent, which
holds its metadata, data and cache): JuiceFS rewrites its own argv to mask the meta URL,
so its arguments cannot be relied on. This works for every peer without knowing how each
one daemonizes. JuiceFS keeps a supervising parent that also holds /dev/fuse: each
process is measured alone and the largest counts, as summing would count shared pages
twice.

`sample` reads VmRSS every 100 ms (the peak during the workload it brackets) and VmHWM
(the peak over the process's life, which catches a spike between two samples); the
record is the larger of the two, so a sampling gap cannot hide a peak. Start it, wait
for it to create the --ready file (its SIGTERM handler is in place then), run the
workload, send SIGTERM.
"""

import os
import signal
import sys
import time

import results


def daemon_pids(mountpoint):
    mountpoint = os.path.abspath(mountpoint)
    peer_dir = os.path.dirname(mountpoint) + "/"
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                argv = [a.decode(errors="replace") for a in f.read().split(b"\0")]
            targets = [_fd_target(entry, fd) for fd in os.listdir(f"/proc/{entry}/fd")]
        except OSError:
            continue  # exited meanwhile, or not ours to read
        if "/dev/fuse" not in targets:
            continue
        if mountpoint in argv or any(t and t.startswith(peer_dir) for t in targets):
            pids.append(int(entry))
    return pids


def _fd_target(pid, fd):
    try:
        return os.readlink(f"/proc/{pid}/fd/{fd}")
    except OSError:
        return None  # closed since listed: a busy daemon opens and closes files all the time


def status_kib(pid, field):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def sample(mountpoint, results_file, peer, ready, interval=0.1):
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    signal.signal(signal.SIGINT, lambda *_: stop.append(1))
    open(ready, "w").close()
    peak = {}  # pid -> max(VmRSS, VmHWM) seen, KiB
    pids = []
    deadline = time.monotonic() + 10
    while not stop:
        if not pids:
            pids = daemon_pids(mountpoint)
            if not pids and time.monotonic() > deadline:
                break
        alive = 0
        for pid in pids:
            try:
                kib = max(status_kib(pid, "VmRSS"), status_kib(pid, "VmHWM"))
            except OSError:
                continue  # the daemon exited (crashed?); keep what was seen
            alive += 1
            peak[pid] = max(peak.get(pid, 0), kib)
        if pids and not alive:
            break
        time.sleep(interval)
    if peak:
        rec = results.measurement(peer, "memory", "peak RSS", max(peak.values()) / 1024, "MiB")
    else:
        rec = results.failure(peer, "memory", "peak RSS", f"no FUSE daemon found for {mountpoint}")
    results.append(results_file, [rec])


def main():
    if len(sys.argv) == 3 and sys.argv[1] == "pids":
        for pid in daemon_pids(sys.argv[2]):
            print(pid)
    elif len(sys.argv) == 8 and sys.argv[1] == "sample" and sys.argv[4] == "--peer" and sys.argv[6] == "--ready":
        sample(sys.argv[2], sys.argv[3], sys.argv[5], sys.argv[7])
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
