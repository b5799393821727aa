#!/usr/bin/env python3
"""Training-throughput peer: the `deepfm` architecture trained with PyTorch (eager, CPU).

What it measures: training samples per second (forward + BCE loss + backward + optimizer
step) of a DeepFM with exactly our architecture, on synthetic data, at a fixed thread count.
samples/s = steps * batch / elapsed wall time (time.perf_counter), after a few warm-up steps.
Data generation and model construction are off the clock.

How the model matches the Rust crate (src/reference.rs, src/spec.rs, src/fixtures.rs):
  * Shapes: `criteo_like()` = 13 numeric + 26 categorical fields, 1,000,000 table rows in all,
    D = 16, hidden 400-400-400; `movielens_like()` = user (6,040) + item (3,706), D = 32,
    hidden 256-128-64. Vocabularies are computed exactly as fixtures.rs does.
  * One stacked embedding table [rows, D] and one first-order weight table [rows] (one
    nn.Embedding each), every field owning a slice at its row offset (`ModelSpec::row_offsets`);
    a numeric field owns one row, scaled by the value (embedding and first-order weight alike).
    Plus a global bias.
  * FM: bias + sum of first-order terms + 0.5 * sum_d((sum_f e_fd)^2 - sum_f e_fd^2).
  * Deep: MLP over the concatenated field embeddings [B, F*D]; each hidden layer is
    Linear -> BatchNorm1d (--bn, default on) -> ReLU -> Dropout(--dropout, default 0), then
    Linear(last, 1). Logit = FM + deep. (Our scorer folds BatchNorm into the Linear layers,
    so at inference the hidden layers are Linear -> ReLU, as in reference.rs.)
  * Loss: BCEWithLogitsLoss (mean) on Bernoulli(0.25) labels, for both shapes. (Movielens-like
    is a clamped linear rating model when scored; the loss choice does not change the cost.)
  * Optimizers: `dense` = one torch.optim.Adam (lr 1e-3) over all parameters, dense embedding
    gradients (every step updates the whole table); `sparse` = nn.Embedding(sparse=True) with
    torch.optim.SparseAdam on the two tables and Adam on the rest.
  * Initialisation as `TrainConfig::default()` in src/train/config.rs for the tables
    (embeddings N(0, 0.01^2), first-order weights 0); PyTorch defaults for the layers.
  * Inputs are per-field local ids ([B, n_categorical] int64) and numeric values
    ([B, n_numeric] float32); the row offsets are added inside the model, on the clock.

Data: categorical ids uniform in 0..vocab per field, numeric values uniform in [0, 3), labels
Bernoulli(0.25); `--data-batches` distinct batches generated up front from `--seed` and cycled.

`--check` trains a tiny model on a learnable synthetic problem and asserts the loss falls
(each optimizer, BN on and off), and checks the FM term against an explicit pairwise sum.
See README.md beside this file for setup and the commands used for the comparison.
"""
import argparse
import json
import os
import sys
import time

import numpy as np
import torch
from torch import nn

SHAPES = ("criteo-like", "movielens-like")
OPTIMS = ("dense", "sparse")


# ----------------------------------------------------------------------------- shapes
def criteo_like():
    """src/fixtures.rs `criteo_like()`: 13 numeric + 26 categorical, 1,000,000 rows, D=16."""
    numeric, categorical = 13, 26
    vocabs = [1000 + 997 * i for i in range(categorical)]
    rest = 1_000_000 - numeric - sum(vocabs)
    vocabs[0] += rest // 2
    vocabs[1] += rest - rest // 2
    fields = [("numeric", 1)] * numeric + [("categorical", v) for v in vocabs]
    return {"fields": fields, "dim": 16, "hidden": [400, 400, 400]}


def movielens_like():
    """src/fixtures.rs `movielens_like()`: user (6,040) + item (3,706) ids, D=32."""
    return {"fields": [("categorical", 6040), ("categorical", 3706)], "dim": 32,
            "hidden": [256, 128, 64]}


def tiny():
    """A small mixed shape for --check."""
    return {"fields": [("categorical", 20), ("numeric", 1), ("categorical", 30),
                       ("categorical", 10), ("numeric", 1)], "dim": 4, "hidden": [16, 8]}


SHAPE_FNS = {"criteo-like": criteo_like, "movielens-like": movielens_like, "tiny": tiny}


# ----------------------------------------------------------------------------- the model
class DeepFM(nn.Module):
    """DeepFM over one stacked embedding table; see the module docstring."""

    def __init__(self, shape, bn=True, dropout=0.0, sparse=False):
        super().__init__()
        fields, self.D = shape["fields"], shape["dim"]
        self.F = len(fields)
        rows = [1 if kind == "numeric" else vocab for kind, vocab in fields]
        offsets = np.concatenate([[0], np.cumsum(rows)[:-1]]).astype(np.int64)
        self.total_rows = int(sum(rows))
        self.cat = [i for i, (kind, _) in enumerate(fields) if kind == "categorical"]
        self.num = [i for i, (kind, _) in enumerate(fields) if kind == "numeric"]
        # Global rows are gathered as [B, F] in field order: the categorical fields' ids plus
        # their offsets, and each numeric field's one row. The two groups are concatenated
        # (numeric first when all numeric fields come first, as in criteo-like); otherwise
        # `order` permutes the concatenation back into field order.
        self.register_buffer("cat_offsets", torch.from_numpy(offsets[self.cat]))
        self.register_buffer("num_rows", torch.from_numpy(offsets[self.num]))
        self.num_first = bool(self.num and self.cat and max(self.num) < min(self.cat))
        groups = self.num + self.cat if self.num_first else self.cat + self.num
        order = np.argsort(np.array(groups, dtype=np.int64), kind="stable")
        self.register_buffer("order", torch.from_numpy(order))
        self.in_order = bool((order == np.arange(self.F)).all())

        self.embedding = nn.Embedding(self.total_rows, self.D, sparse=sparse)
        self.first_order = nn.Embedding(self.total_rows, 1, sparse=sparse)
        self.bias = nn.Parameter(torch.zeros(1))
        # As src/train/config.rs `TrainConfig::default()` (irrelevant to the timing).
        nn.init.normal_(self.embedding.weight, std=0.01)
        nn.init.zeros_(self.first_order.weight)

        layers, width = [], self.F * self.D
        for h in shape["hidden"]:
            layers.append(nn.Linear(width, h))
            if bn:
                layers.append(nn.BatchNorm1d(h))
            layers.append(nn.ReLU())
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            width = h
        layers.append(nn.Linear(width, 1))
        self.mlp = nn.Sequential(*layers)

    def rows_and_scale(self, cat_ids, num_vals):
        """Global table rows [B, F] and per-(sample, field) scale [B, F] (None: all ones)."""
        batch = cat_ids.shape[0] if self.cat else num_vals.shape[0]
        parts, scales = [], []
        if self.cat:
            parts.append(cat_ids + self.cat_offsets)
            if self.num:
                scales.append(torch.ones(batch, len(self.cat), dtype=num_vals.dtype))
        if self.num:
            parts.append(self.num_rows.expand(batch, -1))
            scales.append(num_vals)
        if self.num_first:
            parts.reverse()
            scales.reverse()
        rows = torch.cat(parts, 1) if len(parts) > 1 else parts[0]
        scale = (torch.cat(scales, 1) if len(scales) > 1 else scales[0]) if self.num else None
        if not self.in_order:
            rows, scale = rows[:, self.order], (scale[:, self.order] if scale is not None else None)
        return rows, scale

    def forward(self, cat_ids, num_vals):
        rows, scale = self.rows_and_scale(cat_ids, num_vals)
        e = self.embedding(rows)                      # [B, F, D]
        w = self.first_order(rows).squeeze(-1)        # [B, F]
        if scale is not None:
            e = e * scale.unsqueeze(-1)
            w = w * scale
        s = e.sum(1)
        fm = self.bias + w.sum(1) + 0.5 * (s * s - (e * e).sum(1)).sum(1)
        deep = self.mlp(e.reshape(e.shape[0], self.F * self.D)).squeeze(-1)
        return fm + deep


def make_optimizers(model, optim, lr=1e-3):
    if optim == "dense":
        return [torch.optim.Adam(model.parameters(), lr=lr)]
    tables = [model.embedding.weight, model.first_order.weight]
    ids = {id(p) for p in tables}
    rest = [p for p in model.parameters() if id(p) not in ids]
    return [torch.optim.SparseAdam(tables, lr=lr), torch.optim.Adam(rest, lr=lr)]


# ----------------------------------------------------------------------------- data
def make_data(model, shape, batch, n_batches, seed):
    """`n_batches` random batches as (cat_ids, num_vals, labels) tensors."""
    rng = np.random.default_rng(seed)
    fields = shape["fields"]
    vocab = np.array([fields[f][1] for f in model.cat], dtype=np.int64)
    data = []
    for _ in range(n_batches):
        cat = rng.integers(0, vocab, size=(batch, len(vocab))) if len(vocab) else \
            np.zeros((batch, 0), np.int64)
        num = rng.random((batch, len(model.num)), dtype=np.float32) * np.float32(3)
        y = (rng.random(batch) < 0.25).astype(np.float32)
        data.append((torch.from_numpy(cat), torch.from_numpy(num), torch.from_numpy(y)))
    return data


# ----------------------------------------------------------------------------- training
def train_step(model, optimizers, loss_fn, cat, num, y):
    for opt in optimizers:
        opt.zero_grad(set_to_none=True)
    loss = loss_fn(model(cat, num), y)
    loss.backward()
    for opt in optimizers:
        opt.step()
    return loss


def measure(shape_name, batch, optim, args):
    shape = SHAPE_FNS[shape_name]()
    torch.manual_seed(args.seed)
    model = DeepFM(shape, bn=args.bn, dropout=args.dropout, sparse=(optim == "sparse"))
    model.train()
    optimizers = make_optimizers(model, optim)
    loss_fn = nn.BCEWithLogitsLoss()
    data = make_data(model, shape, batch, args.data_batches, args.seed)
    for i in range(args.warmup):
        train_step(model, optimizers, loss_fn, *data[i % len(data)])
    steps, start = 0, time.perf_counter()
    while True:
        loss = train_step(model, optimizers, loss_fn, *data[steps % len(data)])
        steps += 1
        elapsed = time.perf_counter() - start
        if elapsed >= args.seconds:
            break
    if not torch.isfinite(loss):
        raise RuntimeError(f"{shape_name} batch {batch} {optim}: loss is {loss.item()}")
    return {"peer": "pytorch", "version": torch.__version__, "shape": shape_name,
            "batch": batch, "threads": torch.get_num_threads(), "optim": optim,
            "bn": args.bn, "dropout": args.dropout,
            "samples_per_s": round(steps * batch / elapsed, 1), "steps": steps,
            "seconds": round(elapsed, 3)}


# ----------------------------------------------------------------------------- --check
def fm_explicit(model, cat, num):
    """bias + first order + sum over field pairs f < g of <e_f, e_g>, written out."""
    rows, scale = model.rows_and_scale(cat, num)
    e = model.embedding(rows)
    w = model.first_order(rows).squeeze(-1)
    if scale is not None:
        e, w = e * scale.unsqueeze(-1), w * scale
    pair = sum((e[:, f] * e[:, g]).sum(1)
               for f in range(model.F) for g in range(f + 1, model.F))
    return model.bias + w.sum(1) + pair


def check(args):
    """Sanity checks on a tiny model; raises AssertionError on failure."""
    shape = tiny()
    # FM term: the 0.5 * ((sum e)^2 - sum e^2) trick equals the explicit pairwise sum.
    torch.manual_seed(0)
    model = DeepFM(shape, bn=False).double()
    nn.init.normal_(model.embedding.weight, std=0.5)
    nn.init.normal_(model.first_order.weight, std=0.5)
    nn.init.zeros_(model.mlp[-1].weight)
    nn.init.zeros_(model.mlp[-1].bias)  # deep part = 0, so the logit is the FM term alone
    cat, num, _ = make_data(model, shape, 64, 1, seed=1)[0]
    num = num.double()
    with torch.no_grad():
        got, want = model(cat, num), fm_explicit(model, cat, num)
    err = (got - want).abs().max().item()
    assert err < 1e-12, f"FM term differs from the explicit pairwise sum by {err}"
    print(f"check: FM term matches the explicit pairwise sum (max |diff| {err:.1e})")

    # Row gather: global rows and scales against a per-field loop, for interleaved and
    # numeric-first field orders; and the benchmark shapes' table sizes.
    for fields in (shape["fields"], [("numeric", 1)] * 2 + [("categorical", 5)] * 3):
        m = DeepFM({"fields": fields, "dim": 2, "hidden": [3]})
        cat, num, _ = make_data(m, {"fields": fields}, 16, 1, seed=2)[0]
        rows, scale = m.rows_and_scale(cat, num)
        offset, k_cat, k_num = 0, 0, 0
        for f, (kind, vocab) in enumerate(fields):
            if kind == "categorical":
                assert torch.equal(rows[:, f], cat[:, k_cat] + offset)
                assert scale is None or bool((scale[:, f] == 1).all())
                k_cat += 1
            else:
                assert bool((rows[:, f] == offset).all()) and torch.equal(scale[:, f], num[:, k_num])
                k_num += 1
            offset += 1 if kind == "numeric" else vocab
    rows = sum(1 if kind == "numeric" else v for kind, v in criteo_like()["fields"])
    assert rows == 1_000_000, rows
    print("check: row offsets and scales match a per-field loop; criteo-like has 1,000,000 rows")

    # Learnable problem: labels from a hidden logistic model over the same fields.
    rng = np.random.default_rng(7)
    n, batch, steps = 2048, 128, 50
    data = make_data(DeepFM(shape), shape, n, 1, seed=3)[0]
    cat_all, num_all = data[0], data[1]
    w_cat = [rng.normal(0, 1.5, size=shape["fields"][f][1]) for f in range(len(shape["fields"]))
             if shape["fields"][f][0] == "categorical"]
    logit = sum(w[cat_all[:, k].numpy()] for k, w in enumerate(w_cat))
    logit = logit + (num_all.numpy() - 1.5) @ rng.normal(0, 1, size=num_all.shape[1])
    y_all = torch.from_numpy((rng.random(n) < 1 / (1 + np.exp(-logit))).astype(np.float32))
    loss_fn = nn.BCEWithLogitsLoss()
    for optim in OPTIMS:
        for bn in (True, False):
            torch.manual_seed(0)
            model = DeepFM(shape, bn=bn, dropout=args.dropout, sparse=(optim == "sparse"))
            model.train()
            optimizers = make_optimizers(model, optim, lr=1e-2)
            losses = []
            for step in range(steps):
                lo = (step * batch) % n
                sl = slice(lo, lo + batch)
                loss = train_step(model, optimizers, loss_fn, cat_all[sl], num_all[sl], y_all[sl])
                losses.append(loss.item())
            first, last = np.mean(losses[:5]), np.mean(losses[-5:])
            print(f"check: optim={optim:6} bn={str(bn):5} loss {first:.4f} -> {last:.4f} "
                  f"over {steps} steps")
            assert np.isfinite(last) and last < 0.9 * first, \
                f"loss did not decrease enough (optim={optim}, bn={bn}): {first} -> {last}"
    print("check: ok")


# ----------------------------------------------------------------------------- main
def table(results):
    head = ("shape", "batch", "threads", "optim", "bn", "dropout", "steps", "seconds",
            "samples/s")
    rows = [(r["shape"], r["batch"], r["threads"], r["optim"], "on" if r["bn"] else "off",
             r["dropout"], r["steps"], f"{r['seconds']:.2f}", f"{r['samples_per_s']:,.0f}")
            for r in results]
    widths = [max(len(str(x)) for x in col) for col in zip(head, *rows)]
    for row in [head, *rows]:
        print("  ".join(str(x).rjust(w) for x, w in zip(row, widths)), flush=True)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--shape", nargs="+", choices=SHAPES, default=list(SHAPES))
    p.add_argument("--batch", nargs="+", type=int, default=[256, 4096])
    p.add_argument("--optim", nargs="+", choices=OPTIMS, default=list(OPTIMS),
                   help="dense: Adam on everything; sparse: SparseAdam on the tables (default both)")
    p.add_argument("--threads", type=int, default=2, help="torch.set_num_threads (interop: 1)")
    p.add_argument("--seconds", type=float, default=5.0, help="timed window per configuration")
    p.add_argument("--warmup", type=int, default=5, help="untimed steps first")
    p.add_argument("--bn", action=argparse.BooleanOptionalAction, default=True,
                   help="BatchNorm1d after each hidden Linear (default on)")
    p.add_argument("--dropout", type=float, default=0.0, help="dropout after each hidden ReLU")
    p.add_argument("--data-batches", type=int, default=64, help="distinct batches, cycled")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--json", action="store_true",
                   help="also print one JSON object per configuration, each on its own line")
    p.add_argument("--check", action="store_true",
                   help="only run the sanity checks (tiny model: FM term, loss decreases)")
    args = p.parse_args()
    if any(b < 2 for b in args.batch) and args.bn:
        p.error("BatchNorm in training mode needs batch >= 2 (or pass --no-bn)")

    torch.set_num_threads(args.threads)
    torch.set_num_interop_threads(1)
    if args.check:
        check(args)
        return
    load = os.getloadavg()[0]
    print(f"# pytorch {torch.__version__}, {torch.get_num_threads()} threads "
          f"(interop {torch.get_num_interop_threads()}), {args.seconds} s per configuration, "
          f"load average {load:.2f}", flush=True)
    if load > 0.5:
        print("# warning: the machine is busy; treat these figures as noisy", flush=True)
    results = []
    for shape in args.shape:
        for batch in args.batch:
            for optim in args.optim:
                r = measure(shape, batch, optim, args)
                results.append(r)
                print(f"# {shape} batch {batch} {optim}: {r['samples_per_s']:,.0f} samples/s",
                      file=sys.stderr, flush=True)
    table(results)
    if args.json:
        for r in results:
            print(json.dumps(r), flush=True)


if __name__ == "__main__":
    main()
