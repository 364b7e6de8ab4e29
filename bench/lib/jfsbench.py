#!/usr/bin/env python3
"""Reads the table `juicefs bench` prints and records its five figures:

    |   Write big file |   2752.44 MiB/s |  0.01 s/file |
    | Write small file |  3264.4 files/s | 0.61 ms/file |

On a terminal juicefs colours the values (green/yellow/red), so escape sequences are
stripped first. Older releases print sentences instead ("Written a big file (1024.00
MiB): (113.67 MiB/s)"); only the table form of 1.x is accepted, anything else fails
loudly rather than being misread.

    jfsbench.py RESULTS --peer P --group jfs-p1 OUTPUT
"""

import argparse
import re
import sys

import results

ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
ITEMS = {
    "Write big file": "big write",
    "Read big file": "big read",
    "Write small file": "small write",
    "Read small file": "small read",
    "Stat file": "stat",
}
ROW = re.compile(r"^\|\s*([A-Za-z ]+?)\s*\|\s*([0-9.]+)\s*(MiB/s|files/s)\s*\|")


def parse(text):
    found = {}
    for line in ANSI.sub("", text).splitlines():
        m = ROW.match(line.strip())
        if m and m.group(1) in ITEMS:
            found[ITEMS[m.group(1)]] = (float(m.group(2)), m.group(3))
    missing = [w for w in ITEMS.values() if w not in found]
    if missing:
        raise ValueError(f"juicefs bench output lacks {', '.join(missing)}")
    return found


def main():
    p = argparse.ArgumentParser()
    p.add_argument("results")
    p.add_argument("--peer", required=True)
    p.add_argument("--group", required=True)
    p.add_argument("output")
    a = p.parse_args()
    with open(a.output, errors="replace") as f:
        try:
            found = parse(f.read())
        except ValueError as e:
            sys.exit(f"jfsbench.py: {e}")
    results.append(a.results, [results.measurement(a.peer, a.group, w, v, u) for w, (v, u) in found.items()])


if __name__ == "__main__":
    main()
