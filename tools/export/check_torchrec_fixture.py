"""Recompute tests/fixtures/interop/torchrec-ml100k's predictions in float64 numpy from the fixture
files alone (model.safetensors read by hand in fixture_common.py, description.json, batch.json) and check them against
batch.json's predictions (max |diff| <= 1e-5); also map raw.tsv through the vocabularies and require
batch.json's ids for its rows (here and with vocabularies.check_raw_tsv). numpy only:

    python3 tools/export/check_torchrec_fixture.py [fixture_dir]

The math (the executable specification of description.json's "logit"), F = feature_order:

    e_f  = pool(table(f)[ids_f])           pool = sum or mean over the row's ids (KJT lengths, no
    w_f  = pool(first_order_table(f)[ids_f])      padding; single-valued features have one id)
           a feature of "is_weighted" tables (history): its row is a list of [id, weight] pairs,
           pool = sum_i w_i * row_i (a weighted mean, which the fixture does not use, would divide
           that by the number of ids, as fbgemm does); an empty list pools to 0
    fm   = 0.5 * sum_d[(sum_f e_fd)^2 - sum_f e_fd^2]
    h    = concat(e_f for f in F)                    (B x F*D, feature-major)
    h    = relu(bn(linear(h))) per mlp layer        bn(x) = (x - mean) / sqrt(var + eps) * w + b
    p    = sigmoid(bias + sum_f w_f + fm + out(h))
"""

import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.dirname(HERE))
from export import fixture_common  # noqa: E402  (numpy only)
from export import vocabularies  # noqa: E402  (standard library only)


def predict(t, desc, features, rows):
    def tables_by_feature(tables):
        m = {}
        for tb in tables:
            w = t[tb["tensor"]].astype(np.float64)
            assert w.shape == (tb["num_embeddings"], tb["embedding_dim"]), (tb["name"], w.shape)
            for f in tb["feature_names"]:
                m[f] = (w, tb["pooling"], tb.get("is_weighted", False))
        return m

    def pooled(m, f):
        w, pooling, weighted = m[f]
        assert pooling in ("sum", "mean"), pooling
        out = []
        for v in features[f][:rows]:
            if weighted:  # [[id, weight], ...], possibly empty
                ids = np.array([int(p[0]) for p in v], dtype=np.int64)
                ws = np.array([float(p[1]) for p in v], dtype=np.float64)
                x = (ws[:, None] * w[ids]).sum(axis=0) if len(v) else np.zeros(w.shape[1])
                out.append(x / len(v) if pooling == "mean" and len(v) else x)
                continue
            ids = v if isinstance(v, list) else [v]
            assert len(ids) > 0
            x = w[np.array(ids, dtype=np.int64)].sum(axis=0)
            out.append(x / len(ids) if pooling == "mean" else x)
        return np.stack(out)

    emb_t, fo_t = tables_by_feature(desc["tables"]), tables_by_feature(desc["first_order_tables"])
    order = desc["feature_order"]
    for f in order:  # a weighted feature's first-order table is weighted too
        assert emb_t[f][2] == fo_t[f][2], f
    e = np.stack([pooled(emb_t, f) for f in order], axis=1)  # B x F x D
    lin = sum(pooled(fo_t, f)[:, 0] for f in order)
    s = e.sum(axis=1)
    fm = 0.5 * (s * s - (e * e).sum(axis=1)).sum(axis=1)
    h = e.reshape(e.shape[0], -1)
    g = lambda name: t[name].astype(np.float64)  # noqa: E731
    assert len(desc["mlp_layers"]) == len(desc["hidden"])
    for layer, width in zip(desc["mlp_layers"], desc["hidden"]):
        h = h @ g(layer["linear"] + ".weight").T + g(layer["linear"] + ".bias")
        assert h.shape[1] == width
        if desc["batch_norm"]:
            bn = layer["batch_norm"]
            h = (h - g(bn + ".running_mean")) / np.sqrt(g(bn + ".running_var") + desc["bn_eps"]) \
                * g(bn + ".weight") + g(bn + ".bias")
        assert layer["activation"] == "relu"
        h = np.maximum(h, 0.0)
    out = h @ g(desc["output_layer"] + ".weight").T[:, 0] + g(desc["output_layer"] + ".bias")[0]
    logit = g(desc["global_bias"])[0] + lin + fm + out
    assert desc["output"] == "sigmoid"
    return 1.0 / (1.0 + np.exp(-logit))


def check_raw(desc, batch, path):
    lines = open(path, encoding="utf-8").read().split("\n")
    header = lines[0].split("\t")
    assert header == desc["feature_order"], header
    vocabs = desc.get("vocabularies", {})
    weighted = {f for tb in desc["tables"] if tb.get("is_weighted", False) for f in tb["feature_names"]}
    n = 0
    for i, line in enumerate(lines[1:]):
        if line == "":
            continue
        cells = line.split("\t")
        assert len(cells) == len(header), (i, len(cells))
        for name, cell in zip(header, cells):
            want = batch["features"][name][i]
            voc = vocabs.get(name)
            if name in weighted:  # item:weight,item:weight, the weight text = the float32's repr
                assert voc is None
                got = [[int(a), float(b)] for a, b in (x.split(":") for x in cell.split(",") if x != "")]
                assert all(float(np.float32(w)) == w for _, w in got), (i, name, cell)
            elif voc is None:
                got = int(cell)
            elif "sep" in voc:
                got = [voc["ids"][x] for x in cell.split(voc["sep"]) if x != ""]
            else:
                got = voc["ids"].get(cell, voc["oov"])
            assert got == want, (i, name, cell, got, want)
        n += 1
    return n


def main():
    d = sys.argv[1] if len(sys.argv) > 1 else os.path.join(REPO, "tests", "fixtures", "interop", "torchrec-ml100k")
    desc, batch = fixture_common.read_fixture(d)
    t = fixture_common.read_safetensors(os.path.join(d, "model.safetensors"))
    rows = batch["rows"]
    used = {tb["tensor"] for tb in desc["tables"] + desc["first_order_tables"]}
    for layer in desc["mlp_layers"]:
        used |= {layer["linear"] + s for s in (".weight", ".bias")}
        if desc["batch_norm"]:
            used |= {layer["batch_norm"] + s for s in (".weight", ".bias", ".running_mean", ".running_var",
                                                        ".num_batches_tracked")}
    used |= {desc["output_layer"] + ".weight", desc["output_layer"] + ".bias", desc["global_bias"]}
    assert used == set(t), ("tensors not described / missing", set(t) ^ used)
    p = predict(t, desc, batch["features"], rows)
    want = np.array(batch["predictions"], dtype=np.float64)
    assert p.shape == want.shape == (rows,)
    diff = float(np.abs(p - want).max())
    n_raw = check_raw(desc, batch, os.path.join(d, "raw.tsv"))
    shared = vocabularies.check_raw_tsv(d)  # the shared check too
    print(f"torchrec-ml100k: {rows} rows, max |diff| = {diff:.3g} (predictions {want.min():.3f}..{want.max():.3f}); "
          f"raw.tsv: {n_raw} rows map to batch.json's ids (vocabularies.check_raw_tsv: {shared[0]} rows, "
          f"tokens at oov {shared[1]})")
    assert diff <= 1e-5, diff


if __name__ == "__main__":
    main()
