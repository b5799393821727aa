#!/usr/bin/env python3
"""Side by side: each framework's own CPU inference vs `deepfm` on the model imported from it.

For every interop fixture (tests/fixtures/interop/<name>: a DeepFM trained by DeepCTR-Torch,
FuxiCTR, CoreRec or RecBole, or a DeepFM head over torchrec EmbeddingBagCollections trained
sharded by torchrec; its state_dict, description.json and 1000 rows with the framework's own
predictions) this script

1. rebuilds the framework's model object from description.json, loads model.safetensors with
   load_state_dict (strict) and checks that it reproduces batch.json's predictions
   (max |diff| <= 1e-5, through every timed path, batch and one row at a time), else exits 1;
2. imports the fixture into a temporary .dfm with `deepfm import --from <framework>`;
3. times, at batch 1 and 4096, one thread everywhere, interleaved (a, b, c back to back per
   round, `--repeat` rounds, medians of the per-round figures and ratios):
   (a) the framework's predict path as its users call it,
   (b) a bare module forward under torch.no_grad() on ready tensors,
   (c) `deepfm bench --model M.dfm --batch N --threads 1 --seconds S --json`;
4. prints a markdown table (microseconds per sample, ratios framework/deepfm) and, with
   --json FILE, writes every raw number.

The fixtures are tiny (D = 4..8, DNN 32-16), so framework overhead dominates their figures. After
them (unless --no-synthetic) comes a production-sized case, `deepctr-criteo-400`, built in the
same interpreter (it needs deepctr_torch): a DeepCTR-Torch DeepFM with 13 DenseFeat + 26
SparseFeat (vocabularies in SYNTHETIC_VOCABS, a realistic mix for one Criteo day after min-count
filtering: 938,755 ids, ~64 MB of tables), embedding_dim 16, dnn_hidden_units (400, 400, 400),
dnn_use_bn=True, relu, task "binary". Nothing is trained; every weight is drawn with a fixed seed
(DeepCTR's own init_std of 1e-4 would leave each score at sigmoid(bias) to ~1e-8, which would
make the agreement check empty): embeddings N(0, 0.1), first-order weights N(0, 0.05) / N(0, 0.1)
(dense), He-scaled DNN weights, batch norm with random running_mean/running_var around each
layer's pre-activation scale and random weight/bias, out bias -1 (scores 0.04..0.94 on the check
rows). It is exported with tools/export/deepctr_torch.py's export() into the temporary folder
with a batch.json (1000 random rows: uniform ids, dense values in [0, 1); predictions by the
in-memory model's `predict`), then goes through steps 1-3 like a fixture, with one more check
after the import: `deepfm score` of those rows (a TSV in the imported model's field order, read
from `deepfm inspect`) must agree with the framework's predictions within 1e-5, else exit 1.
Its timing inputs are 2^17 random rows (the checked ones first), the number `deepfm bench`
cycles through, so that both sides read from the whole ~64 MB table rather than from cache:
batch 4096 cycles through 32 distinct batches, batch 1 through the first 4096 rows.

Exact commands (from the repository root; the venvs are described in tools/peers/README.md):

    # everything in one run: DeepCTR-Torch + CoreRec here, FuxiCTR, RecBole and torchrec each in a
    # child process of its own venv
    /work/venv-interop/bin/python tools/peers/frameworks.py \\
        --fuxi-python /work/venv-fuxi/bin/python --recbole-python /work/venv-recbole/bin/python \\
        --torchrec-python /work/venv-torchrec/bin/python --json frameworks.json

    # or one invocation per venv (deepctr-criteo-400 is added to the first one by default)
    /work/venv-interop/bin/python tools/peers/frameworks.py \\
        --fixtures deepctr-ml100k,deepctr-criteo,corerec-ml100k --json frameworks-interop.json
    /work/venv-fuxi/bin/python tools/peers/frameworks.py \\
        --fixtures fuxictr-ml100k --no-synthetic --json frameworks-fuxi.json
    /work/venv-recbole/bin/python tools/peers/frameworks.py \\
        --fixtures recbole-ml100k --no-synthetic --json frameworks-recbole.json
    /work/venv-torchrec/bin/python tools/peers/frameworks.py \\
        --fixtures torchrec-ml100k --no-synthetic --json frameworks-torchrec.json

    # only the production-sized case
    /work/venv-interop/bin/python tools/peers/frameworks.py --fixtures deepctr-criteo-400

    # smoke run (busy machine; numbers not worth keeping)
    /work/venv-interop/bin/python tools/peers/frameworks.py \\
        --fuxi-python /work/venv-fuxi/bin/python --recbole-python /work/venv-recbole/bin/python \\
        --torchrec-python /work/venv-torchrec/bin/python --seconds 0.3 --repeat 1

    # agreement checks and imports only, no timing (~30 s)
    /work/venv-interop/bin/python tools/peers/frameworks.py \\
        --fuxi-python /work/venv-fuxi/bin/python --recbole-python /work/venv-recbole/bin/python \\
        --torchrec-python /work/venv-torchrec/bin/python --check-only

    # RecBole alone, from the interop venv
    /work/venv-interop/bin/python tools/peers/frameworks.py --fixtures recbole-ml100k --no-synthetic \\
        --recbole-python /work/venv-recbole/bin/python --seconds 0.3 --repeat 1

    # torchrec alone, from the interop venv (smoke run)
    /work/venv-interop/bin/python tools/peers/frameworks.py --fixtures torchrec-ml100k --no-synthetic \\
        --torchrec-python /work/venv-torchrec/bin/python --seconds 0.3 --repeat 1

What (a) is, per framework:

* DeepCTR-Torch: `model.predict(x_dict, batch_size=<batch>)` on a dict of numpy arrays (one per
  feature column, as the fixture was predicted). That call builds a TensorDataset + DataLoader
  (per-row indexing and collation), runs the module under no_grad and returns float64 numpy.
  (b) is `model(x)` on the float32 [B, input_dim] tensor predict would build.
* FuxiCTR: `model.predict([batch_dict])`, i.e. BaseModel.predict's loop for one batch: eval(),
  no_grad, `forward` (get_inputs, embeddings, FM, MLP, sigmoid), `.cpu().numpy()`, its
  `list.extend` of the scores and `np.array(..., float64)`. `batch_dict` is what FuxiCTR's own
  data loaders hand that loop, built off the clock with FuxiCTR's BatchCollator from rows of
  the column-stacked array NpzDataset keeps (float64 column views, labels included). A fourth
  figure (FuxiCTR only, printed under the table and in the JSON as `predict_loader`) also puts
  the loader on the clock: `model.predict(DataLoader(NpzDataset, batch_size=<batch>,
  num_workers=0, collate_fn=BatchCollator))`, which is closer to what DeepCTR's predict
  includes (FuxiCTR's default num_workers=1 would add a worker process; not used).
  (b) is `model(tensors)["y_pred"]` under no_grad with int64/float32 contiguous tensors.
* CoreRec: `recommender.predict(user, item)` resolves raw ids and side features through Python
  dicts, one row per call, so it is not timed. (a) is the rest of the recommender's own path on
  pre-resolved per-field indices: eval(), no_grad, the inner module on `torch.LongTensor(...)`,
  `.item()` for batch 1 (as predict does), `.detach().cpu().numpy().flatten()` for batch 4096 (as
  its `_score_all_items` does). (b) is the inner module on a ready LongTensor. Both are the
  inner module's forward under no_grad; they differ only by the tensor plumbing.
* RecBole: `model.predict(interaction)` under no_grad, model in eval mode, as
  `Trainer.evaluate` / `_neg_sample_batch_eval` call it (evaluate sets eval() once and runs under
  no_grad; it also calls `interaction.to(device)` first, a copy of the dict that is a no-op per
  tensor on the CPU, left out here). `interaction` is a `recbole.data.interaction.Interaction`
  built off the clock from the batch rows, holding what RecBole's loaders put there: int64 [B]
  ids per token field, int64 [B, 6] padded `class` lists, float32 [B, 2] (value, 1.0) for `age`.
  predict is `sigmoid(forward(interaction))` and forward reads those tensors by name: RecBole's
  predict builds nothing, so there is no separate bare path to time. (b) is the same computation,
  `torch.sigmoid(model(tensors))` on a plain dict of the same tensors (the Interaction lookups and
  `predict`'s direct `self.forward` call replaced by a dict and `Module.__call__`), kept so that
  the table has the column; (a) and (b) should agree within noise. The model is RecBole's own
  `DeepFM(config, dataset)`: `config` a RecBole `Config` (model DeepFM, embedding_size,
  mlp_hidden_size, dropout_prob, numerical_features = the float fields, CPU; it reads no data),
  `dataset` a stand-in with the three things the model reads of a Dataset (`fields(source=...)`,
  `field2type`, `num(field)`) from description.json's "fields". RecBole 1.2.1 runs in its own
  venv with numpy 2, so the np.float_ / np.complex_ / np.unicode_ aliases that its Config reads are
  set first (as tools/export/make_fixtures_recbole.py does); pandas (imported by recbole.data) is
  not used on this path.
* torchrec: the fixture's model is not a torchrec model class but `TorchrecDeepFM`, defined in
  tools/export/make_fixtures_torchrec.py (imported from there; its constants are checked against
  description.json): two `EmbeddingBagCollection`s (`sparse`, D = 8; `first_order`, 1-dim) and a
  DeepFM head (FM, first-order sum, MLP 32-16 with BatchNorm, global bias). It was trained sharded
  (DistributedModelParallel, 2 CPU processes); here it is rebuilt unsharded, in one process, and
  loads model.safetensors strict. torchrec has no predict path of its own: a torchrec user runs
  inference as the module's forward on a `KeyedJaggedTensor`, in eval mode under no_grad, which is
  how the fixture script predicts batch.json. So (a) is `torch.sigmoid(model(kjt))` under no_grad,
  model in eval mode, and (b) is the very same call (there is no separate predict path to compare
  it with; (a) and (b) differ only by noise). `kjt` is built off the clock by the fixture script's
  `make_kjt` (`KeyedJaggedTensor.from_lengths_sync`, keys user, item, prev_item, gender,
  occupation, genres; int64 values, int32 lengths: 1 per row, genres the movie's 1..6 ids, no
  padding). `EmbeddingBagCollection.forward` caches the KJT's per-feature split (`kjt.to_dict()`,
  in `kjt._jt_dict`, the only attribute a forward changes) on the KJT, so each timed call first
  resets `kjt._jt_dict = None`: every call starts from the state a fresh request's KJT is in, and
  the split stays on the clock.

Inputs: the fixture's 1000 rows (torchrec: one KeyedJaggedTensor per call of those rows); batch 1 cycles through them one row per call, batch 4096 is
the rows tiled (row i -> i % 1000). Input building is off the clock. `deepfm bench` draws its own
random inputs from the imported model's spec (uniform ids, multi-hot lists of 0-5 ids, cycling
2^17 rows); the tables of these models are small (well under 1 MB) so both sides run from cache.
(deepctr-criteo-400 differs: see above.)
Timing of (a)/(b) is as in compare.py: warm-up min(10% of --seconds, 0.5 s), then calls until
--seconds have passed; samples/s = calls * batch / elapsed. 0.5 s pauses separate measurements.
"""
import os

# One thread everywhere, fixed before torch / numpy load their thread pools.
for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import importlib.util  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

HERE = Path(__file__).resolve().parent
TOOLS = HERE.parent
REPO = TOOLS.parent
FIXTURES = REPO / "tests" / "fixtures" / "interop"
DEFAULT_FIXTURES = ("deepctr-ml100k", "deepctr-criteo", "fuxictr-ml100k", "corerec-ml100k", "recbole-ml100k",
                    "torchrec-ml100k")
TOLERANCE = 1e-5
# fixture-name prefix -> (framework as `deepfm import --from` spells it, python package)
FRAMEWORKS = {"deepctr": ("deepctr-torch", "deepctr_torch"), "fuxictr": ("fuxictr", "fuxictr"),
              "corerec": ("corerec", "corerec"), "recbole": ("recbole", "recbole"),
              "torchrec": ("torchrec", "torchrec")}
# frameworks that may run in a child process of another interpreter: framework -> its option
CHILD_OPTIONS = {"fuxictr": "--fuxi-python", "recbole": "--recbole-python", "torchrec": "--torchrec-python"}


def framework_of(fixture):
    prefix = fixture.split("-", 1)[0]
    if prefix not in FRAMEWORKS:
        sys.exit(f"{fixture}: unknown framework prefix {prefix!r} (expected one of {sorted(FRAMEWORKS)})")
    return FRAMEWORKS[prefix]


def import_torch():
    import torch

    torch.set_num_threads(1)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:  # already set (or parallel work already ran): keep going
        pass
    return torch


def load_batch(fixture_dir):
    b = json.loads((fixture_dir / "batch.json").read_text())
    return b["features"], np.asarray(b["predictions"], dtype=np.float32).astype(np.float64)


def max_abs(a, ref):
    return float(np.max(np.abs(np.asarray(a, dtype=np.float64).reshape(-1) - ref)))


# ----------------------------------------------------------------------------- frameworks
# Each runner: .model (the framework's object), .versions(), .predict_input(idx) / .predict(inp),
# .forward_input(idx) / .forward(inp); optional .loader_input(idx) / .predict_loader(inp).
# The *_input methods build everything off the clock; predict/forward return the scores.

def deepctr_offline():
    """deepctr_torch starts a thread on import that asks PyPI for a newer version: keep it offline."""
    import requests

    def offline(*args, **kwargs):
        raise requests.ConnectionError("frameworks.py runs offline")

    requests.get = offline


class DeepCTRRunner:
    def __init__(self, d):
        deepctr_offline()
        import deepctr_torch
        from deepctr_torch.inputs import DenseFeat, SparseFeat, VarLenSparseFeat
        from deepctr_torch.models import DeepFM
        from safetensors.torch import load_file

        self.torch = torch = import_torch()
        self.version = deepctr_torch.__version__
        desc = json.loads((d / "description.json").read_text())
        types = {"SparseFeat": SparseFeat, "DenseFeat": DenseFeat, "VarLenSparseFeat": VarLenSparseFeat}

        def column(c):
            kw = {k: v for k, v in c.items() if k != "type"}
            if c["type"] == "VarLenSparseFeat":
                kw["sparsefeat"] = column(kw["sparsefeat"])
            return types[c["type"]](**kw)

        linear = [column(c) for c in desc["linear_feature_columns"]]
        dnn = [column(c) for c in desc["dnn_feature_columns"]]
        self.model = DeepFM(linear, dnn, use_fm=desc["use_fm"], dnn_hidden_units=tuple(desc["dnn_hidden_units"]),
                            dnn_activation=desc["dnn_activation"] or "relu", dnn_use_bn=desc["dnn_use_bn"],
                            task=desc["task"], device="cpu")
        if desc["dnn_use_bn"]:
            for bn in self.model.dnn.bn:
                bn.eps = desc["bn_eps"]
        self.model.load_state_dict(load_file(str(d / "model.safetensors")), strict=True)
        self.model.eval()
        feats, _ = load_batch(d)
        dense = {c.name for c in linear + dnn if isinstance(c, DenseFeat)}
        # One array per input, in feature_index order (the order predict concatenates them in).
        self.arrays = {name: np.asarray(feats[name], dtype=np.float32 if name in dense else np.int64)
                       for name in self.model.feature_index}

    def versions(self):
        return {"deepctr-torch": self.version}

    def predict_input(self, idx):
        return {k: np.ascontiguousarray(v[idx]) for k, v in self.arrays.items()}

    def predict(self, x):
        return self.model.predict(x, batch_size=len(next(iter(x.values()))))

    def forward_input(self, idx):
        # What predict builds: the columns concatenated (float64 here, as numpy promotes), then .float().
        cols = [v[idx].reshape(len(idx), -1) for v in self.arrays.values()]
        return self.torch.from_numpy(np.concatenate(cols, axis=-1)).float()

    def forward(self, x):
        with self.torch.no_grad():
            return self.model(x)


class FuxiCTRRunner:
    def __init__(self, d):
        sys.path.insert(0, str(TOOLS))  # for export.fuxictr_shims / export.fuxictr_model_zoo
        from export import fuxictr_shims

        fuxictr_shims.install()
        import fuxictr
        from export.fuxictr_model_zoo import DeepFM
        from fuxictr.features import FeatureMap
        from fuxictr.pytorch.dataloaders.npz_dataloader import BatchCollator, NpzDataset
        from safetensors.torch import load_file
        from torch.utils.data import DataLoader

        self.torch = torch = import_torch()
        self.version = fuxictr.__version__
        self.DataLoader, self.NpzDataset = DataLoader, NpzDataset
        desc = json.loads((d / "description.json").read_text())
        fmap, m = desc["feature_map"], desc["model"]
        self.tmp = tempfile.TemporaryDirectory(prefix="frameworks-fuxictr-")
        path = os.path.join(self.tmp.name, "feature_map.json")
        with open(path, "w", encoding="utf-8") as f:
            json.dump(fmap, f)
        self.feature_map = FeatureMap(fmap["dataset_id"], self.tmp.name)
        self.feature_map.load(path, params={"embedding_dim": m["embedding_dim"]})
        sigmoid = m["output_activation"] == "sigmoid"
        self.model = DeepFM(self.feature_map, model_id="DeepFM", gpu=-1,
                            task="binary_classification" if sigmoid else "regression",
                            learning_rate=1e-3, embedding_dim=m["embedding_dim"], hidden_units=m["hidden_units"],
                            hidden_activations=m["hidden_activations"], net_dropout=m["net_dropout"],
                            batch_norm=m["batch_norm"], embedding_regularizer=None, net_regularizer=None,
                            optimizer="adam", loss="binary_crossentropy" if sigmoid else "mse",
                            metrics=["logloss", "AUC"] if sigmoid else ["MSE"], verbose=0,
                            model_root=os.path.join(self.tmp.name, "checkpoints"))
        for mod in self.model.modules():
            if isinstance(mod, torch.nn.BatchNorm1d) and m.get("bn_eps") is not None:
                mod.eps = m["bn_eps"]
        self.model.load_state_dict(load_file(str(d / "model.safetensors")), strict=True)
        self.model.eval()
        feats, _ = load_batch(d)
        spec = self.feature_map.features
        self.arrays = {name: np.asarray(feats[name], dtype=np.float32 if spec[name]["type"] == "numeric"
                                        else np.int64) for name in spec}
        rows = len(next(iter(self.arrays.values())))
        # The array FuxiCTR's NpzDataset keeps: features then labels, column-stacked (the label is
        # not in batch.json and not read by predict: zeros).
        self.darray = np.column_stack([self.arrays[n] for n in spec] +
                                      [np.zeros(rows, np.float32) for _ in self.feature_map.labels])
        self.collate = BatchCollator(self.feature_map)

    def versions(self):
        return {"fuxictr": self.version}

    def predict_input(self, idx):
        # One batch as FuxiCTR's DataLoader yields it (NpzDataset.__getitem__ rows + BatchCollator).
        return self.collate([self.darray[i, :] for i in idx])

    def predict(self, batch):
        return self.model.predict([batch])

    def loader_input(self, idx):
        ds = self.NpzDataset.__new__(self.NpzDataset)  # its __init__ reads an .npz file; same fields
        ds.feature_map, ds.darray = self.feature_map, np.ascontiguousarray(self.darray[idx])
        return self.DataLoader(ds, batch_size=len(idx), shuffle=False, num_workers=0, collate_fn=self.collate)

    def predict_loader(self, loader):
        return self.model.predict(loader)

    def forward_input(self, idx):
        return {k: self.torch.from_numpy(np.ascontiguousarray(v[idx])) for k, v in self.arrays.items()}

    def forward(self, x):
        with self.torch.no_grad():
            return self.model(x)["y_pred"]


class CoreRecRunner:
    def __init__(self, d):
        import corerec
        from corerec.engines.deepfm import DeepFM
        from safetensors.torch import load_file

        self.torch = import_torch()
        self.version = getattr(corerec, "__version__", "unknown")
        desc = json.loads((d / "description.json").read_text())
        # The recommender only serves to build its inner module (dropout is irrelevant in eval mode).
        self.rec = DeepFM(embedding_dim=desc["embedding_dim"], hidden_layers=desc["hidden_layers"], device="cpu")
        self.model = self.rec._build_model(desc["field_dims"], use_sigmoid=desc["use_sigmoid"])
        for mod in self.model.modules():
            if isinstance(mod, self.torch.nn.BatchNorm1d) and desc.get("bn_eps") is not None:
                mod.eps = desc["bn_eps"]
        self.model.load_state_dict(load_file(str(d / "model.safetensors")), strict=True)
        self.model.eval()
        self.rec.model, self.rec.field_dims, self.rec.is_fitted = self.model, list(desc["field_dims"]), True
        feats, _ = load_batch(d)
        self.x = np.stack([np.asarray(feats[n], dtype=np.int64) for n in desc["field_names"]], axis=1)

    def versions(self):
        return {"corerec": self.version}

    def predict_input(self, idx):
        if len(idx) == 1:
            return [int(v) for v in self.x[idx[0]]]  # predict() builds a list of per-field indices
        return np.ascontiguousarray(self.x[idx])

    def predict(self, x):
        model = self.rec.model
        if isinstance(x, list):  # DeepFM.predict after its dict lookups
            model.eval()
            with self.torch.no_grad():
                return model(self.torch.LongTensor([x]).to(self.rec.device)).item()
        model.eval()  # DeepFM._score_all_items after building its index matrix
        with self.torch.no_grad():
            return model(self.torch.LongTensor(x).to(self.rec.device)).detach().cpu().numpy().flatten()

    def forward_input(self, idx):
        return self.torch.from_numpy(np.ascontiguousarray(self.x[idx]))

    def forward(self, x):
        with self.torch.no_grad():
            return self.model(x)


class RecBoleRunner:
    """RecBole's DeepFM (recbole.model.context_aware_recommender.DeepFM) rebuilt without its data.

    The class takes (config, dataset). config is RecBole's own Config (model DeepFM, the fixture's
    embedding_size / mlp_hidden_size / dropout_prob, numerical_features = its float fields, CPU);
    Config reads no data and writes nothing. Of the dataset, RecBole's DeepFM (ContextRecommender and
    FMFirstOrderLinear) reads only fields(source=...), field2type and num(field): a stand-in gives
    them from description.json's "fields" (already in RecBole's order within each type)."""

    def __init__(self, d):
        # RecBole 1.2.1 with numpy 2 (as in tools/export/make_fixtures_recbole.py): Config's
        # compatibility_settings reads np.float_ / np.complex_ / np.unicode_, removed in numpy 2.
        for old, new in (("float_", "float64"), ("complex_", "complex128"), ("unicode_", "str_")):
            if not hasattr(np, old):
                setattr(np, old, getattr(np, new))
        import warnings

        warnings.filterwarnings("ignore", category=FutureWarning)
        warnings.filterwarnings("ignore", category=UserWarning)
        if str(TOOLS) not in sys.path:
            sys.path.insert(0, str(TOOLS))  # for export.recbole (tools/export itself stays off sys.path)
        import pandas
        import recbole
        from recbole.config import Config
        from recbole.data.interaction import Interaction
        from recbole.model.context_aware_recommender import DeepFM
        from recbole.utils import FeatureSource, FeatureType
        from safetensors.torch import load_file

        from export.recbole import field_order

        self.torch = torch = import_torch()
        self.version, self.pandas_version = recbole.__version__, pandas.__version__
        self.Interaction = Interaction
        desc = json.loads((d / "description.json").read_text())
        if desc.get("framework") != "recbole" or desc.get("model") != "DeepFM":
            sys.exit(f"{d}: not a RecBole DeepFM description")
        desc_fields = desc["fields"]

        class Dataset:  # what RecBole's DeepFM reads of a recbole.data.dataset.Dataset
            field2type = {f["name"]: FeatureType(f["type"]) for f in desc_fields}
            field2source = {f["name"]: FeatureSource(f["source"]) for f in desc_fields}

            def fields(self, ftype=None, source=None):  # Dataset.fields, verbatim logic
                ftype = set(ftype) if ftype is not None else set(FeatureType)
                source = set(source) if source is not None else set(FeatureSource)
                return [f for f, t in self.field2type.items() if t in ftype and self.field2source[f] in source]

            def num(self, field):
                return next(f["vocab"] for f in desc_fields if f["name"] == field)

        # Config also parses sys.argv (--key=value overrides, others printed as unused): hide ours.
        argv, sys.argv = sys.argv, sys.argv[:1]
        try:
            config = Config(model="DeepFM", dataset="frameworks-py", config_dict={
                "embedding_size": desc["embedding_size"], "mlp_hidden_size": desc["mlp_hidden_size"],
                "dropout_prob": desc["dropout_prob"], "LABEL_FIELD": desc["label"]["field"],
                "numerical_features": [f["name"] for f in desc_fields if f["type"] == "float"],
                "use_gpu": False, "state": "WARNING", "show_progress": False})
        finally:
            sys.argv = argv
        self.model = DeepFM(config, Dataset())
        if [n for n, _ in field_order(self.model)] != [f["name"] for f in desc_fields]:
            sys.exit(f"{d}: the rebuilt model's field order {field_order(self.model)} differs from "
                     "description.json's")
        self.model.load_state_dict(load_file(str(d / "model.safetensors")), strict=True)
        self.model.eval()
        feats, _ = load_batch(d)
        # The tensors an Interaction of these rows holds, as RecBole's dataloaders build them: int64
        # ids (token), int64 [B, max_len] padded lists (token_seq), float32 [B, 2] = (value, index 1)
        # (float, not discretised).
        self.arrays = {}
        for f in desc_fields:
            x = feats[f["name"]]
            if f["type"] == "float":
                v = np.asarray(x, dtype=np.float32)
                self.arrays[f["name"]] = np.stack([v, np.full_like(v, f["index"])], axis=1)
            else:
                self.arrays[f["name"]] = np.asarray(x, dtype=np.int64)

    def versions(self):
        return {"recbole": self.version, "pandas": self.pandas_version}

    def forward_input(self, idx):
        return {k: self.torch.from_numpy(np.ascontiguousarray(v[idx])) for k, v in self.arrays.items()}

    def predict_input(self, idx):
        return self.Interaction(self.forward_input(idx))

    def predict(self, interaction):
        with self.torch.no_grad():  # Trainer.evaluate: eval() once, no_grad, model.predict(batch)
            return self.model.predict(interaction)

    def forward(self, x):
        with self.torch.no_grad():
            return self.torch.sigmoid(self.model(x))


class TorchrecRunner:
    """The fixture's TorchrecDeepFM (tools/export/make_fixtures_torchrec.py: a DeepFM head over four
    torchrec EmbeddingBagCollections, two of them weighted), unsharded, fed one pair of
    KeyedJaggedTensors per call (the unweighted features', the weighted ones' with their weights).

    The class is imported from make_fixtures_torchrec.py (its module-level constants define the
    tables, feature order and MLP), checked against description.json, and loads model.safetensors
    strict. The model has no predict method: inference is `torch.sigmoid(model(kjt, wkjt))` in eval mode
    under no_grad (how the fixture script predicts batch.json), so (a) and (b) are the same call."""

    def __init__(self, d):
        import importlib.metadata as md
        import warnings

        warnings.filterwarnings("ignore", category=UserWarning)
        if str(TOOLS) not in sys.path:
            sys.path.insert(0, str(TOOLS))  # for export.make_fixtures_torchrec (tools/export stays off sys.path)
        import torchrec
        from safetensors.torch import load_file

        from export import make_fixtures_torchrec as mf

        self.torch = import_torch()
        self.mf = mf
        self.version = torchrec.__version__
        try:
            self.fbgemm_version = md.version("fbgemm-gpu-cpu")
        except md.PackageNotFoundError:
            self.fbgemm_version = getattr(__import__("fbgemm_gpu"), "__version__", "unknown")
        desc = json.loads((d / "description.json").read_text())
        if desc.get("framework") != "torchrec":
            sys.exit(f"{d}: not a torchrec description")
        self.model = mf.TorchrecDeepFM()
        # The class is built from make_fixtures_torchrec's constants: they must be description.json's.
        for key, ebcs in (("tables", (self.model.sparse, self.model.weighted_sparse)),
                          ("first_order_tables", (self.model.first_order, self.model.weighted_first_order))):
            got = [{"name": c.name, "num_embeddings": c.num_embeddings, "embedding_dim": c.embedding_dim,
                    "pooling": c.pooling.name.lower(), "feature_names": list(c.feature_names),
                    "is_weighted": ebc.is_weighted()}
                   for ebc in ebcs for c in ebc.embedding_bag_configs()]
            want = [{**{k: t[k] for k in ("name", "num_embeddings", "embedding_dim", "pooling", "feature_names")},
                     "is_weighted": t.get("is_weighted", False)} for t in desc[key]]
            if got != want:
                sys.exit(f"{d}: description.json's {key} {want} differ from TorchrecDeepFM's {got}")
        same = (desc["feature_order"] == mf.FEATURE_ORDER and desc["hidden"] == mf.HIDDEN
                and desc["bn_eps"] == mf.BN_EPS and desc["batch_norm"] and desc["activation"] == "relu"
                and desc["output"] == "sigmoid")
        if not same:
            sys.exit(f"{d}: description.json's feature order / MLP / output differ from TorchrecDeepFM's")
        self.model.load_state_dict(load_file(str(d / "model.safetensors")), strict=True)
        self.model.eval()
        self.feats, _ = load_batch(d)
        # batch.json holds a weighted feature's row as [[id, weight], ...]; make_kjt takes (ids, weights).
        for f in mf.WEIGHTED_FEATURES:
            self.feats[f] = [([int(i) for i, _ in row], [w for _, w in row]) for row in self.feats[f]]

    def versions(self):
        return {"torchrec": self.version, "fbgemm-gpu-cpu": self.fbgemm_version}

    def predict_input(self, idx):
        # make_fixtures_torchrec.make_kjt: (kjt, wkjt), KeyedJaggedTensor.from_lengths_sync over
        # FEATURE_ORDER less history, int64 values, int32 lengths (1 per row; genres its 1..6 ids, no
        # padding), and history's 0..5 ids per row with their float32 weights.
        return self.mf.make_kjt(self.feats, [int(i) for i in idx])

    def predict(self, kjts):
        # EmbeddingBagCollection.forward caches the KJT's per-feature split (kjt.to_dict() ->
        # kjt._jt_dict) on the KJT; the only attribute a forward changes. Cleared so that every call
        # starts from the state from_lengths_sync leaves, as a fresh request's KJT would.
        for kjt in kjts:
            kjt._jt_dict = None
        with self.torch.no_grad():
            return self.torch.sigmoid(self.model(*kjts))

    forward_input = predict_input
    forward = predict


RUNNERS = {"deepctr-torch": DeepCTRRunner, "fuxictr": FuxiCTRRunner, "corerec": CoreRecRunner,
           "recbole": RecBoleRunner, "torchrec": TorchrecRunner}


# ----------------------------------------------------------------------------- the production-sized case
SYNTHETIC = "deepctr-criteo-400"
SYNTHETIC_SEED = 20240607
SYNTHETIC_CHECK_ROWS = 1000
SYNTHETIC_TIMING_ROWS = 1 << 17  # distinct rows cycled while timing, as many as `deepfm bench` cycles
# C1..C26: a realistic mix for one Criteo day after min-count filtering (a few fields with 1e5+ ids,
# many small ones): 938,755 ids, so the two tables (D = 16 and the first-order one) are ~64 MB.
SYNTHETIC_VOCABS = (1445, 553, 175781, 128509, 305, 19, 11930, 629, 3, 39530, 5131, 156655, 3175, 26,
                    11043, 148912, 10, 4559, 1919, 3, 154563, 16, 15, 52989, 81, 40954)


def make_synthetic(out_dir, seed=SYNTHETIC_SEED):
    """Build the untrained production-sized DeepCTR-Torch DeepFM, export it with
    tools/export/deepctr_torch.py into out_dir and write out_dir/batch.json (the first
    SYNTHETIC_CHECK_ROWS random rows and the in-memory model's `predict` of them), as a fixture.
    Returns the SYNTHETIC_TIMING_ROWS random rows (a dict of arrays in feature_index order, the
    batch.json rows first) and a description of the case for the report."""
    deepctr_offline()
    if str(TOOLS) not in sys.path:
        sys.path.insert(0, str(TOOLS))  # for export.deepctr_torch
    from deepctr_torch.inputs import DenseFeat, SparseFeat, combined_dnn_input
    from deepctr_torch.models import DeepFM
    from export.deepctr_torch import export

    torch = import_torch()
    dense = [DenseFeat(f"I{i}", 1) for i in range(1, 14)]
    sparse = [SparseFeat(f"C{i}", v, embedding_dim=16) for i, v in enumerate(SYNTHETIC_VOCABS, 1)]
    columns = dense + sparse
    model = DeepFM(columns, columns, dnn_hidden_units=(400, 400, 400), dnn_activation="relu", dnn_use_bn=True,
                   task="binary", device="cpu", seed=seed)
    model.eval()

    # Inputs: uniform ids (as `deepfm bench` draws them), dense values in [0, 1) skewed towards 0.
    rng = np.random.RandomState(seed)
    n = SYNTHETIC_TIMING_ROWS
    cols = {c.name: (rng.random_sample(n) ** 2).astype(np.float32) for c in dense}
    cols.update({c.name: rng.randint(0, c.vocabulary_size, n).astype(np.int64) for c in sparse})
    arrays = {name: cols[name] for name in model.feature_index}
    check = {k: v[:SYNTHETIC_CHECK_ROWS] for k, v in arrays.items()}

    # Weights (nothing trained). DeepCTR's own init_std (1e-4) leaves every score at sigmoid(out
    # bias) up to ~1e-8, which would make the agreement check check nothing, so every tensor is
    # redrawn with a fixed seed at a scale where each part of the model moves the score.
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for emb in model.embedding_dict.values():
            emb.weight.normal_(0.0, 0.1, generator=g)
        for emb in model.linear_model.embedding_dict.values():
            emb.weight.normal_(0.0, 0.05, generator=g)
        model.linear_model.weight.normal_(0.0, 0.1, generator=g)
        x = torch.from_numpy(np.concatenate([v.reshape(len(v), -1) for v in check.values()], axis=-1)).float()
        emb_list, dense_list = model.input_from_feature_columns(x, model.dnn_feature_columns, model.embedding_dict)
        h = combined_dnn_input(emb_list, dense_list)
        # Layer by layer: He-scaled weights, then batch norm with random running statistics around
        # the scale s of this layer's pre-activations on the check rows (running_mean ~ N(0, s/2),
        # running_var ~ s^2 U(0.5, 2)), weight ~ U(0.5, 1.5), bias ~ N(0, 0.2).
        for lin, bn, act in zip(model.dnn.linears, model.dnn.bn, model.dnn.activation_layers):
            lin.weight.normal_(0.0, (2.0 / lin.in_features) ** 0.5, generator=g)
            lin.bias.normal_(0.0, 0.05, generator=g)
            z = lin(h)
            scale = float(z.std())
            bn.running_mean.normal_(0.0, 0.5 * scale, generator=g)
            bn.running_var.uniform_(0.5, 2.0, generator=g).mul_(scale * scale)
            bn.weight.uniform_(0.5, 1.5, generator=g)
            bn.bias.normal_(0.0, 0.2, generator=g)
            h = act(bn(z))
        model.dnn_linear.weight.normal_(0.0, model.dnn_linear.in_features ** -0.5, generator=g)
        model.out.bias.fill_(-1.0)

    predictions = model.predict(dict(check), batch_size=256).reshape(-1)
    export(model, str(out_dir))
    batch = {"rows": SYNTHETIC_CHECK_ROWS,
             "features": {k: [float(x) if v.dtype.kind == "f" else int(x) for x in v] for k, v in check.items()},
             "predictions": [float(p) for p in predictions],
             "produced_by": "model.predict(x, batch_size=256) in eval mode (frameworks.py, untrained)"}
    (Path(out_dir) / "batch.json").write_text(json.dumps(batch))
    table_rows = sum(SYNTHETIC_VOCABS)
    info = {"seed": seed, "dense": len(dense), "sparse": len(sparse), "vocabulary_sizes": list(SYNTHETIC_VOCABS),
            "table_rows": table_rows, "table_mb": round(table_rows * (16 + 1) * 4 / 1e6, 1), "embedding_dim": 16,
            "dnn_hidden_units": [400, 400, 400], "dnn_use_bn": True, "timing_rows": n,
            "prediction_range": [float(predictions.min()), float(predictions.max())],
            "prediction_std": float(predictions.std())}
    return arrays, info


def deepfm_spec(deepfm, model_file):
    """The imported model's spec, from the `spec: {...}` line of `deepfm inspect`."""
    for line in run([deepfm, "inspect", model_file]).splitlines():
        if line.startswith("spec:"):
            return json.loads(line.split(":", 1)[1])
    sys.exit(f"`deepfm inspect {model_file}` printed no spec line")


def deepfm_score_check(deepfm, model_file, features, expected, tsv):
    """Max |deepfm score - expected| over the rows of `features` (one scalar per field and row),
    scored by `deepfm score` from a TSV in the imported model's field order."""
    columns = []
    for f in deepfm_spec(deepfm, model_file)["fields"]:
        v = features[f["name"]]
        if f["kind"] == "categorical":
            columns.append([str(int(x)) for x in v])
        elif f["kind"] == "dense":
            columns.append([repr(float(x)) for x in v])  # exact: a float32 written as float64 text
        else:
            sys.exit(f"{model_file}: field {f['name']} of kind {f['kind']!r}: no TSV writer for it here")
    tsv.write_text("".join("\t".join(row) + "\n" for row in zip(*columns)))
    out = run([deepfm, "score", "--model", model_file, "--input", tsv, "--threads", 1])
    scores = np.array([float(x) for x in out.split()])
    if len(scores) != len(expected):
        sys.exit(f"`deepfm score` printed {len(scores)} scores for {len(expected)} rows")
    return max_abs(scores, expected)


# ----------------------------------------------------------------------------- checks and timing
def to_numpy(y):
    if hasattr(y, "detach"):
        y = y.detach().cpu().numpy()
    return np.asarray(y, dtype=np.float64).reshape(-1)


def check(runner, expected):
    """Max |framework - batch.json| through every timed path, in one batch and one row a call."""
    n = len(expected)
    rows = np.arange(n)
    errs = {"predict": max_abs(to_numpy(runner.predict(runner.predict_input(rows))), expected),
            "forward": max_abs(to_numpy(runner.forward(runner.forward_input(rows))), expected)}
    one = [np.array([i]) for i in range(n)]
    errs["predict_rowwise"] = max_abs([to_numpy(runner.predict(runner.predict_input(i)))[0] for i in one], expected)
    errs["forward_rowwise"] = max_abs([to_numpy(runner.forward(runner.forward_input(i)))[0] for i in one], expected)
    if hasattr(runner, "predict_loader"):
        errs["predict_loader"] = max_abs(to_numpy(runner.predict_loader(runner.loader_input(rows))), expected)
        errs["predict_loader_rowwise"] = max_abs(
            [to_numpy(runner.predict_loader(runner.loader_input(i)))[0] for i in one], expected)
    return errs


def timed(fn, inputs, batch, seconds):
    """samples/s of fn cycling over pre-built inputs for `seconds`, after a warm-up of
    min(10% of that, 0.5 s); as compare.py and `deepfm bench` do."""
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < min(0.1 * seconds, 0.5):
        fn(inputs[n % len(inputs)])
        n += 1
    n, start = 0, time.perf_counter()
    while True:
        fn(inputs[n % len(inputs)])
        n += 1
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            return n * batch / elapsed


def cool_down():
    """A pause between measurements so that nothing one left running overlaps the next."""
    time.sleep(0.5)


def run(cmd):
    p = subprocess.run([str(c) for c in cmd], capture_output=True, text=True)
    if p.returncode:
        sys.exit(f"`{' '.join(map(str, cmd))}` failed ({p.returncode}):\n{p.stderr.strip()}")
    return p.stdout


def deepfm_bench(deepfm, model_file, batch, seconds):
    out = run([deepfm, "bench", "--model", model_file, "--batch", batch, "--threads", 1,
               "--seconds", seconds, "--json"])
    return json.loads(out.strip().splitlines()[-1])


def median(xs):
    return float(np.median(xs))


def run_fixture(name, deepfm, args, workdir):
    framework, _ = framework_of(name)
    synthetic = name == SYNTHETIC
    if synthetic:  # built, exported and predicted here, then treated as a fixture folder
        d = workdir / name
        start = time.perf_counter()
        timing_arrays, synthetic_info = make_synthetic(d)
        print(f"{name}: built and exported in {time.perf_counter() - start:.1f} s: "
              f"{synthetic_info['dense']} DenseFeat + {synthetic_info['sparse']} SparseFeat, "
              f"{synthetic_info['table_rows']:,} ids ({synthetic_info['table_mb']} MB of tables), D=16, "
              f"DNN 400-400-400 relu + BN (random running stats), untrained; {SYNTHETIC_CHECK_ROWS} check rows' "
              f"predictions {synthetic_info['prediction_range'][0]:.3f}..{synthetic_info['prediction_range'][1]:.3f} "
              f"(std {synthetic_info['prediction_std']:.3f})", flush=True)
    else:
        d = FIXTURES / name
        if not d.is_dir():
            sys.exit(f"no fixture folder {d}")
    runner = RUNNERS[framework](d)
    _, expected = load_batch(d)
    errs = check(runner, expected)
    bad = [k for k, e in errs.items() if not e <= TOLERANCE]
    print(f"{name}: rebuilt {framework} model vs batch.json, max |diff|: " +
          ", ".join(f"{k} {e:.2e}" for k, e in errs.items()) + ("  FAIL" if bad else "  ok"), flush=True)
    if bad:
        sys.exit(f"{name}: the rebuilt {framework} model does not reproduce batch.json "
                 f"({', '.join(bad)} > {TOLERANCE:g}); not timing it")
    model_file = workdir / f"{name}.dfm"
    run([deepfm, "import", "--from", framework, "--weights", d / "model.safetensors",
         "--description", d / "description.json", "--out", model_file])
    info = {"framework": framework, **runner.versions(), "torch": runner.torch.__version__, "max_abs_diff": errs}
    rows = len(expected)
    if synthetic:
        err = deepfm_score_check(deepfm, model_file, runner.arrays, expected, workdir / f"{name}-rows.tsv")
        ok = err <= TOLERANCE
        print(f"{name}: `deepfm score` of the imported model vs the framework's predict on {rows} rows, "
              f"max |diff| {err:.2e}" + ("  ok" if ok else "  FAIL"), flush=True)
        if not ok:
            sys.exit(f"{name}: deepfm's scores differ from {framework}'s by {err:.2e} > {TOLERANCE:g}; not timing it")
        info["deepfm_score_max_abs_diff"] = err
        info["synthetic"] = synthetic_info
        runner.arrays = timing_arrays  # the checked rows first, then fresh ones
        rows = SYNTHETIC_TIMING_ROWS
    results = []
    for batch in [] if args.check_only else args.batches:
        if batch == 1:
            # one row per call, cycling through the rows (at most 4096 distinct: one input object each)
            idxs = [np.array([i]) for i in range(min(rows, 4096))]
        elif synthetic:
            idxs = [np.arange(k * batch, (k + 1) * batch) % rows for k in range(max(1, rows // batch))]
        else:
            idxs = [np.arange(batch) % rows]  # the rows tiled
        p_in = [runner.predict_input(i) for i in idxs]
        f_in = [runner.forward_input(i) for i in idxs]
        l_in = [runner.loader_input(i) for i in idxs] if hasattr(runner, "predict_loader") else None
        cool_down()
        rounds = []
        for _ in range(args.repeat):
            r = {"predict": timed(runner.predict, p_in, batch, args.seconds)}
            cool_down()
            r["forward"] = timed(runner.forward, f_in, batch, args.seconds)
            cool_down()
            bench = deepfm_bench(deepfm, model_file, batch, args.seconds)
            r["deepfm"], r["deepfm_isa"] = bench["samples_per_sec"], bench.get("isa")
            cool_down()
            if l_in is not None:  # FuxiCTR only, after the three the table compares
                r["predict_loader"] = timed(runner.predict_loader, l_in, batch, args.seconds)
                cool_down()
            rounds.append(r)
        res = {"fixture": name, "framework": framework, "batch": batch, "rounds": rounds,
               "samples_per_sec": {}, "us_per_sample": {}, "ratio_vs_deepfm": {}}
        for k in ("predict", "forward", "deepfm") + (("predict_loader",) if l_in is not None else ()):
            res["samples_per_sec"][k] = median([x[k] for x in rounds])
            res["us_per_sample"][k] = median([1e6 / x[k] for x in rounds])
            if k != "deepfm":  # framework us/sample over deepfm us/sample, median of the per-round ratios
                res["ratio_vs_deepfm"][k] = median([x["deepfm"] / x[k] for x in rounds])
        us, ratio = res["us_per_sample"], res["ratio_vs_deepfm"]
        print(f"  {name} batch {batch}: predict {us['predict']:.3g} us/sample, forward {us['forward']:.3g}, "
              f"deepfm {us['deepfm']:.3g}; predict/deepfm {ratio['predict']:.1f}, forward/deepfm "
              f"{ratio['forward']:.1f}" + (f" (medians of {args.repeat})" if args.repeat > 1 else ""), flush=True)
        results.append(res)
    return info, results


# ----------------------------------------------------------------------------- report
def environment(deepfm):
    cpu = platform.processor()
    if Path("/proc/cpuinfo").exists():
        cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), cpu)
    env = {"python_executable": sys.executable, "cpu": cpu, "cores": os.cpu_count(),
           "load average (1 min)": round(os.getloadavg()[0], 2), "python": platform.python_version(),
           "numpy": np.__version__}
    if importlib.util.find_spec("torch"):
        import torch

        env["torch"] = torch.__version__
    env["deepfm"] = run([deepfm, "--version"]).strip()
    return env


def fmt_us(x):
    return f"{x:.1f}" if x >= 10 else f"{x:.2f}" if x >= 0.1 else f"{x:.3f}"


def table(timings):
    head = ("| fixture | batch | framework predict µs/sample | no_grad forward µs/sample | deepfm µs/sample "
            "| predict/deepfm | forward/deepfm |")
    lines = [head, "|---|---:|---:|---:|---:|---:|---:|"]
    for r in timings:
        us, ratio = r["us_per_sample"], r["ratio_vs_deepfm"]
        lines.append(f"| {r['fixture']} | {r['batch']} | {fmt_us(us['predict'])} | {fmt_us(us['forward'])} | "
                     f"{fmt_us(us['deepfm'])} | {ratio['predict']:.1f} | {ratio['forward']:.1f} |")
    extra = [r for r in timings if "predict_loader" in r["us_per_sample"]]
    if extra:
        lines.append("")
        for r in extra:
            lines.append(f"{r['fixture']} batch {r['batch']}: predict with FuxiCTR's DataLoader on the clock "
                         f"(NpzDataset + BatchCollator, num_workers=0): "
                         f"{fmt_us(r['us_per_sample']['predict_loader'])} µs/sample, "
                         f"{r['ratio_vs_deepfm']['predict_loader']:.1f}x deepfm")
    return "\n".join(lines)


def main():
    ints = lambda s: [int(x) for x in s.split(",") if x]
    names = lambda s: [x for x in s.split(",") if x]
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--fixtures", type=names, default=list(DEFAULT_FIXTURES),
                   help=f"comma-separated fixture folders (default {','.join(DEFAULT_FIXTURES)}); "
                        f"the production-sized {SYNTHETIC} runs after them unless --no-synthetic")
    p.add_argument("--no-synthetic", action="store_true",
                   help=f"skip {SYNTHETIC} (built here: needs deepctr_torch in this interpreter)")
    p.add_argument("--batches", type=ints, default=[1, 4096])
    p.add_argument("--seconds", type=float, default=2.0, help="per measurement (default 2)")
    p.add_argument("--repeat", type=int, default=3, help="interleaved rounds; medians are reported (default 3)")
    p.add_argument("--deepfm", type=Path, default=REPO / "target" / "release" / "deepfm")
    p.add_argument("--fuxi-python", type=Path,
                   help="a Python with fuxictr installed: FuxiCTR fixtures run in a child process of it "
                        "(needed when this interpreter has no fuxictr)")
    p.add_argument("--recbole-python", type=Path,
                   help="a Python with recbole installed: RecBole fixtures run in a child process of it "
                        "(needed when this interpreter has no recbole)")
    p.add_argument("--torchrec-python", type=Path,
                   help="a Python with torchrec installed: torchrec fixtures run in a child process of it "
                        "(needed when this interpreter has no torchrec)")
    p.add_argument("--json", type=Path, help="write environment, checks and raw timings here")
    p.add_argument("--check-only", action="store_true", help="rebuild, check and import; no timing")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)  # run by --fuxi/recbole/torchrec-python
    args = p.parse_args()
    deepfm = args.deepfm.resolve()
    if not deepfm.exists():
        p.error(f"{deepfm} not found: run `cargo build --release` or pass --deepfm")
    if bad := [b for b in args.batches if b < 1]:
        p.error(f"bad batch sizes {bad}")

    args.fixtures = [n for n in args.fixtures if n != SYNTHETIC]
    if not args.no_synthetic and not args.child:
        args.fixtures.append(SYNTHETIC)
    pythons = {"fuxictr": args.fuxi_python, "recbole": args.recbole_python, "torchrec": args.torchrec_python}
    here, child = [], {}  # child: framework -> its fixtures, run in a child process of pythons[framework]
    for name in args.fixtures:
        framework, package = framework_of(name)
        if importlib.util.find_spec(package):
            here.append(name)
        elif pythons.get(framework) and not args.child:
            child.setdefault(framework, []).append(name)
        else:
            p.error(f"{name}: {package} is not importable by {sys.executable}"
                    + (f" (pass {CHILD_OPTIONS[framework]} PATH or run this fixture under that venv)"
                       if framework in CHILD_OPTIONS
                       else " (run it under the venv that has it, or pass --no-synthetic)" if name == SYNTHETIC
                       else " (run it under the venv that has it)"))

    env = environment(deepfm)
    if not args.child:
        print("\n".join(f"{k}: {v}" for k, v in env.items()), flush=True)
        if env["load average (1 min)"] > 0.5:
            print("WARNING: the machine is busy; these timings are not worth keeping", flush=True)
    report = {"settings": {"seconds": args.seconds, "repeat": args.repeat, "batches": args.batches, "threads": 1},
              "environments": [env], "fixtures": {}, "timings": []}
    with tempfile.TemporaryDirectory(prefix="deepfm-frameworks-") as tmp:
        for name in args.fixtures:
            if name in here:
                info, results = run_fixture(name, deepfm, args, Path(tmp))
                report["fixtures"][name] = info
                report["timings"] += results
            elif name == child[framework_of(name)[0]][0]:
                # all fixtures of that framework in one child run, at the first one's turn
                framework = framework_of(name)[0]
                out = Path(tmp) / f"child-{framework}.json"
                cmd = [pythons[framework], __file__, "--child", "--fixtures", ",".join(child[framework]),
                       "--batches", ",".join(map(str, args.batches)), "--seconds", args.seconds,
                       "--repeat", args.repeat, "--deepfm", deepfm, "--json", out, "--no-synthetic"]
                cmd += ["--check-only"] if args.check_only else []
                rc = subprocess.run([str(c) for c in cmd]).returncode
                if rc:
                    sys.exit(f"the {CHILD_OPTIONS[framework]} child run failed ({rc})")
                sub = json.loads(out.read_text())
                report["environments"] += sub["environments"]
                report["fixtures"].update(sub["fixtures"])
                report["timings"] += sub["timings"]
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    if args.child:
        return
    print()
    for name, info in report["fixtures"].items():
        versions = ", ".join(f"{k} {v}" for k, v in info.items()
                             if k not in ("framework", "max_abs_diff", "deepfm_score_max_abs_diff", "synthetic"))
        print(f"{name}: {versions}")
    if not report["timings"]:
        return
    print(f"CPU: {env['cpu']}; one thread (torch.set_num_threads(1), OMP/MKL 1; deepfm --threads 1); "
          f"deepfm isa: {', '.join(sorted({x['deepfm_isa'] or '?' for r in report['timings'] for x in r['rounds']}))}; "
          f"{args.seconds:g} s per measurement, medians of {args.repeat} interleaved round(s)\n")
    print(table(report["timings"]))


if __name__ == "__main__":
    main()
