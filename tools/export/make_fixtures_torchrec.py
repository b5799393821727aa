"""Train a DeepFM over torchrec EmbeddingBagCollections, sharded with DistributedModelParallel in
2 CPU processes (gloo), and write the torchrec-ml100k interop fixture.

    python3 -m venv /work/venv-torchrec
    /work/venv-torchrec/bin/pip install -r tools/export/requirements-torchrec.txt   # see that file
    /work/venv-torchrec/bin/python tools/export/make_fixtures_torchrec.py

Writes tests/fixtures/interop/torchrec-ml100k/{model.safetensors,description.json,batch.json,raw.tsv};
model.safetensors and description.json through the reusable exporter ``export.torchrec.export``
(tools/export/torchrec.py), from the unsharded model loaded with the gathered state_dict.
MovieLens 100K is read from ../shared/data/ml-100k relative to the repository root (override with
DEEPFM_ML100K=/path/to/ml-100k).

The model (``TorchrecDeepFM`` below) is a standard DeepFM head over torchrec's sparse modules, not
torchrec's own ``torchrec.models.deepfm.SimpleDeepFMNN`` (whose FactorizationMachine squares the sum
of all F x D scalars instead of summing per embedding dimension, and which has no first-order term;
see the README section):

* ``sparse``: an EmbeddingBagCollection of D=8 tables; ``item`` serves the features ``item`` and
  ``prev_item``; ``genres`` is multi-valued (a bag of 1..6 ids, KJT lengths, no padding) and
  mean-pooled, every other feature has one id per row and is sum-pooled.
* ``first_order``: an EmbeddingBagCollection of 1-dim tables ``lr_<table>`` with the same sizes,
  features and pooling.
* ``weighted_sparse`` / ``weighted_first_order``: EmbeddingBagCollection(is_weighted=True), one D=8
  table ``history`` / one 1-dim table ``lr_history`` (1683 rows each, like ``item``; sum-pooled), for
  the weighted feature ``history``: per row the same user's up to 5 previous ratings by timestamp
  (most recent first, ties as prev_item: ``fixture_common.previous_rows``), ids = their items, one
  weight per id = (that rating - 3) / 2 (-1, -0.5, 0, 0.5 or 1); empty for a user's first rating.
  Pooled as sum_i w_i * row_i. It has its own KeyedJaggedTensor with ``weights=`` (a weighted EBC
  reads ``kjt.weights()``); the other features are in the unweighted one, so forward(kjt, wkjt).
* logit = bias + sum_f w_f + 0.5 * sum_d[(sum_f e_fd)^2 - sum_f e_fd^2] + out(mlp(cat_f e_f)),
  f over ``FEATURE_ORDER`` (history last); mlp = (Linear -> BatchNorm1d -> ReLU) x 2, hidden [32, 16];
  prediction = sigmoid(logit).

Why the weighted table is sum-pooled (checked with torch 2.14.1 / fbgemm-gpu-cpu 1.9.0): the
unsharded EBC runs ``nn.EmbeddingBag``, which refuses weighted mean (``NotImplementedError:
embedding_bag: per_sample_weights was not None. per_sample_weights is only supported for
mode='sum' (got mode='mean')``), while fbgemm's TBE (``SplitTableBatchedEmbeddingBagsCodegen``,
the sharded ``fused`` kernel) computes a weighted MEAN as sum_i w_i * row_i / n, n = the number of
ids (not the sum of the weights). A weighted mean-pooled table could be trained sharded but not
evaluated by the unsharded model; sum pooling means the same in both.

Training: ``DistributedModelParallel`` in 2 processes (torch.multiprocessing, gloo, CPU); the plan
puts the 8-dim ``item`` table column-wise (two 4-column shards) and the other 8-dim tables table-wise
(row-wise is not offered on CPU; TORCHREC_SHARDING=table_wise makes item table-wise too); the
weighted ``history`` table has only its kernel fixed (``fused``) and the planner makes it table-wise
(rank 0); the one ``EmbeddingBagCollectionSharder`` shards the weighted collections as it does the
others (no option needed on CPU). The 8-dim tables are trained by torchrec's fused row-wise Adagrad
(``apply_optimizer_in_backward``). The 1-dim tables, ``lr_history`` included, are data_parallel
(fbgemm's fused kernel, the only sharded one on CPU, needs a multiple of 4 columns) and, with the
dense part (DDP-wrapped by DMP), trained by Adam through ``KeyedOptimizerWrapper``.
Each rank takes its own 256 rows per step (TORCHREC_STEPS, default 400; TORCHREC_PORT, default 29531).
The state_dict of the sharded model (ShardedTensors for the tables) is gathered to full tensors on
rank 0 (``ShardedTensor.gather(dst=0, out=...)``), loaded into an unsharded ``TorchrecDeepFM``
(strict), and the predictions are those of the unsharded model in eval mode; they are checked
against the sharded model's predictions for the same rows.

Data as for the other ml-100k fixtures (tools/export/make_fixtures.py): the same permutation, held-out
pool and 1000 batch rows; label rating >= 4; user / item ids as they are; gender F=0 M=1; occupation =
index in the sorted names; genre ids 1..19 (flag k -> k+1); prev_item = the same user's previous
rating's item by timestamp, 0 if none (row 0 of the item table); history as above.

Output formats of history: description.json's history tables carry ``"is_weighted": true`` (the
other tables have no such key; absent = false) and "multi_valued" describes history; batch.json's
features["history"][r] is a list of [id, weight] pairs (the float32 weights as JSON numbers);
raw.tsv's history cell is ``item:weight,item:weight`` (raw item ids, each weight the repr of the
float32 as a Python float, e.g. ``0.5``, ``-1.0``, ``0.0``; empty for an empty list).
"""

import json
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
TOOLS = os.path.dirname(HERE)
REPO = os.path.dirname(TOOLS)
sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != HERE]
sys.path.insert(0, TOOLS)

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.distributed as dist  # noqa: E402
import torch.multiprocessing as mp  # noqa: E402
from torch import nn  # noqa: E402

from export import fixture_common  # noqa: E402
from export import vocabularies  # noqa: E402
from export.torchrec import export as export_torchrec  # noqa: E402

DATA = os.environ.get("DEEPFM_ML100K", os.path.join(os.path.dirname(REPO), "shared", "data", "ml-100k"))
OUT = os.path.join(REPO, "tests", "fixtures", "interop", "torchrec-ml100k")
D = 8
HIDDEN = [32, 16]
BN_EPS = 1e-5
STEPS = int(os.environ.get("TORCHREC_STEPS", "400"))
LOCAL_BATCH = 256
WORLD = 2
SEED = 2024
N_BATCH = 1000
# The 1-dim tables are named "lr_<table>": the planner's constraints are keyed by table name, and
# these need other ones: fbgemm's fused kernel (the only one offered for sharded tables on CPU) wants
# a multiple of 4 columns, so they are data_parallel (replicated, "dense" kernel = nn.EmbeddingBag,
# gradients all-reduced, trained by the dense Adam).
FO_PREFIX = "lr_"
FEATURE_ORDER = ["user", "item", "prev_item", "gender", "occupation", "genres", "history"]
# (table name, num_embeddings, pooling, features)
TABLES = [
    ("user", 944, "sum", ["user"]),
    ("item", 1683, "sum", ["item", "prev_item"]),
    ("gender", 2, "sum", ["gender"]),
    ("occupation", 21, "sum", ["occupation"]),
    ("genres", 20, "mean", ["genres"]),
]
# The weighted collections' tables (EmbeddingBagCollection(is_weighted=True), read through their own
# KeyedJaggedTensor with weights). Sum-pooled: the unsharded EBC's nn.EmbeddingBag refuses weighted
# mean, and fbgemm's sharded kernel divides a weighted mean by the number of ids (docstring).
WEIGHTED_TABLES = [
    ("history", 1683, "sum", ["history"]),
]
WEIGHTED_FEATURES = [f for _, _, _, fs in WEIGHTED_TABLES for f in fs]
UNWEIGHTED_FEATURES = [f for f in FEATURE_ORDER if f not in WEIGHTED_FEATURES]
HISTORY = 5  # history: the same user's up to 5 previous ratings


# ----------------------------------------------------------------------------------------------
# Data
# ----------------------------------------------------------------------------------------------

def load_ml100k():
    r = np.loadtxt(os.path.join(DATA, "u.data"), dtype=np.int64)
    user, item, rating, ts = r.T
    users = [line.rstrip("\n").split("|") for line in open(os.path.join(DATA, "u.user"))]
    gender_vocab = sorted({u[2] for u in users})
    occ_vocab = sorted({u[3] for u in users})
    u_gender = {int(u[0]): gender_vocab.index(u[2]) for u in users}
    u_occ = {int(u[0]): occ_vocab.index(u[3]) for u in users}
    genre_names, genre_flags = fixture_common.ml100k_genres(DATA)
    genres = {i: [k + 1 for k, f in enumerate(flags) if f] for i, flags in genre_flags.items()}
    assert len(r) == 100000 and len(genres) == 1682
    prev_item = fixture_common.previous_items(user, item, ts, 1)[:, 0]
    # history: (item ids, float32 weights (rating - 3) / 2) of the previous ratings, most recent first,
    # in previous_items' order (its first id is prev_item); empty for a user's first rating.
    prev_rows = fixture_common.previous_rows(user, ts, HISTORY)
    assert (np.where(prev_rows[:, 0] >= 0, item[prev_rows[:, 0]], 0) == prev_item).all()
    weight = ((rating - 3) / 2).astype(np.float32)
    history = [([int(item[p]) for p in ps if p >= 0], [weight[p] for p in ps if p >= 0]) for ps in prev_rows]
    feats = {
        "user": user, "item": item, "prev_item": prev_item,
        "gender": np.array([u_gender[x] for x in user]), "occupation": np.array([u_occ[x] for x in user]),
        "genres": [genres[x] for x in item], "history": history,
    }
    label = (rating >= 4).astype(np.float32)
    train, test = fixture_common.held_out_split(user, item, N_BATCH)
    raw = {"gender": gender_vocab, "occupation": occ_vocab, "genres": genre_names, "users": users}
    return feats, label, train, test, raw


def make_kjt(feats, rows):
    """(kjt, weighted_kjt): a KeyedJaggedTensor of the unweighted features (keys in FEATURE_ORDER
    without history; a single-valued feature has length 1 per row, genres one length per row: its ids,
    no padding) and one of the weighted features (history: per row its ids, 0..5 of them, with
    ``weights=`` one float32 per id)."""
    from torchrec.sparse.jagged_tensor import KeyedJaggedTensor
    values, lengths = [], []
    for f in UNWEIGHTED_FEATURES:
        if f == "genres":
            lst = [feats[f][i] for i in rows]
            values.extend(g for x in lst for g in x)
            lengths.extend(len(x) for x in lst)
        else:
            values.extend(int(feats[f][i]) for i in rows)
            lengths.extend([1] * len(rows))
    kjt = KeyedJaggedTensor.from_lengths_sync(
        keys=UNWEIGHTED_FEATURES, values=torch.tensor(values, dtype=torch.int64),
        lengths=torch.tensor(lengths, dtype=torch.int32))
    values, weights, lengths = [], [], []
    for f in WEIGHTED_FEATURES:
        for i in rows:
            ids, ws = feats[f][i]
            values.extend(ids)
            weights.extend(ws)
            lengths.append(len(ids))
    wkjt = KeyedJaggedTensor.from_lengths_sync(
        keys=WEIGHTED_FEATURES, values=torch.tensor(values, dtype=torch.int64),
        lengths=torch.tensor(lengths, dtype=torch.int32),
        weights=torch.tensor(np.array(weights, dtype=np.float32)))
    return kjt, wkjt


# ----------------------------------------------------------------------------------------------
# Model
# ----------------------------------------------------------------------------------------------

def ebc(dim, device=None, prefix="", tables=TABLES, is_weighted=False):
    from torchrec.modules.embedding_configs import EmbeddingBagConfig, PoolingType
    from torchrec.modules.embedding_modules import EmbeddingBagCollection
    pool = {"sum": PoolingType.SUM, "mean": PoolingType.MEAN}
    return EmbeddingBagCollection(tables=[
        EmbeddingBagConfig(name=prefix + n, num_embeddings=m, embedding_dim=dim, feature_names=list(fs), pooling=pool[p])
        for n, m, p, fs in tables], device=device, is_weighted=is_weighted)


class TorchrecDeepFM(nn.Module):
    def __init__(self, device=None):
        super().__init__()
        self.sparse = ebc(D, device)
        self.first_order = ebc(1, device, FO_PREFIX)
        self.weighted_sparse = ebc(D, device, tables=WEIGHTED_TABLES, is_weighted=True)
        self.weighted_first_order = ebc(1, device, FO_PREFIX, tables=WEIGHTED_TABLES, is_weighted=True)
        layers, prev = [], D * len(FEATURE_ORDER)
        for h in HIDDEN:
            layers += [nn.Linear(prev, h), nn.BatchNorm1d(h, eps=BN_EPS), nn.ReLU()]
            prev = h
        self.mlp = nn.Sequential(*layers)
        self.out = nn.Linear(prev, 1)
        self.bias = nn.Parameter(torch.zeros(1))

    def forward(self, kjt, wkjt):
        e = {**self.sparse(kjt).to_dict(), **self.weighted_sparse(wkjt).to_dict()}
        w = {**self.first_order(kjt).to_dict(), **self.weighted_first_order(wkjt).to_dict()}
        emb = torch.stack([e[f] for f in FEATURE_ORDER], dim=1)  # B x F x D
        s = emb.sum(dim=1)
        fm = 0.5 * (s * s - (emb * emb).sum(dim=1)).sum(dim=1, keepdim=True)
        lin = torch.cat([w[f] for f in FEATURE_ORDER], dim=1).sum(dim=1, keepdim=True)
        deep = self.out(self.mlp(emb.flatten(1)))
        return self.bias + lin + fm + deep  # logit, B x 1


# ----------------------------------------------------------------------------------------------
# Sharded training (one process per rank)
# ----------------------------------------------------------------------------------------------

def strip(key):
    for p in ("_dmp_wrapped_module.", "module."):
        while key.startswith(p):
            key = key[len(p):]
    return key


def worker(rank, result_path):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=os.environ.get("TORCHREC_PORT", "29531"))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=WORLD)
    from torchrec.distributed.embeddingbag import EmbeddingBagCollectionSharder
    from torchrec.distributed.model_parallel import DistributedModelParallel
    from torchrec.distributed.planner import EmbeddingShardingPlanner, Topology
    from torchrec.distributed.planner.types import ParameterConstraints
    from torchrec.optim.apply_optimizer_in_backward import apply_optimizer_in_backward
    from torchrec.optim.keyed import KeyedOptimizerWrapper
    from torchrec.optim.optimizers import in_backward_optimizer_filter
    from torchrec.optim.rowwise_adagrad import RowWiseAdagrad
    from torch.distributed._shard.sharded_tensor import ShardedTensor

    feats, label, train, test, _ = load_ml100k()
    torch.manual_seed(SEED)
    model = TorchrecDeepFM()
    apply_optimizer_in_backward(RowWiseAdagrad, [*model.sparse.parameters(), *model.weighted_sparse.parameters()],
                                {"lr": 0.05})
    sharding = os.environ.get("TORCHREC_SHARDING", "mixed")
    # Row-wise is not offered on CPU (the planner allows data_parallel, table_wise, column_wise,
    # table_column_wise there): the 8-dim item table is column-wise sharded (two 4-column shards; with
    # "column_wise" or "table_wise" allowed the planner makes it table-wise once the history table is
    # there), the others table-wise.
    constraints = {n: ParameterConstraints(
        sharding_types=["column_wise"] if (n == "item" and sharding == "mixed") else ["table_wise"],
        min_partition=4, compute_kernels=["fused"]) for n, *_ in TABLES}
    # The weighted 8-dim table: only the kernel is fixed (fused), the planner picks the sharding type
    # (table-wise with TORCHREC_SHARDING=table_wise).
    constraints.update({n: ParameterConstraints(
        sharding_types=None if sharding == "mixed" else ["table_wise"], min_partition=4, compute_kernels=["fused"])
        for n, *_ in WEIGHTED_TABLES})
    constraints.update({FO_PREFIX + n: ParameterConstraints(sharding_types=["data_parallel"], compute_kernels=["dense"])
                        for n, *_ in TABLES + WEIGHTED_TABLES})
    planner = EmbeddingShardingPlanner(topology=Topology(world_size=WORLD, compute_device="cpu"),
                                       constraints=constraints)
    sharders = [EmbeddingBagCollectionSharder()]
    plan = planner.collective_plan(model, sharders, dist.GroupMember.WORLD)
    if rank == 0:
        print(plan, flush=True)
    dmp = DistributedModelParallel(module=model, device=torch.device("cpu"), plan=plan, sharders=sharders)
    dense_opt = KeyedOptimizerWrapper(dict(in_backward_optimizer_filter(dmp.named_parameters())),
                                      lambda params: torch.optim.Adam(params, lr=2e-3))
    # Unsharded tensors (dense part, replicated 1-dim tables) at the start, to show they were trained.
    init = {strip(k): v.detach().clone() for k, v in dmp.state_dict().items() if isinstance(v, torch.Tensor)
            and not isinstance(v, ShardedTensor) and not hasattr(v, "full_tensor")}
    rng = np.random.RandomState(SEED)
    order = train[rng.permutation(len(train))]
    per_step = LOCAL_BATCH * WORLD
    t0 = time.time()
    dmp.train()
    for step in range(STEPS):
        start = (step * per_step) % (len(order) - per_step)
        rows = order[start + rank * LOCAL_BATCH: start + (rank + 1) * LOCAL_BATCH]
        logit = dmp(*make_kjt(feats, rows))
        loss = nn.functional.binary_cross_entropy_with_logits(logit.squeeze(1), torch.from_numpy(label[rows]))
        dense_opt.zero_grad()
        loss.backward()
        dense_opt.step()
        if rank == 0 and (step % 50 == 0 or step == STEPS - 1):
            print(f"step {step} loss {loss.item():.4f} ({time.time() - t0:.1f}s)", flush=True)
    dmp.eval()
    with torch.no_grad():
        sharded_pred = torch.sigmoid(dmp(*make_kjt(feats, test))).squeeze(1)
    # Gather: every rank takes part in each ShardedTensor.gather; rank 0 receives the full tensors.
    full, kinds = {}, {}
    for k, v in dmp.state_dict().items():
        key = strip(k)
        if isinstance(v, ShardedTensor):
            out = torch.zeros(v.size(), dtype=v.dtype) if rank == 0 else None
            v.gather(dst=0, out=out)
            kinds[key] = "ShardedTensor " + ",".join(
                f"rank{s.placement.rank()}:{list(s.shard_offsets)}+{list(s.shard_sizes)}" for s in v.metadata().shards_metadata)
            v = out
        elif hasattr(v, "full_tensor"):  # DTensor
            v = v.full_tensor()
            kinds[key] = "DTensor"
        else:
            kinds[key] = "Tensor"
        if rank == 0:
            full[key] = v.detach().clone()
    if rank == 0:
        moved = {k: (full[k] - init[k]).abs().max().item() for k in full if k in init and full[k].is_floating_point()}
        print("max |trained - initial| per tensor:", {k: f"{v:.3g}" for k, v in moved.items()}, flush=True)
        torch.save({"state_dict": full, "moved": moved, "sharded_pred": sharded_pred, "kinds": kinds, "plan": str(plan),
                    "train_s": time.time() - t0, "final_loss": loss.item()}, result_path)
    dist.barrier()
    dist.destroy_process_group()


# ----------------------------------------------------------------------------------------------
# Export
# ----------------------------------------------------------------------------------------------

def f32_list(t):
    return [float(np.format_float_positional(np.float32(x), unique=True, trim="-")) for x in t]


def main():
    t_start = time.time()
    result_path = os.path.join("/tmp", f"torchrec_fixture_{os.getpid()}.pt")
    mp.spawn(worker, args=(result_path,), nprocs=WORLD, join=True)
    res = torch.load(result_path, weights_only=False)
    os.remove(result_path)
    print(res["plan"])
    feats, label, train, test, raw = load_ml100k()
    torch.manual_seed(SEED)
    model = TorchrecDeepFM()  # the same seed: the ranks' initial tables
    sd = {k: v.contiguous() for k, v in res["state_dict"].items()}
    moved = {k: f"{(sd[k] - v).abs().max().item():.3g}" for k, v in model.state_dict().items()
             if res["kinds"][k].startswith("Sharded")}
    print("max |trained - initial| per sharded table:", moved)
    model.load_state_dict(sd, strict=True)
    model.eval()
    with torch.no_grad():
        pred = torch.sigmoid(model(*make_kjt(feats, test))).squeeze(1)
    diff = (pred - res["sharded_pred"]).abs().max().item()
    print(f"unsharded vs sharded predictions: max |diff| = {diff:.3g}")
    assert diff <= 1e-6, diff

    # model.safetensors + description.json: the reusable exporter (tools/export/torchrec.py) reads the
    # tables off the EmbeddingBagCollections and the head off mlp / out / bias of the loaded model.
    export_torchrec(
        model, OUT, feature_order=FEATURE_ORDER,
        # genres: several ids per row; the weighted history is added by the exporter (default texts).
        multi_valued=["genres"],
        vocabularies={
            "gender": vocabularies.entry({g: i for i, g in enumerate(raw["gender"])}),
            "occupation": vocabularies.entry({o: i for i, o in enumerate(raw["occupation"])}),
            "genres": vocabularies.entry({g: k + 1 for k, g in enumerate(raw["genres"])}, sep="|"),
        },
        extra={
            "model": "make_fixtures_torchrec.TorchrecDeepFM (standard DeepFM head over torchrec "
                     "EmbeddingBagCollections)",
            "training": {"processes": WORLD, "backend": "gloo", "device": "cpu", "steps": STEPS,
                         "local_batch": LOCAL_BATCH, "sharding": {k: v for k, v in res["kinds"].items()
                                                                  if v.startswith(("Sharded", "DTensor"))},
                         "final_loss": round(res["final_loss"], 4)},
        })
    features = {}
    for fname in FEATURE_ORDER:
        if fname == "genres":
            features[fname] = [list(map(int, feats[fname][i])) for i in test]
        elif fname == "history":  # [id, weight] pairs, the weight the float32 the model used
            features[fname] = [[[int(x), float(np.float32(w))] for x, w in zip(*feats[fname][i])] for i in test]
        else:
            features[fname] = [int(feats[fname][i]) for i in test]
    batch = {"rows": N_BATCH, "features": features, "predictions": f32_list(pred.numpy()),
             "produced_by": "torch.sigmoid(model(kjt)) of the unsharded TorchrecDeepFM loaded from the gathered "
                            "state_dict, eval mode, torch.no_grad(); equal (max |diff| "
                            f"{diff:.2g}) to the DistributedModelParallel model's predictions"}
    with open(os.path.join(OUT, "batch.json"), "w") as f:
        json.dump(batch, f, separators=(",", ":"))
        f.write("\n")
    with open(os.path.join(OUT, "raw.tsv"), "w") as f:
        f.write("\t".join(FEATURE_ORDER) + "\n")
        for i in range(vocabularies.RAW_ROWS):
            cells = []
            for fname in FEATURE_ORDER:
                v = features[fname][i]
                if fname == "gender" or fname == "occupation":
                    cells.append(raw[fname][v])
                elif fname == "genres":
                    cells.append("|".join(raw["genres"][g - 1] for g in v))
                elif fname == "history":  # item:weight,..., the weight's text parses back to the float32
                    cells.append(",".join(f"{x}:{float(np.float32(w))!r}" for x, w in v))
                else:
                    cells.append(str(v))
            f.write("\t".join(cells) + "\n")
    print(f"wrote {OUT} ({time.time() - t_start:.1f}s, training {res['train_s']:.1f}s)")


if __name__ == "__main__":
    main()
