"""From a training cluster to serving, at scale: what each step after torchrec training costs
for one large table, measured on this machine.

It writes a gathered torchrec-style state dict (what `make_fixtures_torchrec.py` exports after
`DistributedModelParallel` training, here with random weights) whose `item` table has
`--rows` rows of D = 16, plus the fixture's small tables and a 400-400-400 head, then times:

1. export: writing the gathered state dict with safetensors (`safetensors.numpy.save_file`);
2. import: `deepfm import --from torchrec` into one model file (peak memory from /usr/bin/time);
3. install: `deepfm install NEW LIVE` (validates every checksum, copies beside LIVE, renames);
4. open: `deepfm inspect` (what a replica's reload does: map, validate, pack the MLP);
5. score: `deepfm bench` at batch 1 and 4096 on one thread, ids uniform over every row.

Usage (about 4 minutes and 3 x 6.8 GB of disk for 100M rows):
    python3 tools/bench/cluster_scale.py --deepfm target/release/deepfm --rows 100000000 --dir /tmp/scale
Needs numpy and safetensors (tools/peers/requirements.txt).
"""
import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time

import numpy as np
from safetensors.numpy import save_file

D = 16
HIDDEN = [400, 400, 400]
SMALL = {"user": 944, "gender": 2, "occupation": 21}


def run(cmd):
    """Runs `cmd` under /usr/bin/time -v; returns (seconds, peak RSS in MiB, stdout)."""
    t = time.perf_counter()
    p = subprocess.run(["/usr/bin/time", "-v"] + [str(c) for c in cmd], capture_output=True, text=True)
    seconds = time.perf_counter() - t
    if p.returncode != 0:
        sys.exit(f"{' '.join(map(str, cmd))} failed:\n{p.stdout}\n{p.stderr}")
    rss = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", p.stderr).group(1)) / 1024
    return seconds, rss, p.stdout


def write_model(rows, path, desc_path, seed):
    rng = np.random.default_rng(seed)
    tables = dict(SMALL, item=rows)
    tensors, desc_tables, lr_tables = {}, [], []
    for name, n in tables.items():
        tensors[f"sparse.embedding_bags.{name}.weight"] = rng.standard_normal((n, D), dtype=np.float32) * np.float32(0.05)
        tensors[f"first_order.embedding_bags.lr_{name}.weight"] = rng.standard_normal((n, 1), dtype=np.float32) * np.float32(0.05)
        feats = ["item", "prev_item"] if name == "item" else [name]
        desc_tables.append({"name": name, "num_embeddings": n, "embedding_dim": D, "pooling": "sum",
                            "feature_names": feats, "tensor": f"sparse.embedding_bags.{name}.weight"})
        lr_tables.append({"name": f"lr_{name}", "num_embeddings": n, "embedding_dim": 1, "pooling": "sum",
                          "feature_names": feats, "tensor": f"first_order.embedding_bags.lr_{name}.weight"})
    order = ["user", "item", "prev_item", "gender", "occupation"]
    layers, width = [], len(order) * D
    for i, h in enumerate(HIDDEN):
        lin, bn = f"mlp.{3 * i}", f"mlp.{3 * i + 1}"
        tensors[f"{lin}.weight"] = rng.standard_normal((h, width), dtype=np.float32) / np.float32(np.sqrt(width))
        tensors[f"{lin}.bias"] = np.zeros(h, np.float32)
        tensors[f"{bn}.weight"] = np.ones(h, np.float32)
        tensors[f"{bn}.bias"] = np.zeros(h, np.float32)
        tensors[f"{bn}.running_mean"] = np.zeros(h, np.float32)
        tensors[f"{bn}.running_var"] = np.ones(h, np.float32)
        layers.append({"linear": lin, "batch_norm": bn, "activation": "relu"})
        width = h
    tensors["out.weight"] = rng.standard_normal((1, width), dtype=np.float32) * np.float32(0.05)
    tensors["out.bias"] = np.zeros(1, np.float32)
    tensors["bias"] = np.zeros(1, np.float32)
    t = time.perf_counter()
    save_file(tensors, path)
    export_s = time.perf_counter() - t
    desc = {"framework": "torchrec", "framework_version": "1.9.2", "tables": desc_tables,
            "first_order_tables": lr_tables, "feature_order": order, "multi_valued": {},
            "hidden": HIDDEN, "activation": "relu", "batch_norm": True, "bn_eps": 1e-5,
            "mlp_layers": layers, "output_layer": "out", "global_bias": "bias", "output": "sigmoid"}
    with open(desc_path, "w") as f:
        json.dump(desc, f)
    return export_s


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--deepfm", default="target/release/deepfm")
    ap.add_argument("--rows", type=int, default=100_000_000)
    ap.add_argument("--dir", default="/tmp/cluster-scale")
    ap.add_argument("--seconds", type=float, default=5.0)
    args = ap.parse_args()
    os.makedirs(args.dir, exist_ok=True)
    weights, desc = os.path.join(args.dir, "model.safetensors"), os.path.join(args.dir, "description.json")
    new, live = os.path.join(args.dir, "new.dfm"), os.path.join(args.dir, "live.dfm")
    gib = lambda p: os.path.getsize(p) / 2**30
    print(f"rows {args.rows:,}, D {D}, head {HIDDEN}; cpu: {cpu()}")
    export_s = write_model(args.rows, weights, desc, 7)
    print(f"export (safetensors.numpy.save_file of the gathered state dict): {export_s:.1f} s, {gib(weights):.2f} GiB")
    s, rss, _ = run([args.deepfm, "import", "--from", "torchrec", "--weights", weights, "--description", desc, "--out", new])
    print(f"import (deepfm import --from torchrec): {s:.1f} s, peak RSS {rss:.0f} MiB, {gib(new):.2f} GiB")
    os.remove(weights)
    if os.path.exists(live):
        os.remove(live)
    s, rss, _ = run([args.deepfm, "install", new, live])
    print(f"install (deepfm install, every checksum): {s:.1f} s, peak RSS {rss:.0f} MiB")
    s, rss, _ = run([args.deepfm, "inspect", live])
    print(f"open (deepfm inspect: map, validate, pack): {s * 1000:.0f} ms, peak RSS {rss:.0f} MiB")
    for batch in (1, 4096):
        _, rss, out = run([args.deepfm, "bench", "--model", live, "--batch", batch, "--threads", 1,
                           "--seconds", args.seconds, "--json"])
        r = json.loads(out.strip().splitlines()[-1])
        print(f"score batch {batch}, 1 thread: {1e6 / r['samples_per_sec']:.2f} us/sample, peak RSS {rss:.0f} MiB")
    shutil.rmtree(args.dir)


def cpu():
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return "?"


if __name__ == "__main__":
    main()
