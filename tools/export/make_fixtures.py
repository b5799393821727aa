"""Train small DeepFM models with DeepCTR-Torch and CoreRec on the real data and write interop fixtures.

Run from anywhere (the repository root is found from this file's location):

    /tmp/venv-interop/bin/python tools/export/make_fixtures.py

Writes tests/fixtures/interop/<name>/{model.safetensors,description.json,batch.json,raw.tsv} for
deepctr-ml100k, deepctr-ml100k-max, deepctr-criteo and corerec-ml100k (see
tests/fixtures/interop/README.md). description.json carries the token vocabularies the ids came
from ("vocabularies") and how raw numbers became the dense values ("numeric": age / 100, Criteo's
log(1 + x)), raw.tsv the first 50 batch rows with raw tokens in place of those ids and raw numbers
in place of those values. The data is read from ../shared/data relative to the repository
root (override with DEEPFM_DATA=/path/to/data); it is never copied into the repository, only the
trained weights, 1000 input rows' feature values and the frameworks' predictions are.

Everything is deterministic: CPU, one torch thread, torch.manual_seed / numpy RandomState fixed;
DeepCTR's BaseModel also re-seeds torch with its `seed` argument (1024 by default) when built.
Optional: pass fixture names to build only those, e.g. `make_fixtures.py deepctr-criteo`.
"""

import math
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
TOOLS = os.path.dirname(HERE)
REPO = os.path.dirname(TOOLS)
# This directory holds deepctr_torch.py and corerec.py (the exporters): keep it off sys.path so that
# `import deepctr_torch` / `import corerec` find the frameworks; the exporters are `export.<name>`.
sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != HERE]
sys.path.insert(0, TOOLS)

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402

# deepctr_torch starts a (non-daemon) thread on import that asks PyPI for a newer version; keep it
# offline so the script never waits on the network.
import requests  # noqa: E402


def _offline(*args, **kwargs):
    raise requests.ConnectionError("make_fixtures.py runs offline")


requests.get = _offline

from deepctr_torch.inputs import DenseFeat, SparseFeat, VarLenSparseFeat  # noqa: E402
from deepctr_torch.models import DeepFM as DeepCTRDeepFM  # noqa: E402
from corerec.engines.deepfm import DeepFM as CoreRecDeepFM  # noqa: E402

from export import corerec as corerec_export  # noqa: E402
from export import deepctr_torch as deepctr_export  # noqa: E402
from export import fixture_common  # noqa: E402
from export import vocabularies  # noqa: E402
from sklearn.preprocessing import LabelEncoder  # noqa: E402

DATA = os.environ.get("DEEPFM_DATA", os.path.join(REPO, os.pardir, "shared", "data"))
OUT = os.path.join(REPO, "tests", "fixtures", "interop")
N_BATCH = 1000
DEEPCTR_PRODUCED_BY = "model.predict(x, batch_size=256) in eval mode"
COREREC_PRODUCED_BY = (
    "recommender.model(x) (the inner torch module DeepFMModel) in eval mode under torch.no_grad(), "
    "x = torch.LongTensor [1000, n_fields] of per-field indices in description.json field_names order, one batch"
)


# ----------------------------------------------------------------------------------------------
# batch.json (fixture_common.write_batch) and raw.tsv writing
# ----------------------------------------------------------------------------------------------

def write_raw(out_dir, features, raw_tokens):
    """raw.tsv: the first vocabularies.RAW_ROWS batch rows; features as for write_batch, raw_tokens
    {name: one raw value (str) per row} for the features with a vocabulary or a "numeric" entry;
    the others are written from their batch values (ids as integers, float32 as in batch.json, id
    lists comma-separated). The numeric entries must give batch.json's float32 values exactly."""
    n = vocabularies.RAW_ROWS
    rows = [[] for _ in range(n)]
    for name, kind, values in features:
        for i in range(n):
            if name in raw_tokens:
                cell = raw_tokens[name][i]
            elif kind == "int":
                cell = str(int(values[i]))
            elif kind == "f32":
                cell = fixture_common.f32_text(values[i])
            else:
                cell = ",".join(str(int(t)) for t in values[i])
            rows[i].append(cell)
    vocabularies.write_raw_tsv(out_dir, [name for name, _, _ in features], rows)
    checked, oov, _ = vocabularies.check_raw_tsv(out_dir, max_ulps=0)
    assert checked == n
    return oov


def check_numeric_entries(numeric, raw_values, x):
    """Every batch row, not only raw.tsv's: each "numeric" entry applied to the raw values (str) must
    give the float32 values fed to the model exactly. Returns {feature: max float32 steps} (all 0)."""
    out = {}
    for name, e in numeric.items():
        assert len(raw_values[name]) == len(x[name])
        steps = max(vocabularies.f32_ulps(vocabularies.apply_numeric(e, c, name), float(want))
                    for c, want in zip(raw_values[name], x[name]))
        assert steps == 0, (name, steps)
        out[name] = steps
    return out


def fixture_dir(name):
    d = os.path.join(OUT, name)
    os.makedirs(d, exist_ok=True)
    return d


def report(name, out_dir, extra=""):
    sizes = {f: os.path.getsize(os.path.join(out_dir, f)) for f in sorted(os.listdir(out_dir))}
    total = sum(sizes.values())
    print(f"[{name}] {extra}")
    print(f"[{name}] files: " + ", ".join(f"{f} {s} B" for f, s in sizes.items()) + f"; total {total} B")


# ----------------------------------------------------------------------------------------------
# MovieLens 100K
# ----------------------------------------------------------------------------------------------

def load_ml100k():
    d = os.path.join(DATA, "ml-100k")
    r = pd.read_csv(os.path.join(d, "u.data"), sep="\t", names=["user", "item", "rating", "ts"])
    u = pd.read_csv(os.path.join(d, "u.user"), sep="|", names=["user", "age", "gender", "occupation", "zip"])
    genre_names, genre_flags = fixture_common.ml100k_genres(d)
    genres = {}  # item id -> list of genre ids 1..19 (flag k -> id k+1), in flag order
    for item, flags in genre_flags.items():
        genres[item] = [k + 1 for k, f in enumerate(flags) if f]
    n_users, n_items = int(u.user.max()), len(genre_flags)
    assert n_users == 943 and n_items == 1682 and len(r) == 100000

    r = r.merge(u[["user", "age", "gender", "occupation"]], on="user", how="left")
    # The same user's previous ratings by timestamp (ties broken by the order in u.data).
    hist = fixture_common.previous_items(r.user.values, r.item.values, r.ts.values, 5)
    r["prev_item"] = hist[:, 0]

    gender_vocab = sorted(u.gender.unique())  # ['F', 'M']
    occupation_vocab = sorted(u.occupation.unique())  # 21 names
    r["gender_id"] = r.gender.map({g: i for i, g in enumerate(gender_vocab)}).astype(np.int64)
    r["occupation_id"] = r.occupation.map({o: i for i, o in enumerate(occupation_vocab)}).astype(np.int64)
    # The same ids as fitted sklearn LabelEncoders (for the exported vocabularies only).
    gender_encoder, occupation_encoder = LabelEncoder().fit(u.gender), LabelEncoder().fit(u.occupation)
    assert (gender_encoder.transform(r.gender) == r.gender_id.values).all()
    assert (occupation_encoder.transform(r.occupation) == r.occupation_id.values).all()

    # Held-out rows: a fixed permutation; the first 1100 are the pool, the rest is training data;
    # the batch is the first 1000 pool rows whose user and item both occur in the training data
    # (CoreRec cannot score unseen ids; the same rows are used for every ml-100k fixture).
    train, test = fixture_common.held_out_split(r.user.values, r.item.values, N_BATCH)
    return {
        "ratings": r, "genres": genres, "hist": hist, "users": u, "n_users": n_users, "n_items": n_items,
        "genre_names": genre_names, "gender_vocab": gender_vocab, "occupation_vocab": occupation_vocab,
        "train": train, "test": test, "encoders": {
            "gender": gender_encoder, "occupation": occupation_encoder,
            # genre flag k -> id k + 1 (0 is padding), written as "|"-separated genre names
            "genres": deepctr_export.vocabulary({g: k + 1 for k, g in enumerate(genre_names)}, sep="|"),
        },
    }


# The deepctr-ml100k* fixtures feed age / 100 as float32: float32(float64(age) * 0.01) is the same
# float32 for every age (checked on all batch rows by check_numeric_entries).
ML100K_NUMERIC = {"age": {"scale": 0.01}}


def ml100k_raw_tokens(ml, rows):
    """Raw gender / occupation / genres / age of the given ratings rows (genres "|"-joined names, age
    as in u.user)."""
    r = ml["ratings"]
    return {
        "age": [str(int(r.age.values[i])) for i in rows],
        "gender": [str(r.gender.values[i]) for i in rows],
        "occupation": [str(r.occupation.values[i]) for i in rows],
        "genres": ["|".join(ml["genre_names"][g - 1] for g in ml["genres"][int(r.item.values[i])]) for i in rows],
    }


def padded(lists, maxlen):
    out = np.zeros((len(lists), maxlen), dtype=np.int64)
    for i, ids in enumerate(lists):
        assert len(ids) <= maxlen
        out[i, : len(ids)] = ids
    return out


def deepctr_compile(model, lr, loss):
    model.compile(torch.optim.Adam(model.parameters(), lr=lr), loss)


def steps(n_rows, batch_size, epochs):
    return epochs * ((n_rows - 1) // batch_size + 1)


def fit_and_write_ml100k(name, ml, model, x_all, y_all, tr, te, bs, epochs, batch_kinds):
    """Train a deepctr-ml100k* model on rows tr, predict rows te and write the fixture (model,
    description with ML100K_NUMERIC, batch.json with the features of batch_kinds [(name, kind)] in
    that order, raw.tsv). Returns (x_test, predictions, fixture dir, numeric entry float32 steps)."""
    model.fit({k: v[tr] for k, v in x_all.items()}, y_all[tr], batch_size=bs, epochs=epochs, verbose=0)
    x_test = {k: v[te] for k, v in x_all.items()}
    pred = model.predict(x_test, batch_size=256).reshape(-1)

    out = fixture_dir(name)
    deepctr_export.export(model, out, encoders=ml["encoders"], numeric=ML100K_NUMERIC)
    numeric_steps = check_numeric_entries(ML100K_NUMERIC, ml100k_raw_tokens(ml, te), x_test)
    batch_features = [(n, kind, x_test[n]) for n, kind in batch_kinds]
    fixture_common.write_batch(out, batch_features, pred, DEEPCTR_PRODUCED_BY)
    write_raw(out, batch_features, ml100k_raw_tokens(ml, te[:vocabularies.RAW_ROWS]))
    return x_test, pred, out, numeric_steps


def make_deepctr_ml100k(ml):
    """a. binary (rating >= 4); shared item table for prev_item; genres mean-pooled; bn + dropout."""
    name = "deepctr-ml100k"
    torch.manual_seed(1)
    r, D = ml["ratings"], 8
    genre_seq = padded([ml["genres"][i] for i in r.item.values], 6)
    x_all = {
        "user": r.user.values.astype(np.int64),
        "item": r.item.values.astype(np.int64),
        "prev_item": r.prev_item.values.astype(np.int64),
        "gender": r.gender_id.values,
        "occupation": r.occupation_id.values,
        "genres": genre_seq,
        "age": (r.age.values / 100.0).astype(np.float32),
    }
    y_all = (r.rating.values >= 4).astype(np.float32)
    columns = [
        SparseFeat("user", ml["n_users"] + 1, embedding_dim=D),
        SparseFeat("item", ml["n_items"] + 1, embedding_dim=D),
        SparseFeat("prev_item", ml["n_items"] + 1, embedding_dim=D, embedding_name="item"),
        SparseFeat("gender", len(ml["gender_vocab"]), embedding_dim=D),
        SparseFeat("occupation", len(ml["occupation_vocab"]), embedding_dim=D),
        VarLenSparseFeat(SparseFeat("genres", 20, embedding_dim=D), maxlen=6, combiner="mean", length_name=None),
        DenseFeat("age", 1),
    ]
    model = DeepCTRDeepFM(columns, columns, dnn_hidden_units=(32, 16), dnn_use_bn=True, dnn_dropout=0.2,
                          task="binary", device="cpu", seed=1024)
    deepctr_compile(model, 3e-3, "binary_crossentropy")
    tr, te = ml["train"], ml["test"]
    bs, epochs = 256, 1
    x_test, pred, out, numeric_steps = fit_and_write_ml100k(name, ml, model, x_all, y_all, tr, te, bs, epochs, [
        ("user", "int"), ("item", "int"), ("prev_item", "int"), ("gender", "int"), ("occupation", "int"),
        ("genres", "seq"), ("age", "f32"),
    ])
    from sklearn.metrics import roc_auc_score
    auc = roc_auc_score(y_all[te], pred)
    report(name, out, f"{steps(len(tr), bs, epochs)} Adam steps on {len(tr)} rows; held-out AUC {auc:.4f}; "
                      f"prev_item = 0 on {int((x_test['prev_item'] == 0).sum())} batch rows; numeric "
                      f"{ML100K_NUMERIC} on the 1000 raw ages: max float32 steps {numeric_steps}")


def make_deepctr_ml100k_max(ml):
    """b. regression (rating); genres max-pooled, the previous 5 items sum-pooled; columns interleaved."""
    name = "deepctr-ml100k-max"
    torch.manual_seed(2)
    r, D = ml["ratings"], 4
    genre_lists = [ml["genres"][i] for i in r.item.values]
    keep = np.array([len(g) > 0 for g in genre_lists])  # a max-pooled list must not be all padding
    dropped = int((~keep).sum())
    x_all = {
        "age": (r.age.values / 100.0).astype(np.float32),
        "user": r.user.values.astype(np.int64),
        "genres": padded(genre_lists, 6),
        "item": r.item.values.astype(np.int64),
        "recent_items": ml["hist"],
        "gender": r.gender_id.values,
        "occupation": r.occupation_id.values,
    }
    y_all = r.rating.values.astype(np.float32)
    # Deliberately interleaved: DeepCTR's DNN input is still all SparseFeat, then all
    # VarLenSparseFeat, then all DenseFeat, whatever the column order.
    columns = [
        DenseFeat("age", 1),
        SparseFeat("user", ml["n_users"] + 1, embedding_dim=D),
        VarLenSparseFeat(SparseFeat("genres", 20, embedding_dim=D), maxlen=6, combiner="max", length_name=None),
        SparseFeat("item", ml["n_items"] + 1, embedding_dim=D),
        VarLenSparseFeat(SparseFeat("recent_items", ml["n_items"] + 1, embedding_dim=D), maxlen=5,
                         combiner="sum", length_name=None),
        SparseFeat("gender", len(ml["gender_vocab"]), embedding_dim=D),
        SparseFeat("occupation", len(ml["occupation_vocab"]), embedding_dim=D),
    ]
    model = DeepCTRDeepFM(columns, columns, dnn_hidden_units=(32, 16), dnn_use_bn=True, dnn_dropout=0.1,
                          task="regression", device="cpu", seed=1024)
    deepctr_compile(model, 1e-2, "mse")
    tr = np.array([i for i in ml["train"] if keep[i]])
    te = ml["test"]
    assert keep[te].all()
    bs, epochs = 256, 1
    x_test, pred, out, numeric_steps = fit_and_write_ml100k(name, ml, model, x_all, y_all, tr, te, bs, epochs, [
        ("age", "f32"), ("user", "int"), ("genres", "seq"), ("item", "int"), ("recent_items", "seq"),
        ("gender", "int"), ("occupation", "int"),
    ])
    rmse = float(np.sqrt(np.mean((np.clip(pred, 1, 5) - y_all[te]) ** 2)))
    report(name, out, f"{steps(len(tr), bs, epochs)} Adam steps on {len(tr)} rows; rows dropped for an empty "
                      f"genre list: {dropped}; held-out RMSE (clipped to [1,5]) {rmse:.4f}; empty recent_items "
                      f"(all padding, sum = 0) on {int((x_test['recent_items'] == 0).all(1).sum())} batch rows; "
                      f"numeric {ML100K_NUMERIC} on the 1000 raw ages: max float32 steps {numeric_steps}")


# ----------------------------------------------------------------------------------------------
# Criteo sample
# ----------------------------------------------------------------------------------------------

def make_deepctr_criteo():
    """c. binary; 13 dense log(1+x) + 26 label-encoded categoricals; DNN with BatchNorm (dnn_use_bn=True,
    as every fixture's model); train rows 0..799, batch = all 1000."""
    name = "deepctr-criteo"
    torch.manual_seed(3)
    rows = []
    with open(os.path.join(DATA, "criteo-samples", "train_first1000.txt"), encoding="utf-8") as f:
        for line in f:
            fields = line.rstrip("\n").split("\t")
            fields += [""] * (40 - len(fields))  # trailing empty fields may be stripped
            assert len(fields) == 40
            rows.append(fields)
    assert len(rows) == 1000
    labels = np.array([float(r[0]) for r in rows], dtype=np.float32)
    dense_names = [f"I{k}" for k in range(1, 14)]
    cat_names = [f"C{k}" for k in range(1, 27)]
    x_all, columns, D = {}, [], 4
    encoders, raw_tokens, raw_numbers = {}, {}, {}
    for k, n in enumerate(dense_names):
        # missing -> 0; negative values (only I2 has them, down to -2) are clamped to 0 before log(1+x)
        vals = [math.log1p(max(float(r[1 + k]), 0.0)) if r[1 + k] != "" else 0.0 for r in rows]
        x_all[n] = np.array(vals, dtype=np.float32)
        columns.append(DenseFeat(n, 1))
        raw_numbers[n] = [r[1 + k] for r in rows]  # the raw integer text, "" when missing
        raw_tokens[n] = raw_numbers[n][: vocabularies.RAW_ROWS]
    # the same as "numeric" entries: an empty cell -> 0, then ln(1 + max(v, 0))
    numeric = {n: {"fill_na": 0.0, "log1p": True} for n in dense_names}
    for k, n in enumerate(cat_names):
        tokens = [r[14 + k] for r in rows]  # missing = the empty token, its own id
        vocab = {t: i for i, t in enumerate(sorted(set(tokens)))}
        x_all[n] = np.array([vocab[t] for t in tokens], dtype=np.int64)
        columns.append(SparseFeat(n, len(vocab), embedding_dim=D))
        encoders[n] = vocab  # token -> id, "" (missing) included; no oov: every batch token is in it
        raw_tokens[n] = tokens[: vocabularies.RAW_ROWS]
    model = DeepCTRDeepFM(columns, columns, dnn_hidden_units=(32, 16), dnn_use_bn=True, dnn_dropout=0.0,
                          task="binary", device="cpu", seed=1024)
    # A small learning rate: 800 rows are memorised fast and larger steps leave most predictions
    # saturated at 0 or 1, which would make the fixture a weak check of the logits. With BatchNorm
    # the same lr and epochs still spread them (0.027..0.994 over the 1000 rows).
    deepctr_compile(model, 3e-4, "binary_crossentropy")
    tr = np.arange(800)
    bs, epochs = 64, 25
    model.fit({k: v[tr] for k, v in x_all.items()}, labels[tr], batch_size=bs, epochs=epochs, verbose=0)
    pred = model.predict(dict(x_all), batch_size=256).reshape(-1)

    out = fixture_dir(name)
    deepctr_export.export(model, out, encoders=encoders, numeric=numeric)
    numeric_steps = max(check_numeric_entries(numeric, raw_numbers, x_all).values())
    batch_features = [(n, "f32", x_all[n]) for n in dense_names] + [(n, "int", x_all[n]) for n in cat_names]
    fixture_common.write_batch(out, batch_features, pred, DEEPCTR_PRODUCED_BY)
    write_raw(out, batch_features, raw_tokens)
    from sklearn.metrics import roc_auc_score
    auc = roc_auc_score(labels[800:], pred[800:])
    report(name, out, f"{steps(len(tr), bs, epochs)} Adam steps on rows 0..799; AUC on rows 800..999 {auc:.4f} "
                      f"(1000 rows are too few to learn from; the fixture is about reproducing predictions); "
                      f"numeric {{fill_na 0, log1p}} on the raw I1..I13 of the 1000 rows: max float32 steps "
                      f"{numeric_steps}")


# ----------------------------------------------------------------------------------------------
# CoreRec
# ----------------------------------------------------------------------------------------------

def age_bucket(age):
    for hi, label in ((18, "under18"), (25, "18-24"), (35, "25-34"), (45, "35-44"), (56, "45-55")):
        if age < hi:
            return label
    return "56+"


def make_corerec_ml100k(ml):
    """d. CoreRec DeepFM (implicit task: BCE with 4 sampled negatives per rating) with side features."""
    name = "corerec-ml100k"
    torch.manual_seed(4)
    r, tr, te = ml["ratings"], ml["train"], ml["test"]
    u = ml["users"]
    user_features = {int(row.user): {"age": age_bucket(int(row.age)), "gender": row.gender,
                                     "occupation": row.occupation} for row in u.itertuples()}
    item_features = {i: {"genre": ml["genre_names"][g[0] - 1]} for i, g in ml["genres"].items()}
    rec = CoreRecDeepFM(embedding_dim=8, hidden_layers=[32, 16], dropout=0.2, learning_rate=3e-3, batch_size=1024,
                        epochs=2, device="cpu", task="auto", num_negatives=4)
    users_tr = [int(v) for v in r.user.values[tr]]
    items_tr = [int(v) for v in r.item.values[tr]]
    t0 = time.time()
    rec.fit(users_tr, items_tr, [float(v) for v in r.rating.values[tr]],
            user_features=user_features, item_features=item_features)
    fit_s = time.time() - t0

    out = fixture_dir(name)
    desc = corerec_export.export(rec, out)
    names = desc["field_names"]
    # The per-field indices exactly as CoreRec's predict()/fit() build them.
    x = []
    for row in te:
        uid, iid = int(r.user.values[row]), int(r.item.values[row])
        v = [rec.feature_map["user"][uid], rec.feature_map["item"][iid]]
        v += [rec.feature_map[f"user_{ft}"].get(user_features[uid][ft], 0) for ft in rec.user_feature_types]
        v += [rec.feature_map[f"item_{ft}"].get(item_features[iid][ft], 0) for ft in rec.item_feature_types]
        x.append(v)
    x = np.array(x, dtype=np.int64)
    assert x.shape == (N_BATCH, len(names))
    rec.model.eval()
    with torch.no_grad():
        pred = rec.model(torch.from_numpy(x)).numpy().astype(np.float64)

    # recommender.predict(user, item) must give the inner module's output for the same row.
    max_single = 0.0
    for k in range(20):
        row = te[k]
        p = rec.predict(int(r.user.values[row]), int(r.item.values[row]))
        max_single = max(max_single, abs(p - float(pred[k])))
    assert max_single < 1e-6, max_single

    batch_features = [(n, "int", x[:, j]) for j, n in enumerate(names)]
    fixture_common.write_batch(out, batch_features, pred, COREREC_PRODUCED_BY)
    raw_rows = []  # the raw user, item and side-feature values, in field order
    for row in te[: vocabularies.RAW_ROWS]:
        uid, iid = int(r.user.values[row]), int(r.item.values[row])
        raw_rows.append([str(uid), str(iid)] + [str(user_features[uid][ft]) for ft in rec.user_feature_types]
                        + [str(item_features[iid][ft]) for ft in rec.item_feature_types])
    write_raw(out, batch_features, {n: [v[j] for v in raw_rows] for j, n in enumerate(names)})
    n_train = len(tr) * (1 + rec.num_negatives)
    report(name, out, f"{rec.epochs} epochs x {(n_train + rec.batch_size - 1) // rec.batch_size} Adam steps "
                      f"({len(tr)} ratings + {rec.num_negatives} negatives each) in {fit_s:.1f} s; "
                      f"max |recommender.predict(u, i) - module batch output| over 20 rows = {max_single:.3g}; "
                      f"mean prediction on held-out positives {pred.mean():.4f}")


def main(argv):
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    wanted = set(argv) or {"deepctr-ml100k", "deepctr-ml100k-max", "deepctr-criteo", "corerec-ml100k"}
    ml = load_ml100k() if wanted & {"deepctr-ml100k", "deepctr-ml100k-max", "corerec-ml100k"} else None
    if "deepctr-ml100k" in wanted:
        make_deepctr_ml100k(ml)
    if "deepctr-ml100k-max" in wanted:
        make_deepctr_ml100k_max(ml)
    if "deepctr-criteo" in wanted:
        make_deepctr_criteo()
    if "corerec-ml100k" in wanted:
        make_corerec_ml100k(ml)


if __name__ == "__main__":
    main(sys.argv[1:])
