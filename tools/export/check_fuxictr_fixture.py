"""Recompute a FuxiCTR DeepFM fixture's predictions in plain numpy (float64) and compare.

    python3 tools/export/check_fuxictr_fixture.py [tests/fixtures/interop/fuxictr-ml100k]

Needs numpy only (model.safetensors is parsed by fixture_common.py: 8-byte little-endian header
length, JSON header, raw little-endian tensors). Reads description.json (FuxiCTR's feature_map.json
+ the model's shape) and batch.json (the inputs exactly as fed to the model and FuxiCTR's
predictions), follows FuxiCTR 2.3.10's DeepFM math, prints the max absolute difference and exits
non-zero if it exceeds --tol (default 1e-5). It also maps raw.tsv (the first 50 batch rows with
FuxiCTR's raw tokens and raw numbers) through description.json's "vocabularies" (token -> index,
unknown -> "oov" = FuxiCTR's __OOV__, a sequence split on its "sep" and post-padded with 0) and
"numeric" entries (FuxiCTR's fill_na, then its StandardScaler / MinMaxScaler as ``v * scale +
shift`` in float64, rounded to float32) and requires batch.json's indices exactly and its float32
numeric inputs within --raw-ulps float32 steps (default 1: ``v * (1/s) + (-m/s)`` is not bit for
bit sklearn's ``(v - m) / s``; the max is printed) (tools/export/vocabularies.py, check_raw_tsv).

FuxiCTR's DeepFM, field by field in feature_map["features"] order (meta features skipped):

* embedding part (FeatureEmbedding, D = embedding_dim, key prefix
  ``embedding_layer.embedding_layer.embedding_layers.<f>.weight``; a share_embedding feature has
  its own key holding the owner's table):
  categorical ``e = E[idx]``; numeric ``e = x * W[:, 0]`` (nn.Linear(1, D, bias=False), W [D, 1]);
  sequence ``MaskedAveragePooling``: ``sum_j E[ids_j] / (#{j : sum_d E[ids_j, d] != 0} + 1e-12)``
  (the mask is inferred from zero vectors; the padding row 0 is zero, so it is the count of
  non-padding ids; all padding gives the zero vector) or ``MaskedSumPooling``: ``sum_j E[ids_j]``.
* first-order part (LogisticRegression: its own 1-wide tables, never shared, key prefix
  ``fm.lr_layer.embedding_layer.embedding_layer.embedding_layers.<f>.weight``):
  categorical ``w[idx, 0]``; numeric ``x * w[0, 0]`` (nn.Linear(1, 1, bias=False));
  sequence ``sum_j w[ids_j, 0]`` (MaskedSumPooling; w[0] = 0 at padding) -- a sum even when the
  embedding part takes the mean. Plus ``fm.lr_layer.bias`` [1].
* FM: ``0.5 * sum_d ((sum_f e_fd)^2 - sum_f e_fd^2)``.
* MLP on concat(e_f) in field order: per hidden layer ``mlp.mlp.<i>`` Linear, BatchNorm1d
  (eval: ``(h - running_mean) / sqrt(running_var + eps) * weight + bias``), ReLU, Dropout (identity
  in eval); last Linear(., 1) with bias. Indices advance by 1 per module in the Sequential.
* ``y = sigmoid(lr_bias + LR + FM + MLP)`` (identity for regression).
"""

import argparse
import os
import sys

import numpy as np

import fixture_common  # tools/export/fixture_common.py (this script's folder is on sys.path)
import vocabularies  # tools/export/vocabularies.py

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
DEFAULT = os.path.join(REPO, "tests", "fixtures", "interop", "fuxictr-ml100k")

def predict(desc, sd, feats):
    model = desc["model"]
    assert model["model"] == "DeepFM", model["model"]
    specs = [next(iter(e.items())) for e in desc["feature_map"]["features"]]
    emb_pre = "embedding_layer.embedding_layer.embedding_layers."
    lr_pre = "fm.lr_layer.embedding_layer.embedding_layer.embedding_layers."
    n = None
    embs, lr = [], 0.0
    mask_disagreements = 0
    for name, spec in specs:
        ftype = spec["type"]
        if ftype == "meta":
            continue
        key = emb_pre + name + ".weight"
        if key not in sd:  # a shared table is stored under both names; fall back to the owner's
            key = emb_pre + spec["share_embedding"] + ".weight"
        E, w = sd[key], sd[lr_pre + name + ".weight"]
        if ftype == "categorical":
            idx = np.asarray(feats[name], dtype=np.int64)
            e = E[idx]
            lr = lr + w[idx, 0]
        elif ftype == "numeric":
            x = np.asarray(feats[name], dtype=np.float32).astype(np.float64)  # the model's .float()
            e = x[:, None] * E[:, 0][None, :]
            lr = lr + x * w[0, 0]
        elif ftype == "sequence":
            ids = np.asarray(feats[name], dtype=np.int64)  # [rows, max_len]
            assert ids.shape[1] == spec["max_len"], (name, ids.shape)
            rows = E[ids]  # [rows, L, D]
            total = rows.sum(axis=1)
            enc = spec.get("feature_encoder")
            if enc == "layers.MaskedAveragePooling()":
                mask = rows.sum(axis=-1) != 0  # FuxiCTR: zero vectors are padding
                pad = spec.get("padding_idx")
                if pad is not None:
                    mask_disagreements += int((mask != (ids != pad)).sum())
                e = total / (mask.sum(axis=1, keepdims=True) + 1e-12)
            elif enc == "layers.MaskedSumPooling()":
                e = total
            else:
                raise ValueError(f"{name}: feature_encoder {enc!r}")
            lr = lr + w[ids, 0].sum(axis=1)  # MaskedSumPooling in the LR part
        else:
            raise ValueError(f"{name}: type {ftype!r}")
        n = len(e)
        embs.append(e)
    emb = np.stack(embs, axis=1)  # [rows, fields, D]
    fm = 0.5 * (emb.sum(axis=1) ** 2 - (emb ** 2).sum(axis=1)).sum(axis=1)

    h = emb.reshape(n, -1)
    i = 0
    for _ in model["hidden_units"]:
        h = h @ sd[f"mlp.mlp.{i}.weight"].T + sd[f"mlp.mlp.{i}.bias"]
        i += 1
        if model["batch_norm"]:
            p = f"mlp.mlp.{i}."
            h = (h - sd[p + "running_mean"]) / np.sqrt(sd[p + "running_var"] + model["bn_eps"]) \
                * sd[p + "weight"] + sd[p + "bias"]
            i += 1
        assert model["hidden_activations"].lower() == "relu"
        h = np.maximum(h, 0.0)
        i += 1
        if model["net_dropout"] > 0:
            i += 1  # Dropout: identity in eval mode
    mlp = (h @ sd[f"mlp.mlp.{i}.weight"].T + sd[f"mlp.mlp.{i}.bias"])[:, 0]
    logit = sd["fm.lr_layer.bias"][0] + lr + fm + mlp
    if model["output_activation"] == "sigmoid":
        return 1.0 / (1.0 + np.exp(-logit)), mask_disagreements
    if model["output_activation"] is None:
        return logit, mask_disagreements
    raise ValueError(model["output_activation"])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("fixture", nargs="?", default=DEFAULT)
    ap.add_argument("--tol", type=float, default=1e-5)
    ap.add_argument("--raw-ulps", type=int, default=1,
                    help="float32 steps allowed between a numeric entry applied to raw.tsv and batch.json")
    args = ap.parse_args()
    desc, batch = fixture_common.read_fixture(args.fixture)
    sd = fixture_common.load_safetensors(os.path.join(args.fixture, "model.safetensors"))
    pred, mask_dis = predict(desc, sd, batch["features"])
    ref = np.asarray(batch["predictions"], dtype=np.float64)
    assert len(pred) == len(ref) == batch["rows"]
    diff = np.abs(pred - ref)
    print(f"{args.fixture}: {len(ref)} rows, max |numpy float64 - FuxiCTR| = {diff.max():.3e} "
          f"(mean {diff.mean():.3e}); predictions in [{ref.min():.4f}, {ref.max():.4f}]; "
          f"sequence positions where the zero-vector mask differs from id != padding_idx: {mask_dis}")
    failed = diff.max() > args.tol
    if failed:
        print(f"FAIL: above tolerance {args.tol}")
    if "vocabularies" in desc or "numeric" in desc or os.path.isfile(os.path.join(args.fixture, "raw.tsv")):
        try:
            rows, oov, ulps = vocabularies.check_raw_tsv(args.fixture, max_ulps=args.raw_ulps)
            print(f"raw.tsv: {rows} rows map through the vocabularies and numeric entries to batch.json's "
                  f"inputs; tokens at oov: {oov}; numeric entries {desc.get('numeric', {})}: max float32 "
                  f"steps from batch.json's values {ulps}")
        except (AssertionError, OSError, ValueError, TypeError) as e:
            print(f"FAIL: raw.tsv: {e}")
            failed = True
    if failed:
        sys.exit(1)


if __name__ == "__main__":
    main()
