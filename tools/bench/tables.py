#!/usr/bin/env python3
"""Scoring speed of one model with its embedding rows in f32, f16, bf16 and int8 (and int8 rows
with the int8 MLP), interleaved: every round runs every file in turn, alternating the order, and
the table gives the median per-round ratio to f32 (this VM drifts 10-30% between minutes).

    cargo build --release
    python3 tools/bench/tables.py [--shape criteo-like] [--rounds 5] [--seconds 1.5]

Standard library only; writes its model files to a temporary directory.
"""

import argparse
import json
import statistics
import subprocess
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def run(*args):
    return subprocess.run(args, check=True, capture_output=True, text=True).stdout


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--deepfm", default=str(ROOT / "target/release/deepfm"))
    p.add_argument("--shape", default="criteo-like")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--seconds", type=float, default=1.5)
    p.add_argument("--batches", default="1,4096")
    a = p.parse_args()
    d = a.deepfm
    with tempfile.TemporaryDirectory() as tmp:
        base = f"{tmp}/f32.dfm"
        run(d, "random", "--shape", a.shape, "--out", base)
        models = {"f32": base}
        for name, flags in [
            ("f16", ["--table", "f16"]),
            ("bf16", ["--table", "bf16"]),
            ("int8", ["--table", "int8"]),
            ("int8 rows + int8 MLP", ["--table", "int8", "--mlp", "int8"]),
        ]:
            out = f"{tmp}/{len(models)}.dfm"
            said = run(d, "quantize", "--in", base, "--out", out, *flags)
            print(f"{name}: {said.strip().splitlines()[-1]}")
            models[name] = out
        print(f"cpu: {run('lscpu').split('Model name:')[1].splitlines()[0].strip()}")
        print(f"load average (1 min): {open('/proc/loadavg').read().split()[0]}")
        print("\n| batch | table | per sample | / f32 |\n|---|---|---|---|")
        for batch in [int(b) for b in a.batches.split(",")]:
            speed = {name: [] for name in models}
            for r in range(a.rounds):
                order = list(models) if r % 2 == 0 else list(reversed(models))
                for name in order:
                    out = run(d, "bench", "--model", models[name], "--batch", str(batch),
                              "--threads", "1", "--seconds", str(a.seconds), "--json")
                    line = [x for x in out.splitlines() if x.startswith("{")][-1]
                    speed[name].append(json.loads(line)["samples_per_sec"])
            for name, v in speed.items():
                ratio = statistics.median(x / y for x, y in zip(v, speed["f32"]))
                m = statistics.median(v)
                shown = f"{1e6 / m:.1f} µs" if batch == 1 else f"{m:,.0f}/s"
                print(f"| {batch} | {name} | {shown} | {ratio:.2f} |")


if __name__ == "__main__":
    main()
