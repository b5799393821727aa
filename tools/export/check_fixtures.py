"""Re-derive every interop fixture's predictions with plain numpy (float64) and compare.

    /tmp/venv-interop/bin/python tools/export/check_fixtures.py [fixture dir ...]

Needs only numpy (no torch, no DeepCTR, no CoreRec; model.safetensors is parsed by
fixture_common.py). For each fixture under tests/fixtures/interop/ it loads model.safetensors +
description.json, recomputes the predictions for batch.json from the raw tensors following each
framework's own forward pass step by step (nothing folded), and prints max |numpy - framework|.
Exits 1 if any difference exceeds 1e-5.

It also maps raw.tsv (the first 50 batch rows with raw tokens and raw numbers) through
description.json's "vocabularies" (token -> id, unknown -> "oov", a multi-valued feature split on
its "sep" and 0-padded) and "numeric" entries (empty -> fill_na, ln(1 + max(v, 0)) if log1p,
v * scale + shift in float64, rounded to float32) and requires exactly batch.json's ids and, for a
numeric entry, batch.json's float32 value within RAW_NUMERIC_MAX_ULPS float32 steps (the max is
printed; every other value exactly) (vocabularies.check_raw_tsv); a fixture with vocabularies or
numeric entries must have a raw.tsv.

This file is the executable specification of the math a Rust importer must follow:
`deepctr_forward` for DeepCTR-Torch's DeepFM, `corerec_forward` for CoreRec's DeepFM.
"""

import json
import os
import sys

import numpy as np

import fixture_common  # tools/export/fixture_common.py (this script's folder is on sys.path)
import vocabularies  # tools/export/vocabularies.py

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
FIXTURES = os.path.join(REPO, "tests", "fixtures", "interop")
TOLERANCE = 1e-5
RAW_NUMERIC_MAX_ULPS = 1  # FuxiCTR: v * (1/s) + (-m/s) vs its (v - m) / s; DeepCTR fixtures: exact


def sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def batch_norm_eval(h, W, prefix, eps):
    """BatchNorm1d in eval mode: running statistics, (h - mean) / sqrt(var + eps) * gamma + beta."""
    mean, var = W[prefix + "running_mean"], W[prefix + "running_var"]
    gamma, beta = W[prefix + "weight"], W[prefix + "bias"]
    return (h - mean) / np.sqrt(var + eps) * gamma + beta


# ---------------------------------------------------------------------------------------------
# DeepCTR-Torch DeepFM (deepctr_torch/models/deepfm.py, basemodel.py, inputs.py, layers/*.py)
# ---------------------------------------------------------------------------------------------

def deepctr_ids(values):
    """DeepCTR feeds every input through one float32 matrix (np.concatenate -> .float()) and takes
    ids back with .long(): ids must be exactly representable in float32 (< 2**24)."""
    ids = np.asarray(values, dtype=np.int64)
    assert (np.abs(ids) < 2 ** 24).all(), "ids >= 2**24 are not exact in DeepCTR's float32 input"
    return ids


def deepctr_lookup(table, fc, features):
    """Embedding of one SparseFeat or pooled VarLenSparseFeat column: [B, dim] for a table [V, dim].

    VarLenSparseFeat with length_name None (SequencePoolingLayer, supports_masking=True): the mask is
    id != 0 position by position (not a length prefix: a 0 anywhere is skipped), then
      sum:  sum over positions of emb * mask
      mean: that sum / (number of non-zero ids + 1e-8)  -> 0 for an all-padding list
      max:  max over positions of (emb - (1 - mask) * 1e9)  -> -1e9 (garbage) for an all-padding list
    With a length_name the mask is position < length instead (ids of 0 inside the length count).
    """
    if fc["type"] == "SparseFeat":
        return table[deepctr_ids(features[fc["name"]])]
    assert fc["type"] == "VarLenSparseFeat"
    name = fc["sparsefeat"]["name"]
    seq = deepctr_ids(features[name])  # [B, maxlen], padding id 0 included
    assert seq.shape[1] == fc["maxlen"]
    emb = table[seq]  # [B, L, dim]
    if fc["length_name"] is None:
        mask = (seq != 0).astype(np.float64)
    else:
        lengths = deepctr_ids(features[fc["length_name"]]).reshape(-1, 1)
        mask = (np.arange(seq.shape[1])[None, :] < lengths).astype(np.float64)
    count = mask.sum(axis=1, keepdims=True)  # [B, 1]
    mask = mask[:, :, None]
    combiner = fc["combiner"]
    if combiner == "max":
        return (emb - (1.0 - mask) * 1e9).max(axis=1)
    pooled = (emb * mask).sum(axis=1)
    if combiner == "mean":
        pooled = pooled / (count + 1e-8)
    else:
        assert combiner == "sum", combiner
    return pooled


def by_type(columns):
    """DeepCTR always processes columns grouped by type, each group in column order."""
    sparse = [c for c in columns if c["type"] == "SparseFeat"]
    varlen = [c for c in columns if c["type"] == "VarLenSparseFeat"]
    dense = [c for c in columns if c["type"] == "DenseFeat"]
    return sparse, varlen, dense


def embedding_name(fc):
    return (fc["sparsefeat"] if fc["type"] == "VarLenSparseFeat" else fc)["embedding_name"]


def dense_value(fc, features):
    """A DenseFeat's values as [B, dimension] (float32 in the framework; exact in float64)."""
    v = np.asarray(features[fc["name"]], dtype=np.float32).astype(np.float64)
    return v.reshape(len(v), fc["dimension"])


def activation(h, name, W, prefix):
    if name == "relu":
        return np.maximum(h, 0.0)
    if name == "sigmoid":
        return sigmoid(h)
    if name == "linear":
        return h
    if name == "prelu":  # nn.PReLU(): one shared slope
        a = W[prefix + "weight"]
        return np.where(h >= 0, h, a * h)
    # "dice" cannot be built by DeepFM: DNN passes dice_dim=3 and Dice then asserts a 3-D input.
    raise NotImplementedError(f"DNN activation {name!r}")


def deepctr_forward(W, desc, features):
    """logit = linear + FM + dnn_linear(DNN(...)); y = logit + out.bias; sigmoid for "binary"."""
    # -- linear part (BaseModel.linear_model, a deepctr Linear): 1-wide tables keyed by embedding_name
    l_sparse, l_varlen, l_dense = by_type(desc["linear_feature_columns"])
    n = len(next(iter(features.values())))
    linear = np.zeros((n, 1))
    weights = [deepctr_lookup(W[f"linear_model.embedding_dict.{embedding_name(fc)}.weight"], fc, features)
               for fc in l_sparse + l_varlen]  # each [B, 1]; varlen ones pooled with their combiner
    if weights:
        linear += np.concatenate(weights, axis=1).sum(axis=1, keepdims=True)
    if l_dense:
        dense_in = np.concatenate([dense_value(fc, features) for fc in l_dense], axis=1)
        linear += dense_in @ W["linear_model.weight"]  # [B, sum(dimension)] @ [sum(dimension), 1]

    # -- embeddings of the DNN columns (BaseModel.embedding_dict, D-wide tables keyed by embedding_name)
    d_sparse, d_varlen, d_dense = by_type(desc["dnn_feature_columns"])
    embedded = [deepctr_lookup(W[f"embedding_dict.{embedding_name(fc)}.weight"], fc, features)
                for fc in d_sparse + d_varlen]  # sparse first, then varlen (pooled); each [B, D]
    dense_values = [dense_value(fc, features) for fc in d_dense]
    logit = linear

    # -- FM over the embedded fields only (dense values take no part): 0.5 * sum_d((sum_f e)^2 - sum_f e^2)
    if desc["use_fm"] and embedded:
        e = np.stack(embedded, axis=1)  # [B, F, D]
        logit = logit + 0.5 * (e.sum(axis=1) ** 2 - (e * e).sum(axis=1)).sum(axis=1, keepdims=True)

    # -- DNN: input = [sparse embeddings..., pooled varlen embeddings..., dense values...] (field-major)
    hidden = desc["dnn_hidden_units"]
    if hidden and desc["dnn_feature_columns"]:
        h = np.concatenate(embedded + dense_values, axis=1)
        for i in range(len(hidden)):
            h = h @ W[f"dnn.linears.{i}.weight"].T + W[f"dnn.linears.{i}.bias"]
            if desc["dnn_use_bn"]:
                h = batch_norm_eval(h, W, f"dnn.bn.{i}.", desc["bn_eps"])
            h = activation(h, desc["dnn_activation"], W, f"dnn.activation_layers.{i}.")
            # dropout: identity in eval mode
        logit = logit + h @ W["dnn_linear.weight"].T  # [B, 1]; dnn_linear has no bias

    # -- PredictionLayer: the only bias of the model, then sigmoid for binary (regression: raw)
    y = logit + W["out.bias"]
    if desc["task"] == "binary":
        y = sigmoid(y)
    return y.reshape(-1)


# ---------------------------------------------------------------------------------------------
# CoreRec DeepFM (corerec/engines/deepfm.py: FMLayer + DeepFMModel)
# ---------------------------------------------------------------------------------------------

def corerec_forward(W, desc, features):
    """output = first_order + second_order + deep; sigmoid when use_sigmoid (implicit task)."""
    x = np.stack([np.asarray(features[f], dtype=np.int64) for f in desc["field_names"]], axis=1)  # [B, F]
    dims = np.asarray(desc["field_dims"])
    assert ((x >= 0) & (x < dims)).all(), "per-field index out of range"
    g = x + W["fm_layer.offsets"].reshape(1, -1)  # global rows of the two shared tables
    first = W["fm_layer.embedding.weight"][g][:, :, 0].sum(axis=1)  # [B]
    e = W["fm_layer.feature_embedding.weight"][g]  # [B, F, D]
    second = 0.5 * (e.sum(axis=1) ** 2 - (e ** 2).sum(axis=1)).sum(axis=1)  # [B]
    h = e.reshape(len(x), -1)  # field-major flatten: [f0 d0..d(D-1), f1 d0.., ...]
    for i in range(len(desc["hidden_layers"])):
        h = h @ W[f"deep_layers.{i}.0.weight"].T + W[f"deep_layers.{i}.0.bias"]  # Linear
        h = batch_norm_eval(h, W, f"deep_layers.{i}.1.", desc["bn_eps"])  # BatchNorm1d
        h = np.maximum(h, 0.0)  # ReLU; Dropout: identity in eval mode
    deep = (h @ W["output_layer.weight"].T + W["output_layer.bias"])[:, 0]  # output layer has a bias
    out = first + second + deep
    return sigmoid(out) if desc["use_sigmoid"] else out


# ---------------------------------------------------------------------------------------------

FORWARD = {"deepctr-torch": deepctr_forward, "corerec": corerec_forward}


def framework_of(fixture):
    with open(os.path.join(fixture, "description.json"), encoding="utf-8") as f:
        return json.load(f).get("framework")


def check(fixture):
    desc, batch = fixture_common.read_fixture(fixture)
    W = fixture_common.load_safetensors(os.path.join(fixture, "model.safetensors"))
    pred = FORWARD[desc["framework"]](W, desc, batch["features"])
    expected = np.asarray(batch["predictions"], dtype=np.float32).astype(np.float64)
    assert len(pred) == len(expected) == batch["rows"]
    diff = np.abs(pred - expected)
    return float(diff.max()), float(np.abs(expected).max()), int(diff.argmax())


def check_raw(fixture):
    """(ok, message) for raw.tsv against the vocabularies and batch.json."""
    name = os.path.basename(os.path.normpath(fixture))
    with open(os.path.join(fixture, "description.json"), encoding="utf-8") as f:
        desc = json.load(f)
    needs_raw = "vocabularies" in desc or "numeric" in desc
    if not os.path.isfile(os.path.join(fixture, "raw.tsv")):
        return not needs_raw, f"{name:20s} no raw.tsv" + (
            "  FAIL (the description has vocabularies / numeric entries)" if needs_raw else "")
    try:
        rows, oov, ulps = vocabularies.check_raw_tsv(fixture, max_ulps=RAW_NUMERIC_MAX_ULPS)
    except (AssertionError, ValueError, TypeError) as e:
        return False, f"{name:20s} raw.tsv FAIL: {e}"
    hits = {k: v for k, v in oov.items() if v}
    numeric = (f"; numeric entries on {len(ulps)} features, max {max(ulps.values())} float32 steps from "
               f"batch.json's values" if ulps else "")
    return True, (f"{name:20s} raw.tsv: {rows} rows map through the vocabularies to batch.json's values{numeric}  ok"
                  + (f" (tokens at oov: {hits})" if hits else ""))


def main(argv):
    dirs = argv or sorted(os.path.join(FIXTURES, d) for d in os.listdir(FIXTURES)
                          if os.path.isfile(os.path.join(FIXTURES, d, "description.json")))
    worst = 0.0
    raw_ok = True
    for d in dirs:
        ok, message = check_raw(d)
        raw_ok &= ok
        print(message)
        if framework_of(d) not in FORWARD:  # fixtures of other frameworks have their own checks
            print(f"{os.path.basename(os.path.normpath(d)):20s} skipped (framework {framework_of(d)!r} is not "
                  f"re-implemented here)")
            continue
        max_diff, max_abs, at = check(d)
        worst = max(worst, max_diff)
        status = "ok" if max_diff <= TOLERANCE else "FAIL"
        print(f"{os.path.basename(os.path.normpath(d)):20s} max |numpy f64 - framework| = {max_diff:.3e} "
              f"(row {at}; max |prediction| {max_abs:.4g})  {status}")
    return 0 if worst <= TOLERANCE and raw_ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
