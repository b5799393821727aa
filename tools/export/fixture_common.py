"""Pieces shared by the interop fixture scripts (make_fixtures*.py) and their checks (check_*.py).

Standard library + numpy only: the make scripts run in different venvs (DeepCTR / CoreRec,
FuxiCTR, RecBole, torchrec) and the check scripts need numpy alone. Imported as
``fixture_common`` (check scripts: this folder is on sys.path) or ``export.fixture_common``
(make scripts: this folder's parent is on sys.path).

* reading a fixture: ``read_safetensors`` / ``load_safetensors`` (model.safetensors parsed by hand:
  8-byte little-endian header length, JSON header, raw little-endian tensors) and ``read_fixture``
  (description.json + batch.json);
* writing batch.json: ``write_batch`` (float32 values as the shortest decimal that round-trips);
* MovieLens 100K: the genre lists (``ml100k_genres``), the same user's previous ratings by timestamp
  (``previous_rows``: their rows, ``previous_items``: their items) and the fixed permutation /
  held-out pool / batch rows (``held_out_split``);
* ``feature_order_with_recbole``: vocabularies.check_raw_tsv's feature order for RecBole descriptions.
"""

import json
import os
import struct

import numpy as np

# ----------------------------------------------------------------------------------------------
# Reading a fixture
# ----------------------------------------------------------------------------------------------

SAFETENSORS_DTYPES = {"F32": "<f4", "F64": "<f8", "F16": "<f2", "I64": "<i8", "I32": "<i4", "U8": "u1",
                      "BOOL": "?"}


def read_safetensors(path):
    """{name: numpy array} of a .safetensors file, each in its stored dtype (read-only views)."""
    with open(path, "rb") as f:
        raw = f.read()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n])
    base = 8 + n
    out = {}
    for key, info in header.items():
        if key == "__metadata__":
            continue
        start, end = info["data_offsets"]
        arr = np.frombuffer(raw[base + start:base + end], dtype=SAFETENSORS_DTYPES[info["dtype"]])
        out[key] = arr.reshape(info["shape"])
    return out


def load_safetensors(path):
    """As read_safetensors, floating-point tensors converted to float64."""
    return {k: v.astype(np.float64 if v.dtype.kind == "f" else v.dtype) for k, v in read_safetensors(path).items()}


def read_fixture(fixture):
    """(description.json, batch.json) of a fixture directory, parsed."""
    with open(os.path.join(fixture, "description.json"), encoding="utf-8") as f:
        desc = json.load(f)
    with open(os.path.join(fixture, "batch.json"), encoding="utf-8") as f:
        batch = json.load(f)
    return desc, batch


def feature_order_with_recbole(orig):
    """vocabularies._feature_order extended to RecBole descriptions (order = description["fields"])."""
    def order(desc):
        if desc.get("framework") == "recbole":
            return [f["name"] for f in desc["fields"]]
        return orig(desc)
    return order


# ----------------------------------------------------------------------------------------------
# batch.json writing: float32 values as the shortest decimal that round-trips to the same float32
# ----------------------------------------------------------------------------------------------

def f32_text(v):
    """Shortest decimal text of float32(v) that parses back (via float64 or directly) to it."""
    x = np.float32(v)
    if not np.isfinite(x):
        raise ValueError(f"non-finite value {v!r}")
    s = str(x)  # numpy's shortest round-trip repr for float32, e.g. '0.6931472', '3.0', '1e-07'
    if np.float32(float(s)) != x:  # double rounding through float64: use the exact float64 text
        s = repr(float(x))
    return s


def json_list(values, kind):
    if kind == "int":
        return "[" + ",".join(str(int(v)) for v in values) + "]"
    if kind == "f32":
        return "[" + ",".join(f32_text(v) for v in values) + "]"
    if kind == "seq":
        return "[" + ",".join("[" + ",".join(str(int(t)) for t in row) + "]" for row in values) + "]"
    raise ValueError(kind)


def write_batch(out_dir, features, predictions, produced_by):
    """out_dir/batch.json; features: ordered list of (name, kind, values), kind in int | f32 | seq."""
    n = len(predictions)
    lines = ["{", f'  "rows": {n},', '  "features": {']
    for i, (name, kind, values) in enumerate(features):
        assert len(values) == n, (name, len(values), n)
        comma = "," if i + 1 < len(features) else ""
        lines.append(f'    "{name}": {json_list(values, kind)}{comma}')
    lines.append("  },")
    lines.append(f'  "predictions": {json_list(np.asarray(predictions).reshape(-1), "f32")},')
    lines.append(f"  \"produced_by\": {json.dumps(produced_by)}")
    lines.append("}")
    with open(os.path.join(out_dir, "batch.json"), "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")


# ----------------------------------------------------------------------------------------------
# MovieLens 100K
# ----------------------------------------------------------------------------------------------

ML100K_SEED = 20240601  # numpy RandomState seed of the fixed permutation of u.data's rows
ML100K_POOL = 1100  # the permutation's first rows are the held-out pool, the rest is training data


def ml100k_genres(d):
    """(the 19 genre names of u.genre, {item id: its 19 genre flags (ints) from u.item}) in file order."""
    genre_names = [line.split("|")[0] for line in open(os.path.join(d, "u.genre")) if line.strip()]
    assert len(genre_names) == 19
    flags = {}
    for line in open(os.path.join(d, "u.item"), encoding="latin-1"):
        row = line.rstrip("\n").split("|")
        flags[int(row[0])] = [int(x) for x in row[5:24]]
    return genre_names, flags


def previous_rows(user, ts, k):
    """[rows, k] int64: the row indices (into u.data) of the same user's previous k ratings by
    timestamp (ties broken by the order in u.data), most recent first, -1-padded on the right."""
    order = np.lexsort((np.arange(len(user)), ts, user))
    users_sorted = user[order]
    prev = np.full((len(user), k), -1, dtype=np.int64)
    for pos, row in enumerate(order):
        for j in range(k):
            p = pos - 1 - j
            if p < 0 or users_sorted[p] != users_sorted[pos]:
                break
            prev[row, j] = order[p]
    return prev


def previous_items(user, item, ts, k):
    """[rows, k] int64: the same user's previous k rated items by timestamp (ties broken by the order
    in u.data), most recent first, 0-padded on the right (the items of ``previous_rows``)."""
    prev = previous_rows(user, ts, k)
    return np.where(prev >= 0, item[np.maximum(prev, 0)], 0).astype(np.int64)


def ml100k_permutation(n):
    return np.random.RandomState(ML100K_SEED).permutation(n)


def held_out_split(user, item, n_batch):
    """(train rows, batch rows): the fixed permutation's rows from ML100K_POOL on are the training
    data; the batch is the first n_batch pool rows whose user and item both occur in the training data
    (CoreRec cannot score unseen ids; the same rows are used for every ml-100k fixture)."""
    perm = ml100k_permutation(len(user))
    pool, train = perm[:ML100K_POOL], perm[ML100K_POOL:]
    seen_u, seen_i = set(user[train]), set(item[train])
    test = np.array([i for i in pool if user[i] in seen_u and item[i] in seen_i][:n_batch])
    assert len(test) == n_batch
    return train, test
