#!/usr/bin/env python3
"""Scoring speed of one model in every precision: embedding rows in f32, f16, bf16, int8 and
int4, the int8 MLP, and int8 rows with the int8 MLP; interleaved: every round runs every file in
turn, alternating the order, and the table gives the median per-round ratio to f32 (this VM
drifts 10-30% between minutes), the bytes of one embedding row, and the score difference from
f32 that `deepfm quantize` measured on 20,000 random samples (a random model's embeddings are
uniform noise: trained models lose less, see docs/PERFORMANCE.md).

    cargo build --release
    python3 tools/bench/tables.py [--shape criteo-like] [--rounds 5] [--seconds 1.5]

Standard library only; writes its model files to a temporary directory.
"""

import argparse
import json
import re
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
        differences = {"f32": "0 / 0"}
        row_bytes = {}
        for name, flags in [
            ("f16", ["--table", "f16"]),
            ("bf16", ["--table", "bf16"]),
            ("int8", ["--table", "int8"]),
            # A random model's 4-bit rows exceed `quantize`'s default tolerance: forced.
            ("int4", ["--table", "int4", "--force"]),
            ("f32 rows + int8 MLP", ["--mlp", "int8"]),
            ("int8 rows + int8 MLP", ["--table", "int8", "--mlp", "int8"]),
        ]:
            out = f"{tmp}/{len(models)}.dfm"
            said = run(d, "quantize", "--in", base, "--out", out, *flags).strip().splitlines()
            print(f"{name}: {said[-1]}")
            diff = [x for x in said if x.startswith("score difference")]
            found = re.search(r"max ([0-9.e+-]+), mean ([0-9.e+-]+)", diff[0]) if diff else None
            differences[name] = f"{float(found[1]):.1e} / {float(found[2]):.1e}" if found else ""
            rows = re.search(r"\((\d+) → (\d+) bytes a row\)", said[-1])
            if rows:
                row_bytes.setdefault("f32", rows[1])
            row_bytes[name] = rows[2] if rows else row_bytes.get("f32", "")
            models[name] = out
        print(f"cpu: {run('lscpu').split('Model name:')[1].splitlines()[0].strip()}")
        print(f"load average (1 min): {open('/proc/loadavg').read().split()[0]}")
        print("\n| batch | precision | per sample | / f32 | bytes a row | max / mean \\|Δp\\| vs f32 |"
              "\n|---|---|---|---|---|---|")
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
                print(f"| {batch} | {name} | {shown} | {ratio:.2f} | {row_bytes[name]} | "
                      f"{differences[name]} |")


if __name__ == "__main__":
    main()
