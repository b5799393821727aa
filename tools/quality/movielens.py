#!/usr/bin/env python3
"""Rating quality of `deepfm train --ratings` as a new user runs it, on random splits.

For each seed: split the MovieLens ratings at random 80/20 (Python's `random.Random(seed)`),
train with `deepfm train --ratings TRAIN [--users U --items I] [FLAGS...]` (nothing but the
data unless flags are given after `--`), and measure the held-out 20% with `deepfm eval`
(RMSE of predictions clamped to the rating range). The test part is never shown to training;
the validation loss printed is the one training chose its epoch by (cut from the 80%).

    python3 tools/quality/movielens.py --data ../shared/data/ml-1m --side --seeds 7,8 [-- --dropout 0.5]

Prints one line per run and, with several seeds, the mean; `--json` adds a JSON line per run.
`--quantized` also evaluates copies made by `deepfm quantize` (`--mlp int8`, `--table
f16|bf16|int8|int4`, both int8) on the same test part: the RMSE each precision costs.
Standard library only; expects `target/release/deepfm` (cargo build --release).
"""

import argparse
import json
import os
import random
import re
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))


def ratings_file(data):
    for name in ("ratings.dat", "u.data"):
        path = os.path.join(data, name)
        if os.path.exists(path):
            return path
    sys.exit(f"{data}: no ratings.dat or u.data")


def side_files(data):
    pairs = [("users.dat", "movies.dat"), ("u.user", "u.item")]
    for users, items in pairs:
        u, i = os.path.join(data, users), os.path.join(data, items)
        if os.path.exists(u) and os.path.exists(i):
            return u, i
    sys.exit(f"{data}: no users.dat/movies.dat or u.user/u.item")


def split(path, seed, test_fraction, out_dir):
    """Writes train.tsv and test.tsv (user, item, rating) and returns their paths."""
    with open(path, encoding="latin-1") as f:
        rows = [re.split(r"::|\t", line.strip())[:3] for line in f if line.strip()]
    order = list(range(len(rows)))
    random.Random(seed).shuffle(order)
    cut = int(len(rows) * test_fraction)
    paths = []
    for name, idx in (("train.tsv", order[cut:]), ("test.tsv", order[:cut])):
        p = os.path.join(out_dir, name)
        with open(p, "w") as f:
            f.writelines("\t".join(rows[k]) + "\n" for k in idx)
        paths.append(p)
    return paths


# The copies `--quantized` evaluates: (name, `deepfm quantize` options).
QUANTIZED = (("mlp-int8", ["--mlp", "int8"]), ("table-f16", ["--table", "f16"]),
             ("table-bf16", ["--table", "bf16"]), ("table-int8", ["--table", "int8"]),
             ("table-int4", ["--table", "int4"]),
             ("mlp-int8+table-int8", ["--mlp", "int8", "--table", "int8"]))


def run(binary, args, seed, flags, work):
    train, test = split(ratings_file(args.data), seed, args.test_fraction, work)
    model = os.path.join(work, "m.dfm")
    cmd = [binary, "train", "--ratings", train, "--out", model, "--json"]
    if args.side:
        users, items = side_files(args.data)
        cmd += ["--users", users, "--items", items]
    cmd += flags
    started = time.time()
    done = subprocess.run(cmd, capture_output=True, text=True)
    seconds = time.time() - started
    if done.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed:\n{done.stderr[-3000:]}")
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    ev = subprocess.run([binary, "eval", "--model", model, "--ratings", test],
                        capture_output=True, text=True, check=True).stdout
    m = re.search(r"RMSE ([0-9.]+)\s+MAE ([0-9.]+)", ev)
    quantized = {}
    for name, option in (QUANTIZED if args.quantized else ()):
        copy = os.path.join(work, f"{name}.dfm")
        subprocess.run([binary, "quantize", "--in", model, "--out", copy, *option, "--force"],
                       capture_output=True, text=True, check=True)
        out = subprocess.run([binary, "eval", "--model", copy, "--ratings", test],
                             capture_output=True, text=True, check=True).stdout
        quantized[name] = float(re.search(r"RMSE ([0-9.]+)", out).group(1))
    return {
        "data": os.path.basename(os.path.normpath(args.data)),
        "side": args.side,
        "seed": seed,
        "flags": " ".join(flags),
        "rmse": float(m.group(1)),
        "mae": float(m.group(2)),
        "best_valid_loss": summary.get("best_valid_loss"),
        "best_epoch": summary.get("best_epoch"),
        "epochs": summary.get("epochs"),
        "seconds": round(seconds, 1),
        "quantized_rmse": quantized,
    }


def main():
    argv = sys.argv[1:]
    flags = []
    if "--" in argv:
        cut = argv.index("--")
        argv, flags = argv[:cut], argv[cut + 1:]
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", required=True, help="ml-100k or ml-1m folder")
    p.add_argument("--side", action="store_true", help="--users and --items side features")
    p.add_argument("--seeds", default="7", help="split seeds, comma-separated")
    p.add_argument("--test-fraction", type=float, default=0.2)
    p.add_argument("--binary", default=os.path.join(ROOT, "target", "release", "deepfm"))
    p.add_argument("--json", action="store_true")
    p.add_argument("--quantized", action="store_true",
                   help="also evaluate the model's --mlp int8 and --table f16/bf16/int8/int4 copies")
    args = p.parse_args(argv)
    results = []
    for seed in [int(s) for s in args.seeds.split(",")]:
        with tempfile.TemporaryDirectory(prefix="deepfm-quality-") as work:
            r = run(args.binary, args, seed, flags, work)
        results.append(r)
        print(f"{r['data']} {'side' if r['side'] else 'ids'} seed {seed}: test RMSE {r['rmse']:.4f} "
              f"MAE {r['mae']:.4f}, validation loss {r['best_valid_loss']}, epoch "
              f"{r['best_epoch']} of {r['epochs']}, {r['seconds']} s  [{r['flags']}]", flush=True)
        for name, rmse in r["quantized_rmse"].items():
            print(f"  {name}: test RMSE {rmse:.4f} ({rmse - r['rmse']:+.4f})", flush=True)
        if args.json:
            print(json.dumps(r), flush=True)
    if len(results) > 1:
        mean = lambda k: sum(r[k] for r in results) / len(results)
        print(f"mean over {len(results)} seeds: test RMSE {mean('rmse'):.4f} MAE {mean('mae'):.4f}, "
              f"{mean('seconds'):.1f} s")


if __name__ == "__main__":
    main()
