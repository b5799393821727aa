"""Train FuxiCTR's own DeepFM on MovieLens 100K and write the fuxictr-ml100k interop fixture.

Run from anywhere (the repository root is found from this file's location):

    python3 -m venv /tmp/venv-fuxi
    /tmp/venv-fuxi/bin/pip install -r tools/export/requirements-fuxictr.txt
    /tmp/venv-fuxi/bin/python tools/export/make_fixtures_fuxictr.py

Writes tests/fixtures/interop/fuxictr-ml100k/{model.safetensors,description.json,batch.json,raw.tsv}
(description.json with FuxiCTR's own token vocabularies and age's fill_na + StandardScaler as a
"numeric" entry, both from the fitted FeatureProcessor passed to the exporter; raw.tsv: the first 50
batch rows with the raw tokens and the raw age). The "numeric" entry applied to the raw ages of all
training and batch rows must give FuxiCTR's own float32 inputs within one float32 step (the max is
printed; 0 for this fixture). The
data is read from ../shared/data relative to the repository root (override with
DEEPFM_DATA=/path/to/data); it is never copied into the repository: the CSV files FuxiCTR's
FeatureProcessor reads and everything it writes (feature_map.json, vocab, pickle) go to a temporary
directory that is deleted afterwards. Only the trained weights, the feature map, 1000 held-out rows'
model inputs and FuxiCTR's predictions for them are kept.

The pipeline is FuxiCTR's own where it matters:

* ``fuxictr.preprocess.FeatureProcessor``: ``read_data`` (CSV through polars), ``preprocess``,
  ``fit`` on the training rows (vocabularies, share_embedding vocab merge, StandardScaler from
  train statistics, ``feature_map.json`` written by FuxiCTR) and ``transform`` (index encoding,
  OOV, padding) on both splits. Only ``build_dataset``'s ray/parquet stage is skipped: its
  ``transform`` calls ``feature_processor.transform`` on numpy batches, which is done directly.
* ``fuxictr.features.FeatureMap.load(feature_map.json, params={"embedding_dim": 8})`` as FuxiCTR's
  run scripts do, and the model zoo's ``DeepFM`` class (vendored in ``fuxictr_model_zoo/``).
* ``BaseModel.train_step`` (Adam, BCE, gradient-norm clipping at 10) for one epoch over shuffled
  batches of 256 (387 steps); ``model.forward(inputs)["y_pred"]`` in eval mode for the predictions.

Features (feature_map order, which is also the MLP input order): user_id, item_id, prev_item
(the user's previous rated item by timestamp, ``share_embedding: item_id``; missing for a user's
first rating, which FuxiCTR encodes as the OOV index), gender, occupation (categorical), age
(numeric, StandardScaler), genres (sequence, ``^``-separated genre names, max_len 6, post-padded
with 0, MaskedAveragePooling). Label: rating >= 4. Held-out rows: a fixed permutation (numpy
RandomState(20240601)); its first 1000 rows are the batch, rows 1100.. are the training data (the
same training rows as the deepctr-ml100k fixture); held-out items absent from the training rows
get the OOV index.

Deterministic: CPU, one torch thread, fuxictr.pytorch.torch_utils.seed_everything(2024).
"""

import json
import os
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
TOOLS = os.path.dirname(HERE)
REPO = os.path.dirname(TOOLS)
# This directory holds fuxictr.py (the exporter): keep it off sys.path so that `import fuxictr`
# finds the framework; the exporter is `export.fuxictr`.
sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != HERE]
sys.path.insert(0, TOOLS)

from export import fuxictr_shims  # noqa: E402

SHIMS = fuxictr_shims.install()

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402

import fuxictr  # noqa: E402
from fuxictr.features import FeatureMap  # noqa: E402
from fuxictr.preprocess import FeatureProcessor  # noqa: E402
from fuxictr.pytorch.torch_utils import seed_everything  # noqa: E402

from export import fixture_common  # noqa: E402
from export import vocabularies  # noqa: E402
from export.fuxictr import describe, export  # noqa: E402
from export.fuxictr_model_zoo import DeepFM  # noqa: E402

DATA = os.environ.get("DEEPFM_DATA", os.path.join(REPO, os.pardir, "shared", "data"))
OUT = os.path.join(REPO, "tests", "fixtures", "interop", "fuxictr-ml100k")
N_BATCH = 1000
BATCH_SIZE = 256
SEED = 2024
DATASET_ID = "ml100k_fuxictr"
PRODUCED_BY = (
    "model.forward(inputs)['y_pred'] of FuxiCTR's DeepFM in eval mode under torch.no_grad(), one batch "
    "of 1000 rows; inputs = {name: torch tensor} with int64 indices for categorical, float32 for age, "
    "int64 [1000, 6] for genres, exactly the values listed here"
)

FEATURE_COLS = [
    {"name": "user_id", "type": "categorical", "dtype": "str", "active": True},
    {"name": "item_id", "type": "categorical", "dtype": "str", "active": True},
    {"name": "prev_item", "type": "categorical", "dtype": "str", "active": True,
     "share_embedding": "item_id"},
    {"name": "gender", "type": "categorical", "dtype": "str", "active": True},
    {"name": "occupation", "type": "categorical", "dtype": "str", "active": True},
    {"name": "age", "type": "numeric", "dtype": "float", "active": True, "normalizer": "StandardScaler"},
    {"name": "genres", "type": "sequence", "dtype": "str", "active": True, "splitter": "^",
     "max_len": 6, "padding": "post", "feature_encoder": "layers.MaskedAveragePooling()"},
]
LABEL_COL = {"name": "label", "dtype": "float"}


# ----------------------------------------------------------------------------------------------
# MovieLens 100K as the CSV FuxiCTR reads
# ----------------------------------------------------------------------------------------------

def load_ml100k():
    d = os.path.join(DATA, "ml-100k")
    r = pd.read_csv(os.path.join(d, "u.data"), sep="\t", names=["user", "item", "rating", "ts"])
    u = pd.read_csv(os.path.join(d, "u.user"), sep="|", names=["user", "age", "gender", "occupation", "zip"])
    genre_names, genre_flags = fixture_common.ml100k_genres(d)
    genres = {i: "^".join(g for g, f in zip(genre_names, flags) if f) for i, flags in genre_flags.items()}
    assert len(r) == 100000 and len(genres) == 1682

    r = r.merge(u[["user", "age", "gender", "occupation"]], on="user", how="left")
    # The same user's previous rated item by timestamp (ties broken by the order in u.data).
    prev_ids = fixture_common.previous_items(r.user.values, r.item.values, r.ts.values, 1)[:, 0]
    prev = np.array(["" if i == 0 else str(i) for i in prev_ids], dtype=object)

    df = pd.DataFrame({
        "user_id": r.user.astype(str),
        "item_id": r.item.astype(str),
        "prev_item": prev,
        "gender": r.gender,
        "occupation": r.occupation,
        "age": r.age.astype(float),
        "genres": [genres[i] for i in r.item.values],
        "label": (r.rating.values >= 4).astype(float),
    })
    perm = fixture_common.ml100k_permutation(len(df))
    return df, perm[:N_BATCH], perm[fixture_common.ML100K_POOL:]


def raw_number_text(v):
    """A raw number as written in raw.tsv: empty for a missing value, an integral value as an
    integer (ages as in u.user), any other as Python's shortest float64 text."""
    if pd.isna(v):
        return ""
    v = float(v)
    return str(int(v)) if v.is_integer() else repr(v)


def write_raw(out_dir, features, raw_df, vocab_desc, numeric_desc):
    """raw.tsv: the first vocabularies.RAW_ROWS batch rows; a feature with a vocabulary takes its raw
    value from raw_df (the CSV rows FuxiCTR read: a sequence's tokens re-joined by its sep, empty
    pieces, i.e. padding, dropped), as does a feature with a "numeric" entry (age: the raw age, as in
    u.user); any other its batch value."""
    n = vocabularies.RAW_ROWS
    rows = [[] for _ in range(n)]
    for name, kind, values in features:
        for i in range(n):
            if name in numeric_desc:
                cell = raw_number_text(raw_df[name].iloc[i])
            elif name in vocab_desc:
                raw = raw_df[name].iloc[i]
                raw = "" if pd.isna(raw) else str(raw)
                sep = vocab_desc[name].get("sep")
                if sep is not None:
                    cell = sep.join(t for t in raw.split(sep) if t != "")
                else:
                    cell = raw
            elif kind == "int":
                cell = str(int(values[i]))
            elif kind == "f32":
                cell = fixture_common.f32_text(values[i])
            else:
                cell = ",".join(str(int(t)) for t in values[i])
            rows[i].append(cell)
    vocabularies.write_raw_tsv(out_dir, [name for name, _, _ in features], rows)
    checked, oov, ulps = vocabularies.check_raw_tsv(out_dir, max_ulps=1)
    assert checked == n
    return oov, ulps


def numeric_ulps(entries, raw_df, transformed):
    """{feature: (max float32 steps, rows that differ, rows, max |difference|)} between each "numeric"
    entry applied to raw_df's raw values and FuxiCTR's transformed values as the model takes them
    (float32)."""
    out = {}
    for name, e in entries.items():
        raw = [raw_number_text(v) for v in raw_df[name].values]
        got = np.array([vocabularies.apply_numeric(e, c, name) for c in raw], dtype=np.float32)
        want = np.asarray(transformed[name], dtype=np.float64).astype(np.float32)
        steps = [vocabularies.f32_ulps(float(a), float(b)) for a, b in zip(got, want)]
        out[name] = (max(steps), int(sum(s > 0 for s in steps)), len(steps),
                     float(np.abs(got.astype(np.float64) - want.astype(np.float64)).max()))
    return out


def to_numpy_batch(ddf):
    """A polars LazyFrame as the dict of numpy columns that build_dataset's ray map_batches gives."""
    out = {}
    for k, v in ddf.collect().to_dict(as_series=False).items():
        out[k] = np.array(v, dtype=object) if any(isinstance(x, str) for x in v) else np.array(v)
    return out


def to_tensors(batch, feature_map):
    t = {}
    for name, spec in feature_map.features.items():
        v = batch[name]
        if spec["type"] == "numeric":
            t[name] = torch.from_numpy(np.asarray(v, dtype=np.float32))
        else:
            t[name] = torch.from_numpy(np.asarray(v, dtype=np.int64))
    for label in feature_map.labels:
        t[label] = torch.from_numpy(np.asarray(batch[label], dtype=np.float32))
    return t


def take(tensors, idx):
    return {k: v[idx] for k, v in tensors.items()}


def main():
    t0 = time.time()
    torch.set_num_threads(1)
    df, test_rows, train_rows = load_ml100k()
    with tempfile.TemporaryDirectory(prefix="fuxictr-ml100k-") as tmp:
        train_csv, test_csv = os.path.join(tmp, "train.csv"), os.path.join(tmp, "test.csv")
        df.iloc[train_rows].to_csv(train_csv, index=False)
        df.iloc[test_rows].to_csv(test_csv, index=False)

        fp = FeatureProcessor(feature_cols=FEATURE_COLS, label_col=LABEL_COL, dataset_id=DATASET_ID,
                              data_root=os.path.join(tmp, "data"))
        train_ddf = fp.preprocess(fp.read_data(train_csv))
        test_ddf = fp.preprocess(fp.read_data(test_csv))
        fp.fit(train_ddf, min_categr_count=1)
        train_np = fp.transform(to_numpy_batch(train_ddf))
        test_np = fp.transform(to_numpy_batch(test_ddf))

        json_path = os.path.join(fp.data_dir, "feature_map.json")
        with open(json_path, encoding="utf-8") as f:
            written_by_fuxictr = json.load(f)
        feature_map = FeatureMap(DATASET_ID, fp.data_dir)
        feature_map.load(json_path, params={"embedding_dim": 8})

        seed_everything(SEED)
        model = DeepFM(feature_map, model_id="DeepFM", gpu=-1, task="binary_classification",
                       learning_rate=1e-3, embedding_dim=8, hidden_units=[32, 16],
                       hidden_activations="relu", net_dropout=0.1, batch_norm=True,
                       embedding_regularizer=None, net_regularizer=None,
                       optimizer="adam", loss="binary_crossentropy", metrics=["logloss", "AUC"],
                       verbose=0, model_root=os.path.join(tmp, "checkpoints"))
        model._max_gradient_norm = 10.0  # BaseModel.fit's default, used by train_step

        train_t, test_t = to_tensors(train_np, feature_map), to_tensors(test_np, feature_map)
        n = len(train_rows)
        order = np.random.RandomState(SEED).permutation(n)
        model.train()
        steps, loss_sum = 0, 0.0
        for start in range(0, n, BATCH_SIZE):
            batch = take(train_t, torch.from_numpy(order[start:start + BATCH_SIZE]))
            loss_sum += model.train_step(batch).item()
            steps += 1
        print(f"trained {steps} steps (1 epoch, batch {BATCH_SIZE}), mean train loss {loss_sum / steps:.4f}")

        model.eval()
        with torch.no_grad():
            pred = model.forward(test_t)["y_pred"].cpu().numpy().reshape(-1)
        logs = model.evaluate([test_t])
        print("held-out:", {k: round(float(v), 4) for k, v in logs.items()})

        description = export(model, feature_map, OUT, vocab=fp, numeric=fp)
        # The feature map in description.json is the one FuxiCTR's FeatureProcessor wrote.
        assert description["feature_map"] == written_by_fuxictr, "feature_map differs from FuxiCTR's file"

        features = []
        for name, spec in feature_map.features.items():
            kind = {"categorical": "int", "numeric": "f32", "sequence": "seq"}[spec["type"]]
            values = test_t[name].numpy()
            features.append((name, kind, values.tolist() if kind == "seq" else values))
        fixture_common.write_batch(OUT, features, pred, PRODUCED_BY)
        # Cross-check: the vocabularies written are FuxiCTR's feature_vocab.json less __PAD__/__OOV__,
        # with oov = __OOV__ = vocab_size - 1.
        with open(fp.vocab_file, encoding="utf-8") as f:
            vocab_json = json.load(f)
        vocabs = description["vocabularies"]
        assert sorted(vocabs) == sorted(vocab_json), (sorted(vocabs), sorted(vocab_json))
        for name, v in vocabs.items():
            ref = vocab_json[name]
            assert v["ids"] == {k: i for k, i in ref.items() if k not in ("__PAD__", "__OOV__")}, name
            assert ref["__PAD__"] == 0 and v["oov"] == ref["__OOV__"] == feature_map.features[name]["vocab_size"] - 1
        # The exporter's other input form (feature_vocab.json + splitters) gives the same.
        assert describe(model, feature_map, fp.vocab_file, {"genres": "^"})["vocabularies"] == vocabs
        # "numeric": FuxiCTR's fill_na + StandardScaler as fill_na, scale, shift; applied to the raw
        # values of the training and the batch rows it must give FuxiCTR's own float32 inputs
        # (within a float32 step: v * (1/s) + (-m/s) is not bit for bit (v - m) / s).
        numeric = description.get("numeric", {})
        assert sorted(numeric) == ["age"], numeric
        scaler = fp.processor_dict["age::normalizer"].normalizer.__self__
        assert numeric["age"] == {"fill_na": 0.0, "scale": 1.0 / scaler.scale_[0],
                                  "shift": -scaler.mean_[0] / scaler.scale_[0]}, numeric
        for split, rows_, transformed in (("train", train_rows, train_np), ("batch", test_rows, test_np)):
            for name, (steps, differ, total, absdiff) in numeric_ulps(
                    numeric, df.iloc[rows_], transformed).items():
                print(f"numeric {name} ({split} rows): entry on the raw values vs FuxiCTR's float32 values: "
                      f"max {steps} float32 steps, {differ} of {total} rows differ, max |difference| {absdiff:.3g}")
                assert steps <= 1, (split, name, steps)
        oov_raw, ulps_raw = write_raw(OUT, features, df.iloc[test_rows[: vocabularies.RAW_ROWS]], vocabs, numeric)
        print("vocabularies:", {n: (len(v["ids"]), v["oov"], v.get("sep")) for n, v in vocabs.items()},
              "; raw.tsv tokens at oov:", oov_raw, "; numeric:", numeric,
              "; raw.tsv numeric max float32 steps from batch.json:", ulps_raw)

        oov = {name: int((test_t[name] == spec["vocab_size"] - 1).sum())
               for name, spec in feature_map.features.items() if spec["type"] == "categorical"}
        print("held-out rows at the OOV index (vocab_size - 1):", oov)
    sizes = {f: os.path.getsize(os.path.join(OUT, f)) for f in sorted(os.listdir(OUT))}
    print("wrote", OUT, sizes, "total", sum(sizes.values()), "B")
    print(f"fuxictr {fuxictr.__version__}, torch {torch.__version__}, shims {SHIMS}, {time.time() - t0:.1f}s")


if __name__ == "__main__":
    main()
