"""Train RecBole's own DeepFM on MovieLens 100K and write the recbole-ml100k interop fixture.

Run from anywhere (the repository root is found from this file's location):

    python3 -m venv /tmp/venv-recbole
    /tmp/venv-recbole/bin/pip install -r tools/export/requirements-recbole.txt
    /tmp/venv-recbole/bin/python tools/export/make_fixtures_recbole.py

Writes tests/fixtures/interop/recbole-ml100k/{model.safetensors,description.json,batch.json,raw.tsv}.
The data are RecBole's atomic files of MovieLens 100K (the files RecBole ships as
``dataset_example/ml-100k``), read from ../shared/data/ml-100k-atomic relative to the repository root
(override with DEEPFM_RECBOLE_DATA=/path/to/ml-100k-atomic). They are copied to a temporary
directory that is deleted afterwards, as dataset ``ml100k`` (files ``ml100k.inter`` / ``.user`` /
``.item``): RecBole's Config ignores ``data_path`` for a dataset named exactly ``ml-100k`` and reads
its bundled copy instead, and the copy changes one thing: the header of the user file declares
``age:float`` instead of ``age:token``, so that age is a float field (a "numerical feature").
Everything RecBole writes (log_tensorboard/, saved/) goes to that directory too.

The pipeline is RecBole's own: ``Config`` (model DeepFM, the settings below), ``init_seed``,
``create_dataset`` (loading, remapping to ids, [PAD] = 0, threshold label, NaN filling, min-max
normalisation of the float field, the (value, 1) float input pairs), ``data_preparation`` (random
80/10/10 split, ``labeled`` evaluation), ``DeepFM(config, train_data._dataset)``,
``Trainer.fit`` (Adam, BCEWithLogitsLoss, shuffled batches) and ``Trainer.evaluate`` (AUC, LogLoss)
on the test split.

Settings: fields user_id, item_id (token), age (float, ``numerical_features``, min-max normalised:
``normalize_all``, RecBole's default for ml-100k), gender, occupation (token, .user), release_year
(token, .item; the unknown year is the token ``unkonwn`` as spelled in the file), class (token_seq,
.item: space-separated genre names, padded to the longest list, 6). Label: ``threshold:
{rating: 4}`` (label = rating >= 4; rating is then dropped). embedding_size 8, mlp_hidden_size
[32, 16], dropout_prob 0.1 (RecBole's DeepFM has no batch norm option: ``MLPLayers(size_list,
dropout_prob)`` is built with ``bn=False``). One epoch, train_batch_size 256 (313 Adam steps,
lr 2e-3), CPU, one torch thread, seed 2024.

The batch: the first 1000 rows of RecBole's test split with the user and item features RecBole
joins to them (``Dataset.join``); the predictions are ``model.predict(interaction)`` in eval mode
under ``torch.no_grad()`` (sigmoid of ``forward``), checked equal to what RecBole's own
``Trainer._neg_sample_batch_eval`` gives for the test loader's first batch (eval_batch_size 1000,
the same rows).

Shims (RecBole 1.2.1 with current packages):

* numpy 2 removed ``np.float_``, ``np.complex_`` and ``np.unicode_``, which RecBole's
  ``Config.compatibility_settings`` reads (to set ``np.float``, ``np.long`` etc., which RecBole
  uses): they are set to ``np.float64``, ``np.complex128`` and ``np.str_`` before recbole is imported.
* pandas: RecBole 1.2.1 does not run on pandas 3 (``Series.agg(len)`` is no longer element-wise,
  so ``_remap`` of a token_seq field fails; its chained ``fillna(..., inplace=True)`` calls no
  longer fill): pandas 2.x is required (2.3.3 pinned; its FutureWarnings are silenced here).
* ray / thop (RecBole's declared dependencies; ray <= 2.6.3 has no wheel for current Pythons):
  not installed, not needed (only ``recbole.quick_start`` and ``get_flops`` import them).
* torch >= 2.6 ``torch.load(weights_only=True)``: avoided, nothing is saved or reloaded
  (``fit(saved=False)``, ``evaluate(load_best_model=False)``).

Deterministic: rerunning rewrites byte-identical files.
"""

import os
import shutil
import sys
import tempfile
import time
import warnings

HERE = os.path.dirname(os.path.abspath(__file__))
TOOLS = os.path.dirname(HERE)
REPO = os.path.dirname(TOOLS)
# This directory holds recbole.py (the exporter): keep it off sys.path so that `import recbole`
# finds the framework; the exporter is `export.recbole`.
sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != HERE]
sys.path.insert(0, TOOLS)

import numpy as np  # noqa: E402

SHIMS = []
for _old, _new in (("float_", "float64"), ("complex_", "complex128"), ("unicode_", "str_")):
    if not hasattr(np, _old):
        setattr(np, _old, getattr(np, _new))
        SHIMS.append(f"np.{_old} = np.{_new}")

import pandas as pd  # noqa: E402

if int(pd.__version__.split(".")[0]) >= 3:
    raise SystemExit(f"RecBole 1.2.1 needs pandas 2.x (found {pd.__version__}): see requirements-recbole.txt")
warnings.filterwarnings("ignore", category=FutureWarning)
warnings.filterwarnings("ignore", category=UserWarning)

import torch  # noqa: E402

import recbole  # noqa: E402
from recbole.config import Config  # noqa: E402
from recbole.data import create_dataset, data_preparation  # noqa: E402
from recbole.model.context_aware_recommender import DeepFM  # noqa: E402
from recbole.trainer import Trainer  # noqa: E402
from recbole.utils import init_seed  # noqa: E402

from export import fixture_common  # noqa: E402
from export import vocabularies  # noqa: E402
from export.recbole import export, field_order, minmax_entry  # noqa: E402

DATA = os.environ.get("DEEPFM_RECBOLE_DATA",
                      os.path.join(REPO, os.pardir, "shared", "data", "ml-100k-atomic"))
OUT = os.path.join(REPO, "tests", "fixtures", "interop", "recbole-ml100k")
DATASET = "ml100k"
N_BATCH = 1000
SEED = 2024
PRODUCED_BY = (
    "model.predict(interaction) of RecBole's DeepFM (recbole.model.context_aware_recommender.DeepFM) in "
    "eval mode under torch.no_grad(), one batch of 1000 rows: the first 1000 rows of RecBole's test split "
    "joined with their user / item features by Dataset.join; interaction = int64 ids for token fields, "
    "int64 [1000, 6] for class, float32 [1000, 2] = (value, 1.0) for age (the value is listed here; the "
    "index is 1 on every row)"
)

CONFIG = {
    "load_col": {"inter": ["user_id", "item_id", "rating"],
                 "user": ["user_id", "age", "gender", "occupation"],
                 "item": ["item_id", "release_year", "class"]},
    "USER_ID_FIELD": "user_id", "ITEM_ID_FIELD": "item_id", "RATING_FIELD": "rating",
    "LABEL_FIELD": "label", "threshold": {"rating": 4},
    "field_separator": "\t", "seq_separator": " ",
    "numerical_features": ["age"], "normalize_all": True, "normalize_field": None, "discretization": None,
    "embedding_size": 8, "mlp_hidden_size": [32, 16], "dropout_prob": 0.1,
    "epochs": 1, "train_batch_size": 256, "learning_rate": 2e-3, "learner": "adam", "weight_decay": 0.0,
    "eval_args": {"split": {"RS": [0.8, 0.1, 0.1]}, "order": "RO", "group_by": None, "mode": "labeled"},
    "train_neg_sample_args": None, "metrics": ["AUC", "LogLoss"], "valid_metric": "AUC",
    "eval_batch_size": N_BATCH,
    "use_gpu": False, "seed": SEED, "reproducibility": True, "worker": 0, "shuffle": True,
    "show_progress": False, "state": "WARNING", "save_dataset": False, "save_dataloaders": False,
}


# ----------------------------------------------------------------------------------------------
# data
# ----------------------------------------------------------------------------------------------

def copy_dataset(tmp):
    """The atomic files as dataset DATASET in tmp/DATASET/, age declared float."""
    d = os.path.join(tmp, DATASET)
    os.makedirs(d)
    for ext in ("inter", "item", "user"):
        src = os.path.join(DATA, f"ml-100k.{ext}")
        dst = os.path.join(d, f"{DATASET}.{ext}")
        if ext != "user":
            shutil.copyfile(src, dst)
            continue
        with open(src, encoding="utf-8") as f:
            text = f.read()
        head, rest = text.split("\n", 1)
        assert head.split("\t")[1] == "age:token", head
        with open(dst, "w", encoding="utf-8") as f:
            f.write(head.replace("age:token", "age:float") + "\n" + rest)
    return d


def raw_ages():
    """{raw user token: raw age text} from the .user file."""
    out = {}
    with open(os.path.join(DATA, "ml-100k.user"), encoding="utf-8") as f:
        next(f)
        for line in f:
            cells = line.rstrip("\n").split("\t")
            out[cells[0]] = cells[1]
    return out


def raw_cells(name, ftype, value, id_token, vocabs, ages, user_token):
    """The raw.tsv cell of one field of one row."""
    if ftype == "float":
        return ages[user_token]
    if ftype == "token_seq":
        return vocabs[name]["sep"].join(str(id_token[name][t]) for t in value if t != 0)
    return str(id_token[name][value]) if value != 0 else ""


def main():
    t0 = time.time()
    torch.set_num_threads(1)
    ages = raw_ages()
    cwd = os.getcwd()
    with tempfile.TemporaryDirectory(prefix="recbole-ml100k-") as tmp:
        copy_dataset(tmp)
        os.chdir(tmp)  # RecBole writes log_tensorboard/ (and saved/) under the working directory
        try:
            config = Config(model="DeepFM", dataset=DATASET,
                            config_dict={**CONFIG, "data_path": tmp, "checkpoint_dir": os.path.join(tmp, "saved")})
            assert config["data_path"] == os.path.join(tmp, DATASET), config["data_path"]
            init_seed(config["seed"], config["reproducibility"])
            dataset = create_dataset(config)
            train_data, valid_data, test_data = data_preparation(config, dataset)
            init_seed(config["seed"], config["reproducibility"])
            model = DeepFM(config, train_data._dataset).to(config["device"])
            trainer = Trainer(config, model)
            trainer.fit(train_data, valid_data=None, saved=False, show_progress=False)
            steps = len(train_data)
            result = trainer.evaluate(test_data, load_best_model=False, show_progress=False)
            print(f"trained 1 epoch: {steps} steps of {config['train_batch_size']} rows "
                  f"({len(train_data._dataset)} training rows); test split "
                  f"({len(test_data._dataset)} rows): {dict(result)}")

            # The batch: the first N_BATCH test rows, user / item features joined.
            test_ds = test_data._dataset
            inter = test_ds.join(test_ds.inter_feat[np.arange(N_BATCH)])
            model.eval()
            with torch.no_grad():
                pred = model.predict(inter).numpy()
                first = next(iter(test_data))
                _, scores, _, _ = trainer._neg_sample_batch_eval(first)
            # RecBole's own evaluation path gives the same numbers for the same rows.
            assert len(first[0]) == N_BATCH
            for k in inter.interaction:
                assert torch.equal(inter[k], first[0][k]), k
            assert np.array_equal(scores.numpy(), pred), np.abs(scores.numpy() - pred).max()

            # "numeric": age's mean fill + min-max normalisation, from the raw .user column.
            id_token = dataset.field2id_token
            raw_age_col = [float(ages[t]) for t in id_token["user_id"][1:]]
            numeric = {"age": minmax_entry(raw_age_col, what="age")}
            description = export(model, dataset, OUT, numeric=numeric)
            vocabs = description["vocabularies"]

            # The entry on the raw age of every user row of RecBole's user_feat ([PAD] row 0: an empty
            # cell -> fill_na) gives RecBole's float32 model input.
            uf_age = dataset.user_feat["age"].numpy()
            assert (uf_age[:, 1] == 1.0).all()
            worst = 0
            for uid in range(len(uf_age)):
                cell = "" if uid == 0 else ages[id_token["user_id"][uid]]
                got = vocabularies.apply_numeric(numeric["age"], cell, "age")
                worst = max(worst, vocabularies.f32_ulps(got, float(uf_age[uid, 0])))
            print(f"numeric age {numeric['age']}: on all {len(uf_age)} user rows ([PAD] row included) "
                  f"max {worst} float32 steps from RecBole's values")
            assert worst <= 1, worst

            features = []
            for name, ftype in field_order(model):
                v = inter[name]
                if ftype == "float":
                    assert v.shape == (N_BATCH, 2) and bool((v[:, 1] == 1.0).all()), name
                    features.append((name, "f32", v[:, 0].numpy()))
                elif ftype == "token_seq":
                    features.append((name, "seq", v.numpy().tolist()))
                else:
                    features.append((name, "int", v.numpy()))
            fixture_common.write_batch(OUT, features, pred, PRODUCED_BY)

            # raw.tsv (first 50 rows); every batch row is checked to map back through the vocabularies.
            user_tokens = [id_token["user_id"][u] for u in inter["user_id"].tolist()]
            rows = []
            for r in range(N_BATCH):
                cells = []
                for (name, kind, values) in features:
                    ftype = dict(field_order(model))[name]
                    value = values[r] if kind == "seq" else (float(values[r]) if kind == "f32" else int(values[r]))
                    cells.append(raw_cells(name, ftype, value, id_token, vocabs, ages, user_tokens[r]))
                rows.append(cells)
            header = [name for name, _, _ in features]
            for r, cells in enumerate(rows):
                for (name, kind, values), cell in zip(features, cells):
                    if name in description.get("numeric", {}):
                        got = vocabularies.apply_numeric(description["numeric"][name], cell, name)
                        assert vocabularies.f32_ulps(got, float(values[r])) == 0, (r, name, cell)
                    elif kind == "seq":
                        ids = [vocabs[name]["ids"][t] for t in cell.split(vocabs[name]["sep"]) if t]
                        assert ids + [0] * (len(values[r]) - len(ids)) == list(values[r]), (r, name)
                    else:
                        assert vocabs[name]["ids"][cell] == int(values[r]), (r, name, cell)
            vocabularies.write_raw_tsv(OUT, header, rows[: vocabularies.RAW_ROWS])
            orig = vocabularies._feature_order
            vocabularies._feature_order = fixture_common.feature_order_with_recbole(orig)
            try:
                checked, oov, ulps = vocabularies.check_raw_tsv(OUT)
            finally:
                vocabularies._feature_order = orig
            assert checked == vocabularies.RAW_ROWS
            print("vocabularies:", {n: (len(v["ids"]), v["oov"], v.get("sep")) for n, v in vocabs.items()},
                  "; raw.tsv rows checked:", checked, "; numeric max float32 steps:", ulps)
            print("fields (FM / MLP order):", [(f["name"], f["type"], f["vocab"]) for f in description["fields"]])
            print("state_dict:", {k: tuple(v.shape) for k, v in model.state_dict().items()})
            print(f"predictions: min {pred.min():.4f} max {pred.max():.4f} mean {pred.mean():.4f}")
        finally:
            os.chdir(cwd)
    sizes = {f: os.path.getsize(os.path.join(OUT, f)) for f in sorted(os.listdir(OUT))}
    print("wrote", OUT, sizes, "total", sum(sizes.values()), "B")
    print(f"recbole {recbole.__version__}, torch {torch.__version__}, numpy {np.__version__}, "
          f"pandas {pd.__version__}, shims {SHIMS}, {time.time() - t0:.1f}s")


if __name__ == "__main__":
    main()
