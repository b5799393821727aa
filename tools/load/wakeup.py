#!/usr/bin/env python3
"""How late a sleeping thread wakes up on this machine: the scheduling floor under any
latency figure measured here. Sleeps 200 µs in a loop for --seconds and prints percentiles of
the lateness (time slept minus time asked for). Standard library only.

    python3 tools/load/wakeup.py --seconds 10
"""

import argparse
import time


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=10)
    ap.add_argument("--sleep-us", type=float, default=200)
    args = ap.parse_args()
    asked = args.sleep_us * 1e-6
    late = []
    end = time.perf_counter() + args.seconds
    while time.perf_counter() < end:
        t = time.perf_counter()
        time.sleep(asked)
        late.append(time.perf_counter() - t - asked)
    late.sort()
    n = len(late)
    pct = "  ".join(f"p{q * 100:g} {late[min(n - 1, int(q * n))] * 1e3:.3f}"
                    for q in (0.5, 0.9, 0.99, 0.999))
    print(f"{n:,} sleeps of {args.sleep_us:g} µs; late by (ms): {pct}  max {late[-1] * 1e3:.3f}")


if __name__ == "__main__":
    main()
