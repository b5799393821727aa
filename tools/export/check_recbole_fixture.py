"""Recompute a RecBole DeepFM fixture's predictions in plain numpy (float64) and compare.

    python3 tools/export/check_recbole_fixture.py [tests/fixtures/interop/recbole-ml100k]

Needs numpy only (model.safetensors is parsed by fixture_common.py: 8-byte little-endian header
length, JSON header, raw little-endian tensors). Reads description.json (written by
tools/export/recbole.py: the fields in RecBole's concatenation order, each with its tensor names
and row offsets, the MLP shape) and batch.json (the inputs exactly as fed to the model and
RecBole's predictions), follows RecBole 1.2.1's DeepFM math, prints the max absolute difference and
exits non-zero if it exceeds --tol (default 1e-5). It also maps raw.tsv (the first 50 batch rows
with RecBole's raw tokens and the raw age) through description.json's "vocabularies" (token -> id,
a token_seq split on its "sep", empty pieces dropped, right-padded with 0) and "numeric" entries
(RecBole's mean fill and min-max normalisation as ``v * scale + shift`` in float64, rounded to
float32) and requires batch.json's ids exactly and its float32 values within --raw-ulps float32
steps (default 0) (tools/export/vocabularies.py, check_raw_tsv, with the feature order taken from
description["fields"]).

RecBole's DeepFM (recbole/model/context_aware_recommender/deepfm.py, abstract_recommender.py
ContextRecommender, layers.py FMEmbedding / FLEmbedding / FMFirstOrderLinear /
BaseFactorizationMachine / MLPLayers), fields in description["fields"] order (all token_seq fields,
then all token fields, then all float fields), D = embedding_size:

* embedding of a field (``T = sd[field.embedding.tensor]``, ``o = field.embedding.offset``):
  token ``e = T[o + id]``; float ``e = v * T[o + index]`` (index 1: RecBole's input is the pair
  (v, 1.0); no bias); token_seq ``e = sum_{j: id_j != 0} T[id_j] / (count + 1e-8)`` (mean over the
  non-padding ids; the eps vanishes in float32 for count >= 1 and gives 0 for all padding; here in
  float64 the division is by ``count`` and an all-padding list gives 0).
* first order (``w = sd[field.first_order.tensor]``, same offsets): token ``w[o + id]``; float
  ``v * w[o + index]``; token_seq ``sum_{j: id_j != 0} w[id_j]`` (a SUM, while the embedding
  takes the mean); plus ``first_order_linear.bias`` once.
* FM: ``0.5 * sum_d ((sum_f e_fd)^2 - sum_f e_fd^2)``.
* MLP on ``concat(e_f)`` (field order, each D wide): per hidden layer Dropout (identity in eval),
  Linear, ReLU (also after the last hidden layer); then ``deep_predict_layer`` Linear(., 1) with
  its bias.
* ``y = sigmoid(first + fm + deep)``.
"""

import argparse
import os
import sys

import numpy as np

import fixture_common  # tools/export/fixture_common.py (this script's folder is on sys.path)
import vocabularies  # tools/export/vocabularies.py

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
DEFAULT = os.path.join(REPO, "tests", "fixtures", "interop", "recbole-ml100k")

def predict(desc, sd, feats):
    assert desc["framework"] == "recbole" and desc["model"] == "DeepFM", (desc["framework"], desc["model"])
    D = desc["embedding_size"]
    n = len(next(iter(feats.values())))
    embs, first = [], np.zeros(n)
    for f in desc["fields"]:
        T, o = sd[f["embedding"]["tensor"]], f["embedding"]["offset"]
        w, ow = sd[f["first_order"]["tensor"]][:, 0], f["first_order"]["offset"]
        assert T.shape[1] == D
        x = feats[f["name"]]
        if f["type"] == "token":
            ids = np.asarray(x, dtype=np.int64)
            assert ids.min() >= 0 and ids.max() < f["vocab"], f["name"]
            embs.append(T[o + ids])
            first += w[ow + ids]
        elif f["type"] == "float":
            v = np.asarray(x, dtype=np.float32).astype(np.float64)  # the float32 input
            embs.append(v[:, None] * T[o + f["index"]][None, :])
            first += v * w[ow + f["index"]]
        elif f["type"] == "token_seq":
            ids = np.asarray(x, dtype=np.int64)
            assert ids.shape == (n, f["max_len"]) and ids.min() >= 0 and ids.max() < f["vocab"], f["name"]
            mask = (ids != f["padding_id"]).astype(np.float64)
            cnt = mask.sum(axis=1)
            assert f["pooling"] == "mean" and f["first_order_pooling"] == "sum"
            summed = (T[o + ids] * mask[:, :, None]).sum(axis=1)
            embs.append(np.where(cnt[:, None] > 0, summed / np.maximum(cnt, 1.0)[:, None], 0.0))
            first += (w[ow + ids] * mask).sum(axis=1)
        else:
            raise ValueError(f"field {f['name']}: type {f['type']!r}")
    E = np.stack(embs, axis=1)  # [n, fields, D]
    first += sd[desc["first_order_bias"]][0]
    fm = 0.5 * (E.sum(axis=1) ** 2 - (E ** 2).sum(axis=1)).sum(axis=1)
    h = E.reshape(n, -1)
    assert not desc["batch_norm"] and desc["activation"] == "relu" and desc["last_activation"]
    assert len(desc["mlp_linear_layers"]) == len(desc["mlp_hidden_size"])
    for prefix in desc["mlp_linear_layers"]:
        h = np.maximum(h @ sd[prefix + ".weight"].T + sd[prefix + ".bias"], 0.0)
    out = desc["output_layer"]
    deep = (h @ sd[out + ".weight"].T + sd[out + ".bias"])[:, 0]
    logit = first + fm + deep
    assert desc["output_activation"] == "sigmoid"
    return 1.0 / (1.0 + np.exp(-logit))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("fixture", nargs="?", default=DEFAULT)
    ap.add_argument("--tol", type=float, default=1e-5)
    ap.add_argument("--raw-ulps", type=int, default=0,
                    help="float32 steps allowed between a numeric entry applied to raw.tsv and batch.json")
    args = ap.parse_args()
    desc, batch = fixture_common.read_fixture(args.fixture)
    sd = fixture_common.load_safetensors(os.path.join(args.fixture, "model.safetensors"))
    assert list(batch["features"]) == [f["name"] for f in desc["fields"]], "batch features not in field order"
    pred = predict(desc, sd, batch["features"])
    ref = np.asarray(batch["predictions"], dtype=np.float64)
    assert len(pred) == len(ref) == batch["rows"]
    diff = np.abs(pred - ref)
    print(f"{args.fixture}: {len(ref)} rows, max |numpy float64 - RecBole| = {diff.max():.3e} "
          f"(mean {diff.mean():.3e}); predictions in [{ref.min():.4f}, {ref.max():.4f}]")
    failed = diff.max() > args.tol
    if failed:
        print(f"FAIL: above tolerance {args.tol}")
    # vocabularies.check_raw_tsv knows the feature order of the other frameworks' descriptions;
    # RecBole's is description["fields"].
    orig = vocabularies._feature_order
    vocabularies._feature_order = fixture_common.feature_order_with_recbole(orig)
    try:
        rows, oov, ulps = vocabularies.check_raw_tsv(args.fixture, max_ulps=args.raw_ulps)
        print(f"raw.tsv: {rows} rows map through the vocabularies and numeric entries to batch.json's "
              f"inputs; tokens at oov: {oov}; numeric entries {desc.get('numeric', {})}: max float32 "
              f"steps from batch.json's values {ulps}")
    except (AssertionError, OSError, ValueError, TypeError) as e:
        print(f"FAIL: raw.tsv: {e}")
        failed = True
    finally:
        vocabularies._feature_order = orig
    if failed:
        sys.exit(1)


if __name__ == "__main__":
    main()
