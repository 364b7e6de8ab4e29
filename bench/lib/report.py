#!/usr/bin/env python3
"""Writes the benchmark report: the machine, the settings, one Markdown table per tool
with every peer's figure and Kiseki's ratio to it, the library paths beside the mount and
the local filesystem, and the issue's targets marked pass or miss. Every number comes
from the results file of this run; a workload that failed shows "failed [n]" with the
reason in the notes.

    report.py --results FILE --out FILE.md --bench-dir DIR --buffer-mib N
              [--quick] [--setting TEXT]... [--version NAME=VALUE]...
"""

import argparse
import os
import platform
import subprocess
import time

import results

# Mount peers in column order, per leg; the suite may run fewer (BENCH_ONLY) or lose
# some. The `fs` leg keeps every peer's data on the local disk; the S3 leg puts Kiseki's
# and JuiceFS's blocks in one SeaweedFS server on loopback (metadata stays local).
PEERS = [
    ("local", "local fs"),
    ("passthrough", "passthrough_ll"),
    ("jfs-badger", "JuiceFS badger"),
    ("jfs-sqlite", "JuiceFS sqlite3"),
    ("kiseki", "Kiseki"),
    # The same mount with metrics=off: "Kiseki ÷ Kiseki, metrics off" is what serving
    # and scraping the metrics costs.
    ("kiseki-nometrics", "Kiseki, metrics off"),
]
KISEKI = "kiseki"
S3_PEERS = [("jfs-s3", "JuiceFS badger"), ("kiseki-s3", "Kiseki")]
KISEKI_S3 = "kiseki-s3"

MOUNT_GROUPS = [
    ("jfs-p1", "juicefs bench -p 1", ["big write", "big read", "small write", "small read", "stat"]),
    ("jfs-p4", "juicefs bench -p 4", ["big write", "big read", "small write", "small read", "stat"]),
    (
        "fio",
        "fio (psync, direct=0, end_fsync=1; reads cold)",
        [
            "seq write 1M",
            "seq read 1M",
            "seq write 4K",
            "seq read 4K",
            "rand write 1M",
            "rand read 1M",
            "rand write 4K",
            "rand read 4K",
        ],
    ),
    ("meta", "metadata (Python os calls)", ["meta create", "meta stat", "meta rename", "meta unlink"]),
    ("memory", "memory of the FUSE daemon (lower is better)", ["peak RSS"]),
]
LIB_WORKLOADS = [
    "big write",
    "big read",
    "small write",
    "small read",
    "meta create",
    "meta stat",
    "meta rename",
    "meta unlink",
]


class Results:
    def __init__(self, records):
        self.values = {}
        self.errors = {}
        for r in records:
            key = (r["peer"], r["group"], r["workload"])
            if "error" in r:
                self.errors.setdefault(key, r["error"])
            else:
                self.values[key] = (r["value"], r["unit"])
        self.notes = []  # failure reasons, numbered in order of first mention

    def get(self, peer, group, workload):
        return self.values.get((peer, group, workload))

    def error(self, peer, group, workload):
        for key in ((peer, group, workload), (peer, group, "*"), (peer, "*", "*")):
            if key in self.errors:
                return self.errors[key], key
        return None, None

    def cell(self, peer, group, workload):
        v = self.get(peer, group, workload)
        if v:
            return fmt(v[0])
        reason, key = self.error(peer, group, workload)
        if reason is None:
            return "—"  # not run (filtered out)
        return f"failed [{self.note(key, reason)}]"

    def note(self, key, reason):
        """The number of a failure's note (added on first mention)."""
        note = f"{key[0]} / {key[1]} / {key[2]}: {reason}".replace("|", "\\|")
        if note not in self.notes:
            self.notes.append(note)
        return self.notes.index(note) + 1

    def all_notes(self):
        """Every failure, also those no table cell points at (a daemon that died and
        was mounted again, an unmount that failed)."""
        for key, reason in self.errors.items():
            self.note(key, reason)
        return self.notes

    def ratio(self, num, den):
        a, b = self.get(*num), self.get(*den)
        if a and b and b[0] > 0:
            return a[0] / b[0]
        return None


def fmt(x):
    if x >= 100:
        return f"{x:,.0f}"
    if x >= 10:
        return f"{x:.1f}"
    return f"{x:.2f}"


def fmt_ratio(r):
    return "—" if r is None else f"{r:.2f}x"


def table(header, rows):
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(out)


def unit_of(res, group, workload, peers):
    for p in peers:
        v = res.get(p, group, workload)
        if v:
            return v[1]
    # Nobody has a figure (all failed): the unit the tools use for this workload.
    if group == "memory":
        return "MiB"
    if workload.startswith("meta"):
        return "ops/s"
    if group == "fio":
        return "IOPS" if workload.endswith("4K") else "MiB/s"
    return "MiB/s" if workload.startswith("big") else "files/s"


def mount_tables(res, meta_files, peers=PEERS, kiseki=KISEKI):
    present = [(p, name) for p, name in peers if any(k[0] == p for k in list(res.values) + list(res.errors))]
    if not present:
        return []
    others = [(p, name) for p, name in present if p != kiseki]
    out = []
    for group, title, workloads in MOUNT_GROUPS:
        if group == "meta":
            title += f", {meta_files:,} empty files"
        seen = {k[2] for k in list(res.values) + list(res.errors) if k[1] == group and k[2] != "*"}
        workloads = workloads + sorted(seen - set(workloads))
        header = ["workload", "unit"] + [name for _, name in present]
        header += [f"Kiseki ÷ {name}" for _, name in others] if any(p == kiseki for p, _ in present) else []
        rows = []
        for w in workloads:
            row = [w, unit_of(res, group, w, [p for p, _ in present])]
            row += [res.cell(p, group, w) for p, _ in present]
            if any(p == kiseki for p, _ in present):
                row += [fmt_ratio(res.ratio((kiseki, group, w), (p, group, w))) for p, _ in others]
            rows.append(row)
        out.append(f"### {title}\n\n" + table(header, rows))
    return out


def library_tables(res):
    """The Python package and the C library against the same program on the Kiseki
    mount and on the local filesystem."""
    out = []
    for group, title in (("py", "Python: fsbench.py"), ("c", "C: kbench")):
        if not any(k[1] == group for k in list(res.values) + list(res.errors)):
            continue
        header = [
            "workload",
            "unit",
            "local fs",
            "Kiseki FUSE",
            "Kiseki library",
            "library ÷ FUSE",
            "library ÷ local",
        ]
        rows = []
        for w in LIB_WORKLOADS:
            g = "meta" if (group == "py" and w.startswith("meta")) else group
            lib = ("kiseki-lib", group, w)
            rows.append(
                [
                    w,
                    unit_of(res, group, w, ["kiseki-lib", "local", KISEKI]) or unit_of(res, g, w, ["local", KISEKI]),
                    res.cell("local", g, w),
                    res.cell(KISEKI, g, w),
                    res.cell(*lib),
                    fmt_ratio(res.ratio(lib, (KISEKI, g, w))),
                    fmt_ratio(res.ratio(lib, ("local", g, w))),
                ]
            )
        out.append(f"### {title}\n\n" + table(header, rows))
    return out


def targets(res, buffer_mib):
    """The targets of the write and read issues (14, 15), each checked on figures of
    this run, on the `fs` leg and the S3 leg."""
    checks = []

    def ratio_check(text, num, den, floor):
        r = res.ratio(num, den)
        if r is None:
            missing = [k for k in (num, den) if not res.get(*k)]
            why = res.error(*missing[0])[0] if missing else None
            checks.append([text, "—", "n/a (" + ("failed" if why else "not run") + f": {'/'.join(missing[0])})"])
        else:
            checks.append([text, f"{r:.2f}x", "pass" if r >= floor else "**miss**"])

    for leg, kiseki, jfs_peer in (("fs", KISEKI, "jfs-badger"), ("S3", KISEKI_S3, "jfs-s3")):
        for group in ("jfs-p1", "jfs-p4"):
            bench = f"juicefs bench -{group[-2:]}"
            for w, floor in (
                ("big write", 1.5),
                ("small write", 2.0),
                ("big read", 1.5),
                ("small read", 1.5),
                ("stat", 1.5),
            ):
                ratio_check(f"{leg}: {w} >= {floor}x JuiceFS ({bench})", (kiseki, group, w), (jfs_peer, group, w), floor)
        for w, floor in (("seq write 1M", 1.2), ("rand write 4K", 1.5), ("seq read 1M", 1.5), ("rand read 4K", 1.5)):
            ratio_check(f"{leg}: fio {w} >= {floor}x JuiceFS", (kiseki, "fio", w), (jfs_peer, "fio", w), floor)
    for w in ("big write", "big read"):
        ratio_check(f"fs: {w} >= 0.9x passthrough_ll (juicefs bench -p 1)", (KISEKI, "jfs-p1", w), ("passthrough", "jfs-p1", w), 0.9)
    ratio_check("C library small write >= 3x Kiseki FUSE (kbench)", ("kiseki-lib", "c", "small write"), (KISEKI, "c", "small write"), 3.0)
    for group, lang in (("py", "Python"), ("c", "C")):
        ratio_check(f"{lang} library cold big read >= 0.8x local fs", ("kiseki-lib", group, "big read"), ("local", group, "big read"), 0.8)
        ratio_check(f"{lang} library cold big read >= 1.3x Kiseki FUSE", ("kiseki-lib", group, "big read"), (KISEKI, group, "big read"), 1.3)
    limit = buffer_mib + 150
    for kiseki, leg in ((KISEKI, "fs"), (KISEKI_S3, "S3")):
        rss = res.get(kiseki, "memory", "peak RSS")
        text = f"{leg}: mount peak RSS during big write <= buffer {buffer_mib} MiB + 150 MiB"
        if rss:
            checks.append([text, f"{rss[0]:.0f} MiB", "pass" if rss[0] <= limit else "**miss**"])
        else:
            checks.append([text, "—", "n/a (" + ("failed" if res.error(kiseki, "memory", "peak RSS")[0] else "not run") + ")"])
    return table(["target", "measured", "result"], checks)


def run(cmd):
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def machine(bench_dir):
    cpu = "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem = "unknown"
    try:
        with open("/proc/meminfo") as f:
            kib = int(next(line for line in f if line.startswith("MemTotal")).split()[1])
            mem = f"{kib / 2**20:.1f} GiB"
    except (OSError, StopIteration):
        pass
    distro = ""
    try:
        with open("/etc/os-release") as f:
            distro = next((line.split("=", 1)[1].strip().strip('"') for line in f if line.startswith("PRETTY_NAME")), "")
    except OSError:
        pass
    source, fstype, options = (run(["findmnt", "-n", "-o", "SOURCE,FSTYPE,OPTIONS", "-T", bench_dir]).split() + ["?"] * 3)[:3]
    disk = ""
    if source.startswith("/dev/"):
        disk = " ".join(run(["lsblk", "-nd", "-o", "NAME,MODEL,SIZE,ROTA", source]).split())
        disk = f" (lsblk NAME MODEL SIZE ROTA: {disk})" if disk else ""
    return [
        ("host", platform.node()),
        ("CPU", f"{cpu}, {os.cpu_count()} logical cores"),
        ("RAM", mem),
        ("kernel", f"{platform.system()} {platform.release()}" + (f", {distro}" if distro else "")),
        ("bench dir", f"{bench_dir} on {source}, {fstype} ({options}){disk}"),
    ]


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--results", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--bench-dir", required=True)
    p.add_argument("--buffer-mib", type=int, required=True)
    p.add_argument("--meta-files", type=int, default=10000)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--setting", action="append", default=[])
    p.add_argument("--version", action="append", default=[])
    a = p.parse_args()

    res = Results(results.load(a.results))
    parts = [f"# Kiseki benchmark, {time.strftime('%Y-%m-%d %H:%M %Z')}"]
    if a.quick:
        parts.append("**Quick smoke run (BENCH_QUICK=1): tiny sizes, the figures say nothing about performance.**")
    parts.append("## Machine\n\n" + "\n".join(f"- {k}: {v}" for k, v in machine(a.bench_dir)))
    if a.version:
        parts.append("## Versions\n\n" + "\n".join(f"- {v.replace('=', ': ', 1)}" for v in a.version))
    if a.setting:
        parts.append("## Settings\n\n" + "\n".join(f"- {s}" for s in a.setting))
    parts.append("## Targets (issues 14 and 15)\n\n" + targets(res, a.buffer_mib))
    parts.append("## Through the mounts (`fs` leg: data on the local disk)\n\nKiseki ÷ peer > 1 means Kiseki is faster (for memory: larger).")
    parts += mount_tables(res, a.meta_files)
    s3 = mount_tables(res, a.meta_files, S3_PEERS, KISEKI_S3)
    if s3:
        parts.append("## Through the mounts (S3 leg: blocks in one SeaweedFS S3 server on loopback, metadata local)")
        parts += s3
    lib = library_tables(res)
    if lib:
        parts.append("## Library paths (no mount) beside the same program on the mount and the local fs")
        parts += lib
    if res.all_notes():
        parts.append("## Failures\n\n" + "\n".join(f"{i}. {n}" for i, n in enumerate(res.notes, 1)))
    text = "\n\n".join(parts) + "\n"
    with open(a.out, "w") as f:
        f.write(text)
    print(text)


if __name__ == "__main__":
    main()
