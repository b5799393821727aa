"""Training throughput of deepfm against PyTorch, interleaved in one run.

For every round, shape and batch size this runs `deepfm bench-train` (batch norm on, lazy Adam
for the embeddings, dense Adam for the rest, BCE for the Criteo-like shape and MSE for the
MovieLens-like one) and then `train_torch.py` with both PyTorch optimizer set-ups (dense Adam
everywhere; SparseAdam for the embedding tables + Adam for the rest), same architecture, batch
size and thread count. The ratio of a round is deepfm over the faster PyTorch set-up; the table
shows the median over rounds, since this machine drifts by 10-30% between runs.

    tools/peers/.venv/bin/python tools/peers/train_compare.py --rounds 3 --seconds 4
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
DEEPFM = os.path.join(ROOT, "target", "release", "deepfm")


def ours(shape, batch, threads, seconds):
    out = subprocess.run(
        [DEEPFM, "bench-train", "--shape", shape, "--batch", str(batch), "--threads",
         str(threads), "--seconds", str(seconds), "--bn", "--json"],
        check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])["samples_per_sec"]


def torch_runs(shape, batch, threads, seconds):
    out = subprocess.run(
        [sys.executable, os.path.join(HERE, "train_torch.py"), "--shape", shape, "--batch",
         str(batch), "--threads", str(threads), "--seconds", str(seconds), "--json"],
        check=True, capture_output=True, text=True).stdout
    rows = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    return {r["optim"]: r["samples_per_s"] for r in rows}, rows[0]["version"]


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--seconds", type=float, default=4.0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--shapes", default="criteo-like,movielens-like")
    p.add_argument("--batches", default="256,4096")
    p.add_argument("--pause", type=float, default=1.0, help="seconds between runs")
    args = p.parse_args()
    if not os.path.exists(DEEPFM):
        sys.exit(f"{DEEPFM} is missing: run `cargo build --release` first")
    cells = [(s, int(b)) for s in args.shapes.split(",") for b in args.batches.split(",")]
    results = {cell: [] for cell in cells}
    version = "?"
    for r in range(args.rounds):
        for shape, batch in cells:
            mine = ours(shape, batch, args.threads, args.seconds)
            time.sleep(args.pause)
            theirs, version = torch_runs(shape, batch, args.threads, args.seconds)
            time.sleep(args.pause)
            results[(shape, batch)].append((mine, theirs))
            best = max(theirs.values())
            print(f"round {r + 1} {shape} batch {batch}: deepfm {mine:,.0f}, torch dense "
                  f"{theirs.get('dense', 0):,.0f}, sparse {theirs.get('sparse', 0):,.0f} "
                  f"-> {mine / best:.2f}x", file=sys.stderr, flush=True)
    print(f"\nPyTorch {version}, {args.threads} threads, median of {args.rounds} rounds "
          "(samples/s; ratio = deepfm / faster PyTorch set-up, median of per-round ratios)\n")
    print("| shape | batch | deepfm | PyTorch dense Adam | PyTorch SparseAdam | ratio |")
    print("|---|---|---|---|---|---|")
    for shape, batch in cells:
        runs = results[(shape, batch)]
        med = lambda xs: statistics.median(xs)
        mine = med([m for m, _ in runs])
        dense = med([t.get("dense", 0.0) for _, t in runs])
        sparse = med([t.get("sparse", 0.0) for _, t in runs])
        ratio = med([m / max(t.values()) for m, t in runs])
        print(f"| {shape} | {batch} | {mine:,.0f} | {dense:,.0f} | {sparse:,.0f} | {ratio:.2f} |")


if __name__ == "__main__":
    main()
