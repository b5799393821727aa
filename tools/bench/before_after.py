#!/usr/bin/env python3
"""Before/after throughput of two `deepfm` binaries, interleaved in rounds.

Each round runs every case on both binaries, alternating which goes first, and records
samples/s from the `--json` line each prints; the report is, per case, the median of the
per-round ratios after/before (this machine drifts 10-30% between minutes, so only ratios
taken minutes apart or less are compared). Usage:

    tools/bench/before_after.py --before OLD/deepfm --after target/release/deepfm --rounds 5
"""
import argparse
import json
import statistics
import subprocess
import sys

CASES = [
    # (name, arguments)
    ("score criteo-like batch 1, 1 thread", ["bench", "--batch", "1", "--threads", "1"]),
    ("score criteo-like batch 4096, 1 thread", ["bench", "--batch", "4096", "--threads", "1"]),
    ("score criteo-like batch 4096, 2 threads", ["bench", "--batch", "4096", "--threads", "2"]),
    ("train criteo-like batch 256, 2 threads", ["bench-train", "--batch", "256", "--threads", "2"]),
]


def rate(binary, args, seconds):
    out = subprocess.run(
        [binary, *args, "--seconds", str(seconds), "--json"],
        check=True, capture_output=True, text=True,
    ).stdout
    line = [l for l in out.splitlines() if l.startswith("{")][-1]
    data = json.loads(line)
    for key in ("samples_per_second", "samples_per_sec", "throughput"):
        if key in data:
            return float(data[key])
    raise SystemExit(f"no throughput in {line}")


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--before", required=True)
    p.add_argument("--after", required=True)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--seconds", type=float, default=2.0)
    a = p.parse_args()
    ratios = {name: [] for name, _ in CASES}
    rates = {name: ([], []) for name, _ in CASES}
    for r in range(a.rounds):
        for name, args in CASES:
            order = [("before", a.before), ("after", a.after)]
            if r % 2:
                order.reverse()
            got = {}
            for label, binary in order:
                got[label] = rate(binary, args, a.seconds)
            rates[name][0].append(got["before"])
            rates[name][1].append(got["after"])
            ratios[name].append(got["after"] / got["before"])
            print(f"round {r + 1} {name}: before {got['before']:.0f}/s after {got['after']:.0f}/s "
                  f"ratio {got['after'] / got['before']:.3f}", file=sys.stderr)
    print("| case | before (median samples/s) | after | median of per-round ratios after/before | range |")
    print("|---|---|---|---|---|")
    for name, _ in CASES:
        rs = ratios[name]
        print(f"| {name} | {statistics.median(rates[name][0]):,.0f} | "
              f"{statistics.median(rates[name][1]):,.0f} | {statistics.median(rs):.3f} | "
              f"{min(rs):.3f}-{max(rs):.3f} |")


if __name__ == "__main__":
    main()
