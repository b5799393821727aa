"""Export a trained FuxiCTR ``DeepFM`` (PyTorch) to ``model.safetensors`` + ``description.json``.

Usage (from the repository root; put ``tools/`` on ``sys.path`` and import this file as
``export.fuxictr`` so that it does not shadow the ``fuxictr`` package itself)::

    import sys
    sys.path.insert(0, "tools")
    from export import fuxictr_shims
    fuxictr_shims.install()                       # ray / polars shims for fuxictr 2.3.10
    from export.fuxictr import export
    from export.fuxictr_model_zoo import DeepFM   # FuxiCTR's model_zoo class (not in the wheel)

    model = DeepFM(feature_map, embedding_dim=8, hidden_units=[32, 16], batch_norm=True, ...)
    ...train...
    export(model, feature_map, "out/my-model")   # writes out/my-model/{model.safetensors,description.json}
    export(model, feature_map, "out/my-model", vocab=feature_processor)   # + "vocabularies", "numeric"

What is written:

* ``model.safetensors``: ``model.state_dict()`` exactly as PyTorch names it (float32 parameters and
  BatchNorm buffers, int64 ``num_batches_tracked``). A ``share_embedding`` feature's table appears
  under both names, as in the state_dict (``embedding_layer.embedding_layer.embedding_layers.
  <owner>.weight`` and ``...<sharer>.weight``, equal values); each tensor is written as its own
  contiguous copy because safetensors refuses tensors that share memory. For DeepFM with
  ``D = embedding_dim`` the keys are:

  - ``embedding_layer.embedding_layer.embedding_layers.<f>.weight``: [vocab_size, D] for a
    categorical or sequence feature (``nn.Embedding``, row ``padding_idx`` = 0 is zero);
    [D, 1] for a numeric feature (``nn.Linear(1, D, bias=False)``: embedding = value * weight[:, 0]).
  - ``fm.lr_layer.bias``: [1] (the only first-order bias; added once).
  - ``fm.lr_layer.embedding_layer.embedding_layer.embedding_layers.<f>.weight``: [vocab_size, 1]
    for categorical/sequence (never shared: a sharing feature has its own first-order table),
    [1, 1] for numeric (``nn.Linear(1, 1, bias=False)``).
  - ``mlp.mlp.<i>.*``: ``MLP_Block``'s ``nn.Sequential``; per hidden layer ``Linear`` (weight
    [out, in], bias [out]), then ``BatchNorm1d`` if batch_norm (weight, bias, running_mean,
    running_var, num_batches_tracked), then the activation (ReLU: no keys), then ``Dropout`` if
    net_dropout > 0 (no keys); then ``Linear(last, 1)`` with bias. With batch_norm and dropout and
    hidden_units [32, 16]: 0 Linear, 1 BN, 2 ReLU, 3 Dropout, 4 Linear, 5 BN, 6 ReLU, 7 Dropout,
    8 Linear(16, 1).

* ``description.json``: ``{"framework": "fuxictr", "framework_version": <fuxictr.__version__>,
  "feature_map": <feature_map.json exactly as FuxiCTR's own FeatureMap.save writes it for this
  FeatureMap>, "model": {"model": "DeepFM", "embedding_dim", "hidden_units", "hidden_activations",
  "net_dropout", "batch_norm", "bn_eps", "output_activation": "sigmoid" | null}}``. The MLP input
  is the per-field embeddings concatenated in ``feature_map["features"]`` order (meta features
  skipped), each field D wide. With ``vocab`` also ``"vocabularies"`` (schema in
  ``tools/export/vocabularies.py``): one entry per categorical and sequence feature. With
  ``numeric`` (by default the FeatureProcessor given as ``vocab``) also ``"numeric"`` (schema in
  ``tools/export/vocabularies.py``): how a raw number of a numeric feature becomes its value.

Vocabularies: the FeatureMap and the model do not hold FuxiCTR's token vocabularies; its
``FeatureProcessor`` does (``processor_dict["<feature>::tokenizer"].vocab``, a dict token -> index,
written by ``fit`` to ``<data_dir>/feature_vocab.json`` as ``{feature: {token: index}}`` sorted by
index). Pass ``vocab=`` the fitted FeatureProcessor (preferred: the splitters and fill_na values
come with it), or the path of feature_vocab.json or its parsed dict (then ``splitters={sequence
feature: splitter}``, default FuxiCTR's "^", and fill_na "" are assumed). What FuxiCTR 2.3.10 does
(fuxictr/preprocess/tokenizer.py) and what is written:

* ``build_vocab``: tokens indexed from 1 by count (ties by token), ``vocab["__PAD__"] = 0``,
  ``vocab["__OOV__"] = self.vocab_size()`` = max index + 1; the fill_na token (default "") is left
  out. ``encode_category``: ``self.vocab.get(x, self.vocab["__OOV__"])``; ``encode_sequence``:
  ``text.split(self._splitter)``, each piece ``self.vocab.get(x, self.vocab["__OOV__"]) if x !=
  self._na_value else self.vocab["__PAD__"]``, then padded / truncated to max_len.
  So ``"oov"`` = ``vocab["__OOV__"]`` (checked to be ``vocab_size - 1``, the table's last row) and
  ``"ids"`` = the vocabulary without the two reserved markers ``__PAD__`` / ``__OOV__`` (a literal
  raw token "__PAD__" would get id 0 in FuxiCTR, and the oov id here). For a sequence, ``"sep"`` =
  the tokenizer's splitter; an empty piece is padding (dropped), as FuxiCTR gives it the padding
  id 0; a non-empty fill_na token of a sequence is written with id 0.
* ``share_embedding``: ``fit`` merges the sharer's tokens into the owner's tokenizer and then gives
  the sharer the owner's vocabulary (``tokenizer.vocab = self.processor_dict[spec["share_embedding"]
  + "::tokenizer"].vocab``); the sharer's entry is that same vocabulary under its own name.

Numeric features: FuxiCTR 2.3.10 (fuxictr/preprocess/feature_processor.py, normalizer.py) turns a
raw number into the model's input in three steps, all in float64 for a "float" / "int" column:

* ``preprocess``: ``fill_na = col.get("fill_na", 0.0)`` for dtype float (``0`` for int), then
  ``ddf.with_columns(pl.col(name).fill_null(fill_na))``: a missing value becomes fill_na, before
  any statistics are taken.
* ``fit`` -> ``fit_numeric_col``: with a ``"normalizer"`` in the column, ``Normalizer(col
  ["normalizer"]).fit_from_stats(min, max, mean, std)`` from the filled training column (std with
  ddof=0, 1 for a constant column) builds an sklearn ``StandardScaler`` (``mean_``, ``scale_`` =
  std) or ``MinMaxScaler`` (``scale_`` = 1 / range, ``min_`` = -min / range) and keeps its bound
  ``transform`` as ``processor_dict["<f>::normalizer"].normalizer``.
* ``transform``: ``batch[f] = normalizer.transform(np.array(col_series))``, i.e. sklearn's
  ``X -= mean_`` (if with_mean), ``X /= scale_`` (if with_std), or ``X *= scale_; X += min_``
  (MinMaxScaler); the model then takes the value as float32.

So a feature's ``"numeric"`` entry is ``fill_na`` (the column's, as above) and, with a normalizer,
StandardScaler: ``scale = 1 / scale_`` (1 without with_std), ``shift = -mean_ / scale_`` (0 without
with_mean); MinMaxScaler: ``scale = scale_``, ``shift = min_``. ``v * (1/s) + (-m/s)`` is not
bit for bit ``(v - m) / s``: after the rounding to float32 they agree within a float32 step
(fuxictr-ml100k's age: see make_fixtures_fuxictr.py). A numeric feature without a normalizer gets
``{"fill_na": ...}`` only (its value is otherwise used as is). ``numeric=`` takes the fitted
FeatureProcessor (its ``feature_cols`` give fill_na, its ``processor_dict`` the normalizers) or a
dict ``{feature: entry}``, each entry either a ready "numeric" entry (keys fill_na / log1p /
scale / shift, written as is) or ``{"normalizer": <fitted fuxictr Normalizer or sklearn
StandardScaler / MinMaxScaler>, "fill_na": <number, optional>}``. Refused: a column with a
``"preprocess"`` function, a custom callable normalizer, an unfitted normalizer, MinMaxScaler with
``clip=True``, a scaler fitted on more than one column.

The exporter refuses (ValueError) what it cannot describe with these keys: other model classes,
feature types other than categorical/numeric/sequence/meta, pretrained embeddings, fields of
different widths (per-feature embedding_dim) or emb_output_dim, feature encoders other than a sequence's
``layers.MaskedAveragePooling()`` / ``layers.MaskedSumPooling()``, MLP layouts other than
(Linear [BN] act [Dropout])* Linear(., 1), activations other than ReLU, and non-zero padding rows.
"""

import json
import os
import tempfile

from . import vocabularies as _vocabularies

__all__ = ["export", "describe"]

_RESERVED = ("__PAD__", "__OOV__")

_SEQUENCE_ENCODERS = ("layers.MaskedAveragePooling()", "layers.MaskedSumPooling()")


def _feature_map_json(feature_map):
    """The feature map as FuxiCTR's own ``FeatureMap.save`` writes it (parsed, order kept)."""
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "feature_map.json")
        feature_map.save(path)
        with open(path, "r", encoding="utf-8") as f:
            return json.load(f)


def _mlp_description(mlp_block):
    from torch import nn

    layers = list(mlp_block.mlp)
    hidden_units, dropouts, bn_eps, batch_norm, acts = [], [], [], None, []
    i = 0
    while i < len(layers):
        lin = layers[i]
        if type(lin) is not nn.Linear:
            raise ValueError(f"mlp.mlp.{i}: expected Linear, found {type(lin).__name__} "
                             "(bn_only_once or a custom block is not supported)")
        i += 1
        if i == len(layers):  # output layer
            if lin.out_features != 1 or lin.bias is None:
                raise ValueError("the MLP's last Linear must be (., 1) with a bias")
            break
        hidden_units.append(lin.out_features)
        if lin.bias is None:
            raise ValueError("MLP Linear layers without bias (use_bias=False) are not supported")
        has_bn = i < len(layers) and type(layers[i]) is nn.BatchNorm1d
        if batch_norm is None:
            batch_norm = has_bn
        elif batch_norm != has_bn:
            raise ValueError("batch norm on some hidden layers only is not supported")
        if has_bn:
            bn = layers[i]
            if not (bn.affine and bn.track_running_stats):
                raise ValueError("BatchNorm1d without affine/running stats is not supported")
            bn_eps.append(float(bn.eps))
            i += 1
        if i < len(layers) and type(layers[i]) is nn.ReLU:
            acts.append("relu")
            i += 1
        else:
            found = type(layers[i]).__name__ if i < len(layers) else "nothing"
            raise ValueError(f"mlp.mlp.{i}: hidden activation {found} is not supported (ReLU only)")
        if i < len(layers) and type(layers[i]) is nn.Dropout:
            dropouts.append(float(layers[i].p))
            i += 1
        else:
            dropouts.append(0.0)
    if len(set(dropouts)) > 1:
        raise ValueError(f"per-layer dropout rates {dropouts} are not supported by this description")
    if len(set(bn_eps)) > 1:
        raise ValueError(f"per-layer BatchNorm eps {bn_eps} are not supported")
    return {
        "hidden_units": hidden_units,
        "hidden_activations": "relu",
        "net_dropout": dropouts[0] if dropouts else 0.0,
        "batch_norm": bool(batch_norm),
        "bn_eps": bn_eps[0] if bn_eps else 1e-05,
    }


def _check_features(model, fmap_json):
    """Refuse feature specs the description cannot express; return the common embedding dim."""
    from torch import nn

    emb_layers = model.embedding_layer.embedding_layer.embedding_layers
    dims = set()
    for entry in fmap_json["features"]:
        ((name, spec),) = entry.items()
        ftype = spec["type"]
        if ftype == "meta":
            continue
        if ftype not in ("categorical", "numeric", "sequence"):
            raise ValueError(f"feature {name}: type {ftype!r} is not supported")
        for key in ("pretrained_emb", "emb_output_dim", "category_processor"):
            if key in spec:
                raise ValueError(f"feature {name}: {key!r} is not supported")
        enc = spec.get("feature_encoder")
        if ftype == "sequence":
            if enc not in _SEQUENCE_ENCODERS:
                raise ValueError(f"feature {name}: sequence feature_encoder {enc!r} is not supported")
        elif enc is not None:
            raise ValueError(f"feature {name}: feature_encoder {enc!r} is not supported")
        if "share_embedding" in spec:
            owner = spec["share_embedding"]
            if emb_layers[name] is not emb_layers[owner]:
                raise ValueError(f"feature {name}: share_embedding={owner!r} but the tables differ")
        layer = emb_layers[name]
        if ftype == "numeric":
            if type(layer) is not nn.Linear or layer.bias is not None or layer.in_features != 1:
                raise ValueError(f"feature {name}: unexpected numeric embedding {layer}")
            dims.add(layer.out_features)
        else:
            if type(layer) is not nn.Embedding:
                raise ValueError(f"feature {name}: unexpected embedding {type(layer).__name__}")
            if layer.num_embeddings != spec["vocab_size"]:
                raise ValueError(f"feature {name}: table has {layer.num_embeddings} rows, "
                                 f"vocab_size is {spec['vocab_size']}")
            pad = spec.get("padding_idx")
            if pad is not None and bool((layer.weight[pad] != 0).any()):
                raise ValueError(f"feature {name}: padding row {pad} is not zero")
            dims.add(layer.embedding_dim)
    if len(dims) != 1:
        raise ValueError(f"fields have different embedding widths {sorted(dims)}")
    return dims.pop()


def _tokenizer_vocabularies(vocab, splitters):
    """{feature: (token -> index dict, splitter or None, na_value)} from a FeatureProcessor, the
    path of its feature_vocab.json or that file's parsed dict."""
    if hasattr(vocab, "processor_dict"):
        out = {}
        for key, proc in vocab.processor_dict.items():
            if key.endswith("::tokenizer"):
                out[key[: -len("::tokenizer")]] = (proc.vocab, getattr(proc, "_splitter", None),
                                                   getattr(proc, "_na_value", ""))
        return out, True
    if isinstance(vocab, (str, os.PathLike)):
        with open(vocab, "r", encoding="utf-8") as f:
            vocab = json.load(f)
    if not isinstance(vocab, dict):
        raise TypeError("vocab: expected a FeatureProcessor, the path of feature_vocab.json or its dict, "
                        f"got {type(vocab).__name__}")
    splitters = splitters or {}
    return {name: (v, splitters.get(name, "^"), "") for name, v in vocab.items()}, False


def _vocabularies_description(fmap_json, vocab, splitters):
    tokenizers, from_processor = _tokenizer_vocabularies(vocab, splitters)
    specs = {n: s for e in fmap_json["features"] for n, s in e.items()}
    out = {}
    for name, spec in specs.items():
        if spec["type"] not in ("categorical", "sequence"):
            continue
        if name not in tokenizers:
            raise ValueError(f"vocab has no vocabulary for feature {name!r}")
        v, splitter, na_value = tokenizers[name]
        owner = spec.get("share_embedding")
        if owner is not None and owner in tokenizers and tokenizers[owner][0] != v:
            raise ValueError(f"feature {name}: share_embedding={owner!r} but its vocabulary differs")
        if v.get("__PAD__") != 0 or "__OOV__" not in v:
            raise ValueError(f"feature {name}: vocabulary without __PAD__ = 0 and __OOV__")
        oov, size = int(v["__OOV__"]), int(spec["vocab_size"])
        if oov != size - 1:
            raise ValueError(f"feature {name}: __OOV__ is {oov}, not vocab_size - 1 = {size - 1}")
        ids = {k: int(i) for k, i in v.items() if k not in _RESERVED}
        bad = [(k, i) for k, i in ids.items() if not 0 <= i < oov]
        if bad:
            raise ValueError(f"feature {name}: token ids outside 0..{oov - 1}: {bad[:5]}")
        sep = None
        if spec["type"] == "sequence":
            sep = splitter if splitter is not None else "^"
            if na_value not in ("", None):
                ids[na_value] = 0  # encode_sequence: a piece equal to fill_na is __PAD__
        elif from_processor and splitter is not None:
            raise ValueError(f"feature {name}: a categorical tokenizer with a splitter")
        out[name] = _vocabularies.entry(ids, oov=oov, sep=sep, what=f"feature {name}")
    return out


def _scaler_entry(obj, fill_na, what):
    """The "numeric" entry of a fitted fuxictr Normalizer or sklearn StandardScaler / MinMaxScaler."""
    from sklearn.preprocessing import MinMaxScaler, StandardScaler

    scaler = obj
    if hasattr(obj, "normalizer") and not isinstance(obj, (StandardScaler, MinMaxScaler)):
        fn = obj.normalizer  # fuxictr Normalizer: the fitted scaler's bound transform, or a name
        if isinstance(fn, str):
            raise ValueError(f"{what}: normalizer {fn!r} is not fitted")
        scaler = getattr(fn, "__self__", None)
        if getattr(fn, "__name__", None) != "transform" or not isinstance(scaler, (StandardScaler, MinMaxScaler)):
            raise ValueError(f"{what}: a custom normalizer function {fn!r} cannot be described")
    if not isinstance(scaler, (StandardScaler, MinMaxScaler)):
        raise TypeError(f"{what}: expected a fuxictr Normalizer or a fitted sklearn StandardScaler / "
                        f"MinMaxScaler, got {type(obj).__name__}")
    if getattr(scaler, "n_features_in_", None) != 1:
        raise ValueError(f"{what}: the scaler must be fitted on one column")
    if isinstance(scaler, StandardScaler):
        mean = float(scaler.mean_[0]) if scaler.with_mean else 0.0
        std = float(scaler.scale_[0]) if scaler.with_std else 1.0  # scale_ is the std (None without with_std)
        scale, shift = 1.0 / std, 0.0 - mean / std  # 0.0 - x: no -0.0 without with_mean
    else:
        if scaler.clip:
            raise ValueError(f"{what}: MinMaxScaler(clip=True) cannot be described")
        scale, shift = float(scaler.scale_[0]), float(scaler.min_[0])
    return _vocabularies.numeric_entry(fill_na=fill_na, scale=scale, shift=shift, what=what)


def _column_fill_na(col, what):
    """FuxiCTR's FeatureProcessor.preprocess: the value a missing cell of this column takes."""
    if col.get("preprocess"):
        raise ValueError(f"{what}: a column with a preprocess function ({col['preprocess']!r}) cannot "
                         "be described")
    dtype = col.get("dtype")
    if dtype in ("int", int):
        fill = col.get("fill_na", 0)
    elif dtype in ("float", float):
        fill = col.get("fill_na", 0.0)
    elif dtype in ("str", str):
        raise ValueError(f"{what}: a numeric feature with dtype str")
    else:
        fill = None  # preprocess fills nothing: a missing value stays missing
    if fill is not None:
        _vocabularies.numeric_entry(fill_na=fill, what=what)  # a finite number
    return fill


def _numeric_description(fmap_json, numeric):
    """The "numeric" dict from a FeatureProcessor or {feature: entry | {"normalizer", "fill_na"}}."""
    specs = {n: s for e in fmap_json["features"] for n, s in e.items()}
    names = [n for n, s in specs.items() if s["type"] == "numeric"]
    out = {}
    if hasattr(numeric, "processor_dict") and hasattr(numeric, "feature_cols"):
        cols = {c["name"]: c for c in numeric.feature_cols}
        for name in names:
            what = f"numeric feature {name}"
            if name not in cols:
                raise ValueError(f"{what}: not a column of the FeatureProcessor")
            fill = _column_fill_na(cols[name], what)
            norm = numeric.processor_dict.get(name + "::normalizer")
            if norm is not None:
                out[name] = _scaler_entry(norm, fill, what)
            elif "normalizer" in cols[name]:
                raise ValueError(f"{what}: the column has a normalizer but the processor has none (not fitted)")
            elif fill is not None:
                out[name] = _vocabularies.numeric_entry(fill_na=fill, what=what)
        return out
    if not isinstance(numeric, dict):
        raise TypeError("numeric: expected a fitted FeatureProcessor or a dict feature -> entry, "
                        f"got {type(numeric).__name__}")
    for name, e in numeric.items():
        what = f"numeric[{name!r}]"
        if name not in names:
            raise ValueError(f"{what}: not a numeric feature of the feature map (those are {names})")
        if isinstance(e, dict) and "normalizer" in e:
            extra = sorted(set(e) - {"normalizer", "fill_na"})
            if extra:
                raise ValueError(f"{what}: unknown keys {extra} next to normalizer")
            out[name] = _scaler_entry(e["normalizer"], e.get("fill_na"), what)
        else:
            out.update(_vocabularies.check_numeric({name: e}, what="numeric"))
    return out


def describe(model, feature_map, vocab=None, splitters=None, numeric=None):
    """description.json's content for a FuxiCTR DeepFM and the FeatureMap it was built with; with
    ``vocab`` (FeatureProcessor, feature_vocab.json path or dict) also its "vocabularies"; with
    ``numeric`` (FeatureProcessor or dict; default: ``vocab`` when that is a FeatureProcessor) also
    "numeric" (left out when no feature has an entry)."""
    import fuxictr
    from torch import nn

    if type(model).__name__ != "DeepFM":
        raise ValueError(f"only DeepFM is supported, got {type(model).__name__}")
    fmap_json = _feature_map_json(feature_map)
    embedding_dim = _check_features(model, fmap_json)
    mlp = _mlp_description(model.mlp)
    if isinstance(model.output_activation, nn.Sigmoid):
        output_activation = "sigmoid"
    elif isinstance(model.output_activation, nn.Identity):
        output_activation = None
    else:
        raise ValueError(f"output activation {model.output_activation} is not supported")
    description = {
        "framework": "fuxictr",
        "framework_version": fuxictr.__version__,
        "feature_map": fmap_json,
        "model": {
            "model": "DeepFM",
            "embedding_dim": embedding_dim,
            **mlp,
            "output_activation": output_activation,
        },
    }
    if vocab is not None:
        description["vocabularies"] = _vocabularies_description(fmap_json, vocab, splitters)
    if numeric is None and hasattr(vocab, "processor_dict"):
        numeric = vocab
    if numeric is not None:
        entries = _numeric_description(fmap_json, numeric)
        if entries:
            description["numeric"] = entries
    return description


def export(model, feature_map, out_dir, vocab=None, splitters=None, numeric=None):
    """Write out_dir/model.safetensors and out_dir/description.json; returns the description.

    vocab: optional fitted FeatureProcessor (or feature_vocab.json's path or dict, with
    ``splitters`` for its sequence features) whose vocabularies are written as "vocabularies".
    numeric: optional fitted FeatureProcessor or dict {feature: "numeric" entry | {"normalizer":
    Normalizer or sklearn scaler, "fill_na": number}}, written as "numeric"; by default the
    FeatureProcessor given as ``vocab``.
    """
    from safetensors.torch import save_file

    description = describe(model, feature_map, vocab, splitters, numeric)
    os.makedirs(out_dir, exist_ok=True)
    # clone(): a shared table is in the state_dict under two names with one storage, which
    # safetensors refuses; each name gets its own copy (same values).
    tensors = {k: v.detach().cpu().clone().contiguous() for k, v in model.state_dict().items()}
    save_file(tensors, os.path.join(out_dir, "model.safetensors"))
    with open(os.path.join(out_dir, "description.json"), "w", encoding="utf-8") as f:
        _vocabularies.dump_description(description, f)
    return description
