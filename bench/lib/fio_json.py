#!/usr/bin/env python3
"""Records one fio job from its JSON output (--output-format=json): bandwidth in MiB/s
or IOPS. fio's runtime includes the end_fsync, so a write figure is the rate at which
data became durable, not the rate at which the page cache absorbed it.

    fio_json.py RESULTS --peer P --workload "seq write 1M" --metric bw|iops FIO_JSON
"""

import argparse
import json
import sys

import results


def figure(doc, metric):
    job = doc["jobs"][0]
    if job.get("error"):
        raise ValueError(f"fio job error {job['error']}")
    # A job does reads or writes; pick the side that moved data.
    side = max((job["read"], job["write"]), key=lambda s: s["io_bytes"])
    if side["io_bytes"] == 0:
        raise ValueError("fio moved no data")
    if metric == "bw":
        return side["bw_bytes"] / 2**20, "MiB/s"
    return side["iops"], "IOPS"


def main():
    p = argparse.ArgumentParser()
    p.add_argument("results")
    p.add_argument("--peer", required=True)
    p.add_argument("--workload", required=True)
    p.add_argument("--metric", choices=("bw", "iops"), required=True)
    p.add_argument("json")
    a = p.parse_args()
    with open(a.json) as f:
        text = f.read()
    # fio may print warnings before the JSON document.
    start = text.find("{")
    try:
        value, unit = figure(json.loads(text[start:]), a.metric)
    except (ValueError, KeyError, IndexError) as e:
        sys.exit(f"fio_json.py: {a.json}: {e}")
    results.append(a.results, [results.measurement(a.peer, "fio", a.workload, value, unit)])


if __name__ == "__main__":
    main()
