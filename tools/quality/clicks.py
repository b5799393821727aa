#!/usr/bin/env python3
"""Click quality of `deepfm train --data --schema` with its defaults against logistic regression.

MovieLens ratings become clicks (label 1 if the rating is at least 4, else 0) with the fields
user, item, gender, age, occupation, zip (its first 3 characters), all categorical, and genres
(multi-valued: a `multi_hot` field, `|`-joined). For each seed the rating rows are split at
random 80/20 (Python's `random.Random(seed)`), written as train.csv / test.csv (comma-separated,
with a header) beside a schema JSON, and:

- DeepFM: `deepfm train --data train.csv --schema schema.json --out m.dfm` with nothing else
  unless flags are given after `--` (its defaults: early stopping on 10% of the lines held out,
  the best epoch's weights kept), then `deepfm predict --model m.dfm --data test.csv` (the
  label column is ignored there); test AUC and log loss computed here.
- Logistic regression (scikit-learn, lbfgs) on the same training rows: one-hot of every
  categorical value seen in training plus a multi-hot of the genres; C chosen by log loss on
  10% of the training part cut off at random (`numpy` seed = the split seed) among
  {0.01, 0.03, 0.1, 0.3, 1, 3}, then refitted on the whole training part with that C.

The test part is never used for any choice, by either model.

    /work/venv-interop/bin/python tools/quality/clicks.py --data ../shared/data/ml-100k --seeds 1,2
    /work/venv-interop/bin/python tools/quality/clicks.py --data ../shared/data/ml-1m --seeds 1,2 [--json] [-- --dropout 0.5]

Prints one line per run and, with several seeds, the mean; `--json` adds a JSON line per run.
The DeepFM side uses only the standard library and `target/release/deepfm`
(cargo build --release); the baseline and the metrics need numpy, scipy and scikit-learn.
"""

import argparse
import json
import math
import os
import random
import re
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))

COLUMNS = ["user", "item", "gender", "age", "occupation", "zip", "genres"]
CATEGORICAL = COLUMNS[:-1]
C_GRID = [0.01, 0.03, 0.1, 0.3, 1.0, 3.0]
EPS = 1e-7  # probabilities are clipped to [EPS, 1 - EPS] for the log loss

ML100K_GENRES = ["unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime",
                 "Documentary", "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery",
                 "Romance", "Sci-Fi", "Thriller", "War", "Western"]


def read_lines(path):
    with open(path, encoding="latin-1") as f:
        return [line.rstrip("\r\n") for line in f if line.strip()]


def load(data):
    """Returns the rows [label, user, item, gender, age, occupation, zip3, genres] in file order."""
    if os.path.exists(os.path.join(data, "ratings.dat")):  # ml-1m
        users = {}
        for line in read_lines(os.path.join(data, "users.dat")):
            uid, gender, age, occ, zipcode = line.split("::")[:5]
            users[uid] = [gender, age, occ, zipcode[:3]]
        items = {}
        for line in read_lines(os.path.join(data, "movies.dat")):
            mid, _title, genres = line.split("::")
            items[mid] = genres
        ratings = [line.split("::")[:3] for line in read_lines(os.path.join(data, "ratings.dat"))]
    elif os.path.exists(os.path.join(data, "u.data")):  # ml-100k
        users = {}
        for line in read_lines(os.path.join(data, "u.user")):
            uid, age, gender, occ, zipcode = line.split("|")[:5]
            users[uid] = [gender, age, occ, zipcode[:3]]
        items = {}
        for line in read_lines(os.path.join(data, "u.item")):
            cells = line.split("|")
            flags = cells[-19:]
            items[cells[0]] = "|".join(g for g, v in zip(ML100K_GENRES, flags) if v == "1")
        ratings = [line.split("\t")[:3] for line in read_lines(os.path.join(data, "u.data"))]
    else:
        sys.exit(f"{data}: no ratings.dat or u.data")
    rows = []
    for user, item, rating in ratings:
        label = 1 if float(rating) >= 4 else 0
        rows.append([label, user, item] + users[user] + [items[item]])
    for row in rows:  # written unquoted: no delimiter or quote may appear in a value
        for v in row[1:]:
            if "," in v or '"' in v:
                sys.exit(f"value {v!r} holds a comma or a quote")
    return rows


def split(rows, seed, test_fraction):
    """The training and test rows: a random 80/20 split of the rows by `random.Random(seed)`."""
    order = list(range(len(rows)))
    random.Random(seed).shuffle(order)
    cut = int(len(rows) * test_fraction)
    return [rows[k] for k in order[cut:]], [rows[k] for k in order[:cut]]


def write_csv(path, rows):
    with open(path, "w") as f:
        f.write("label," + ",".join(COLUMNS) + "\n")
        f.writelines(",".join(map(str, r)) + "\n" for r in rows)


SCHEMA = {
    "label": "label",
    "fields": [{"name": c, "kind": "categorical"} for c in CATEGORICAL]
    + [{"name": "genres", "kind": "multi_hot", "sep": "|"}],
}


def metrics(y, p):
    """(AUC, log loss) of probabilities p for labels y."""
    import numpy as np
    from sklearn.metrics import roc_auc_score
    y = np.asarray(y, dtype=np.float64)
    p = np.clip(np.asarray(p, dtype=np.float64), EPS, 1 - EPS)
    logloss = float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))
    return float(roc_auc_score(y, p)), logloss


def run_deepfm(binary, train_rows, test_rows, flags, work):
    train, test = os.path.join(work, "train.csv"), os.path.join(work, "test.csv")
    write_csv(train, train_rows)
    write_csv(test, test_rows)
    schema = os.path.join(work, "schema.json")
    with open(schema, "w") as f:
        json.dump(SCHEMA, f)
    model = os.path.join(work, "m.dfm")
    # `--json` is accepted by `train` but prints nothing for `--data` (only `--ratings` has a
    # summary), so the epochs are read from stderr and the best epoch from stdout.
    cmd = [binary, "train", "--data", train, "--schema", schema, "--out", model] + flags
    started = time.time()
    done = subprocess.run(cmd, capture_output=True, text=True)
    seconds = time.time() - started
    if done.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed:\n{done.stderr[-3000:]}")
    valid = [float(v) for v in re.findall(r"^epoch \d+: .*valid loss ([0-9.]+)", done.stderr, re.M)]
    m = re.search(r"weights of epoch (\d+) of (\d+)", done.stdout)
    best_epoch, epochs = (int(m.group(1)), int(m.group(2))) if m else (None, None)
    pred = subprocess.run([binary, "predict", "--model", model, "--data", test],
                          capture_output=True, text=True)
    if pred.returncode != 0:
        sys.exit(f"deepfm predict failed:\n{pred.stderr[-3000:]}")
    p = [float(s) for s in pred.stdout.split()]
    if len(p) != len(test_rows):
        sys.exit(f"deepfm predict gave {len(p)} scores for {len(test_rows)} test rows")
    auc, logloss = metrics([r[0] for r in test_rows], p)
    return {
        "deepfm_auc": auc,
        "deepfm_logloss": logloss,
        "deepfm_best_epoch": best_epoch,
        "deepfm_epochs": epochs,
        "deepfm_best_valid_loss": min(valid) if valid else None,
        "deepfm_seconds": round(seconds, 1),
        "deepfm_mean_score": sum(p) / len(p),
    }


def one_hot(train_rows, other_rows):
    """Sparse one-hot (categorical) plus multi-hot (genres) matrices; the columns are the
    values seen in `train_rows`, unseen values get none."""
    import numpy as np
    import scipy.sparse as sp
    index = {}
    for r in train_rows:
        for j, c in enumerate(COLUMNS):
            values = r[1 + j].split("|") if c == "genres" else [r[1 + j]]
            for v in values:
                if v:
                    index.setdefault((c, v), len(index))

    def matrix(rows):
        indptr, indices = [0], []
        for r in rows:
            cols = set()
            for j, c in enumerate(COLUMNS):
                values = r[1 + j].split("|") if c == "genres" else [r[1 + j]]
                cols.update(index[(c, v)] for v in values if (c, v) in index)
            indices.extend(sorted(cols))
            indptr.append(len(indices))
        data = np.ones(len(indices), dtype=np.float64)
        return sp.csr_matrix((data, indices, indptr), shape=(len(rows), len(index)))

    return matrix(train_rows), [matrix(rows) for rows in other_rows]


def run_lr(train_rows, test_rows, seed, valid_fraction):
    import numpy as np
    from sklearn.linear_model import LogisticRegression
    started = time.time()
    y_train = np.array([r[0] for r in train_rows])
    y_test = np.array([r[0] for r in test_rows])
    order = np.random.RandomState(seed).permutation(len(train_rows))
    cut = int(len(train_rows) * valid_fraction)
    fit_idx, valid_idx = order[cut:], order[:cut]
    fit_rows = [train_rows[k] for k in fit_idx]
    valid_rows = [train_rows[k] for k in valid_idx]
    # C is chosen with columns from the fitting part only (the validation part plays the test).
    x_fit, (x_valid,) = one_hot(fit_rows, [valid_rows])
    choice = {}
    for c in C_GRID:
        lr = LogisticRegression(C=c, solver="lbfgs", max_iter=2000)
        lr.fit(x_fit, y_train[fit_idx])
        choice[c] = metrics(y_train[valid_idx], lr.predict_proba(x_valid)[:, 1])[1]
    best_c = min(choice, key=choice.get)
    x_train, (x_test,) = one_hot(train_rows, [test_rows])
    lr = LogisticRegression(C=best_c, solver="lbfgs", max_iter=2000)
    lr.fit(x_train, y_train)
    auc, logloss = metrics(y_test, lr.predict_proba(x_test)[:, 1])
    return {
        "lr_auc": auc,
        "lr_logloss": logloss,
        "lr_c": best_c,
        "lr_valid_logloss": {str(c): round(v, 5) for c, v in choice.items()},
        "lr_seconds": round(time.time() - started, 1),
    }


def main():
    argv = sys.argv[1:]
    flags = []
    if "--" in argv:
        cut = argv.index("--")
        argv, flags = argv[:cut], argv[cut + 1:]
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", required=True, help="ml-100k or ml-1m folder")
    p.add_argument("--seeds", default="1,2", help="split seeds, comma-separated")
    p.add_argument("--test-fraction", type=float, default=0.2)
    p.add_argument("--lr-valid-fraction", type=float, default=0.1,
                   help="share of the training part that chooses the regression's C")
    p.add_argument("--binary", default=os.path.join(ROOT, "target", "release", "deepfm"))
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    rows = load(args.data)
    name = os.path.basename(os.path.normpath(args.data))
    label = " ".join(flags) if flags else "defaults"
    results = []
    for seed in [int(s) for s in args.seeds.split(",")]:
        train_rows, test_rows = split(rows, seed, args.test_fraction)
        with tempfile.TemporaryDirectory(prefix="deepfm-clicks-") as work:
            r = {"data": name, "seed": seed, "flags": " ".join(flags),
                 "train_rows": len(train_rows), "test_rows": len(test_rows),
                 "test_click_rate": sum(x[0] for x in test_rows) / len(test_rows)}
            r.update(run_deepfm(args.binary, train_rows, test_rows, flags, work))
        r.update(run_lr(train_rows, test_rows, seed, args.lr_valid_fraction))
        r["auc_gain"] = r["deepfm_auc"] - r["lr_auc"]
        r["logloss_gain"] = r["lr_logloss"] - r["deepfm_logloss"]
        results.append(r)
        print(f"{name} seed {seed}: deepfm AUC {r['deepfm_auc']:.4f} logloss "
              f"{r['deepfm_logloss']:.4f} (epoch {r['deepfm_best_epoch']} of "
              f"{r['deepfm_epochs']}, {r['deepfm_seconds']} s) | LR AUC {r['lr_auc']:.4f} "
              f"logloss {r['lr_logloss']:.4f} (C {r['lr_c']}) | deepfm - LR: AUC "
              f"{r['auc_gain']:+.4f}, logloss {-r['logloss_gain']:+.4f}  [{label}]", flush=True)
        if args.json:
            print(json.dumps(r), flush=True)
    if len(results) > 1:
        mean = lambda k: sum(r[k] for r in results) / len(results)
        print(f"mean over {len(results)} seeds: deepfm AUC {mean('deepfm_auc'):.4f} logloss "
              f"{mean('deepfm_logloss'):.4f} ({mean('deepfm_seconds'):.1f} s) | LR AUC "
              f"{mean('lr_auc'):.4f} logloss {mean('lr_logloss'):.4f} | deepfm - LR: AUC "
              f"{mean('auc_gain'):+.4f}, logloss {-mean('logloss_gain'):+.4f}  [{label}]")


if __name__ == "__main__":
    main()
