#!/usr/bin/env python3
"""The run's measurements, one JSON object per line in a results file:

    {"peer": "kiseki", "group": "fio", "workload": "seq write 1M", "value": 812.5, "unit": "MiB/s"}
    {"peer": "kiseki", "group": "fio", "workload": "seq read 1M", "error": "exit 1: ..."}

`peer` is what was measured (local, passthrough, jfs-badger, jfs-sqlite, kiseki, and
kiseki-lib for the library paths), `group` the tool (jfs-p1, jfs-p4, fio, py, c,
memory). A workload of "*" marks every workload of that peer and group as failed.
report.py turns the file into the tables.

    results.py add FILE --peer P --group G OUTPUT    # JSON lines of fsbench.py/kbench
    results.py fail FILE --peer P --group G --workload W --reason TEXT [--stderr FILE]
"""

import argparse
import json
import sys


def append(path, records):
    with open(path, "a") as f:
        for r in records:
            f.write(json.dumps(r) + "\n")


def load(path):
    try:
        with open(path) as f:
            return [json.loads(line) for line in f if line.strip()]
    except FileNotFoundError:
        return []


def measurement(peer, group, workload, value, unit):
    return {"peer": peer, "group": group, "workload": workload, "value": float(value), "unit": unit}


def failure(peer, group, workload, reason):
    return {"peer": peer, "group": group, "workload": workload, "error": reason}


def stderr_tail(path, lines=3, limit=400):
    """The last non-empty lines of a tool's stderr: usually the error that stopped it."""
    try:
        with open(path, errors="replace") as f:
            text = [line.strip() for line in f if line.strip()]
    except OSError:
        return ""
    tail = " | ".join(text[-lines:])
    return tail if len(tail) <= limit else "..." + tail[-limit:]


def main():
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)
    add = sub.add_parser("add")
    fail = sub.add_parser("fail")
    for s in (add, fail):
        s.add_argument("file")
        s.add_argument("--peer", required=True)
        s.add_argument("--group", required=True)
    add.add_argument("output", help="JSON lines with workload, value, unit")
    fail.add_argument("--workload", default="*")
    fail.add_argument("--reason", required=True)
    fail.add_argument("--stderr", help="append the end of this stderr log to the reason")
    a = p.parse_args()

    if a.cmd == "add":
        records = []
        with open(a.output) as f:
            for line in f:
                if line.strip().startswith("{"):
                    m = json.loads(line)
                    records.append(measurement(a.peer, a.group, m["workload"], m["value"], m["unit"]))
        if not records:
            sys.exit(f"results.py: no measurement in {a.output}")
        append(a.file, records)
    else:
        reason = a.reason
        if a.stderr:
            tail = stderr_tail(a.stderr)
            if tail:
                reason += ": " + tail
        append(a.file, [failure(a.peer, a.group, a.workload, reason)])


if __name__ == "__main__":
    main()
