#!/usr/bin/env python3
"""Paired comparison of the service's dispatch modes at batch 1, against the setup's floor.

Each round runs, one after the other and in the same conditions: GET /health at the same
rate (no model work at all: HTTP, the loopback TCP stack, oha and the scheduler, which is
the floor any scoring service on this machine sits on), then POST /score with batch-1 bodies
for each dispatch mode, each on a fresh service with the reloads of `run.py`. Every run is
printed; then the median over rounds per configuration (this machine's timings drift by
10-30% between runs, so only figures from one invocation are compared).

Besides oha's client-side percentiles, each row shows the service's own p50/p99 (bucket
bounds of its /metrics histogram, handler start to response ready), the mean requests per
scoring pass of the batched dispatch, and the CPU the hypervisor stole from this VM meanwhile.

    python3 tools/load/compare.py --rounds 3 --seconds 10
    python3 tools/load/compare.py --rounds 3 --seconds 10 --dispatches batched,blocking,inline
"""

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import run  # noqa: E402  (the load-test helpers beside this file)

HEADER = ("| round | run | p50 ms | p99 ms | p99.9 ms | service p50 ms ≤ | service p99 ms ≤ | "
          "requests per pass | service CPU µs/request | oha cores | steal cores | "
          "other cores | non-2xx + errors | reloads ok |\n"
          "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")


def fmt(x, spec):
    return "—" if x is None else format(x, spec)


def row(round_, name, r):
    reloads_ok = sum(1 for s, _, _ in r["reloads"] if s == 200)
    print(f"| {round_} | {name} | {r['p50_ms']:.3f} | {r['p99_ms']:.3f} | {r['p999_ms']:.3f} | "
          f"{fmt(r['server_p50_ms'], '.2f')} | {fmt(r['server_p99_ms'], '.2f')} | "
          f"{fmt(r['requests_per_pass'], '.2f')} | {r['server_cpu_us_per_request']:.0f} | "
          f"{r['oha_cores']:.2f} | {r['steal_cores']:.3f} | {r['other_cores']:.2f} | "
          f"{r['non_2xx'] + r['errors'] + r.get('server_non_2xx', 0)} | "
          f"{reloads_ok}/{len(r['reloads'])} |", flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=10, help="planned length of each run")
    ap.add_argument("--rate", type=int, default=5000, help="requests per second")
    ap.add_argument("--connections", type=int, default=16)
    ap.add_argument("--reloads", type=int, default=4, help="reloads during each /score run")
    ap.add_argument("--dispatches", default="batched,blocking",
                    help="comma-separated --dispatch values of deepfm-serve, each optionally "
                         "followed by more of its flags: 'batched --scorers 1,inline --threads 1'")
    ap.add_argument("--workdir", help="where models and bodies go (default: a temporary directory)")
    args = ap.parse_args()

    deepfm, serve, _ = run.build()
    oha = run.find_oha()
    work = args.workdir or tempfile.mkdtemp(prefix="deepfm-compare-")
    os.makedirs(work, exist_ok=True)
    dispatches = args.dispatches.split(",")
    results = {name: [] for name in ["GET /health (floor)"] + dispatches}
    bad = 0
    try:
        a, b = os.path.join(work, "criteo-a.dfm"), os.path.join(work, "criteo-b.dfm")
        for path, seed in ((a, 1), (b, 2)):
            subprocess.run([deepfm, "random", "--shape", "criteo-like", "--out", path,
                            "--seed", str(seed)], check=True, capture_output=True)
        bodies = os.path.join(work, "criteo-1.jsonl")
        run.write_bodies(run.spec_of(deepfm, a), 1, 20_000, bodies, seed=1)
        requests = int(args.rate * args.seconds)
        print(f"load1 {os.getloadavg()[0]:.2f}; {args.rate:,} req/s, {requests:,} requests "
              f"per run, {args.connections} connections; oha and the service share this "
              f"machine's cores.\n")
        print(HEADER)
        for round_ in range(1, args.rounds + 1):
            plan = [("GET /health (floor)", "batched", "health", 0)]
            plan += [(d, d, "score", args.reloads) for d in dispatches]
            for name, config, endpoint, reloads in plan:
                dispatch, *flags = config.split()
                server = run.Server(serve, a, [f"--dispatch={dispatch}", *flags])
                try:
                    # Warm-up (page in the model, grow the scratch), not measured.
                    run.run_load(oha, server, bodies, args.rate, max(args.rate // 4, 50),
                                 args.connections, [a], 0, endpoint=endpoint)
                    r = run.run_load(oha, server, bodies, args.rate, requests,
                                     args.connections, [a, b], reloads, endpoint=endpoint)
                    r["server_non_2xx"] = run.server_non_2xx(server)
                finally:
                    server.stop()
                bad += r["non_2xx"] + r["errors"] + r["server_non_2xx"]
                bad += sum(1 for s, _, _ in r["reloads"] if s != 200)
                results[name].append(r)
                row(round_, name, r)
        print(f"\nMedians over {args.rounds} rounds:\n")
        print("| run | p50 ms | p99 ms | p99.9 ms | service p99 ms ≤ | requests per pass | "
              "service CPU µs/request | steal cores |\n|---|---|---|---|---|---|---|---|")
        for name, rs in results.items():
            def med(key):
                values = [r[key] for r in rs if r[key] is not None]
                return statistics.median(values) if values else None
            print(f"| {name} | {med('p50_ms'):.3f} | {med('p99_ms'):.3f} | "
                  f"{med('p999_ms'):.3f} | {fmt(med('server_p99_ms'), '.2f')} | "
                  f"{fmt(med('requests_per_pass'), '.2f')} | "
                  f"{med('server_cpu_us_per_request'):.0f} | {med('steal_cores'):.3f} |")
    finally:
        if not args.workdir:
            shutil.rmtree(work, ignore_errors=True)
    if bad:
        print(f"FAILED: {bad} non-2xx responses, errors or failed reloads")
        sys.exit(1)


if __name__ == "__main__":
    main()
