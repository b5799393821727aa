"""Export a trained RecBole ``DeepFM`` (``recbole.model.context_aware_recommender.DeepFM``) to
``model.safetensors`` + ``description.json``.

Usage (put ``tools/`` on ``sys.path`` and import this file as ``export.recbole`` so that it does not
shadow the ``recbole`` package itself; see make_fixtures_recbole.py for the numpy 2 shims RecBole
1.2.1 needs before it is imported)::

    import sys
    sys.path.insert(0, "tools")
    from export.recbole import export, minmax_entry

    config = Config(model="DeepFM", dataset=..., config_dict={...})
    dataset = create_dataset(config)
    train_data, valid_data, test_data = data_preparation(config, dataset)
    model = DeepFM(config, train_data._dataset)
    ...train (recbole.trainer.Trainer)...
    export(model, dataset, "out/my-model")                     # every float field unnormalised
    export(model, dataset, "out/my-model", numeric={"age": minmax_entry(raw_ages)})

Written (RecBole 1.2.1 names, ``D = embedding_size``):

* ``model.safetensors``: ``model.state_dict()`` as is (all float32; RecBole's DeepFM has no buffers),
  each tensor a contiguous copy. Keys, each present only when the model has a field of that kind:

  - ``token_embedding_table.embedding.weight`` [sum of the token fields' vocab, D]: ONE table for all
    ``token`` fields (``FMEmbedding``): field k's id i selects row ``offset_k + i``, offsets the
    cumulative vocab sizes in the model's token field order (``model.token_field_offsets``).
  - ``float_embedding_table.embedding.weight`` [2 * number of float fields, D]: one table for all
    ``float`` fields (``FLEmbedding``), 2 rows per field (``dataset.num(field)`` = the field's
    ``field2bucketnum`` = 2 when not discretised); the input of a float field is a pair
    ``(value, index)`` with ``index`` always 1 (``Dataset._discretization`` without a discretisation
    entry stacks ``[value, 1.0]``), so the field's embedding is ``value * row(offset_k + 1)``; row
    ``offset_k`` is never used. No bias.
  - ``token_seq_embedding_table.<j>.weight`` [vocab_j, D]: one ``nn.Embedding`` per ``token_seq``
    field, in the model's token_seq field order. Row 0 ([PAD]) is masked out, not zero.
  - ``first_order_linear.token_embedding_table.embedding.weight`` [sum of token vocabs, 1],
    ``first_order_linear.float_embedding_table.embedding.weight`` [2 * float fields, 1],
    ``first_order_linear.token_seq_embedding_table.<j>.weight`` [vocab_j, 1]: the same layout with
    width 1 (``FMFirstOrderLinear``, same offsets).
  - ``first_order_linear.bias`` [1]: the first-order (global) bias.
  - ``mlp_layers.mlp_layers.<i>.weight`` [out, in] / ``.bias`` [out]: RecBole's ``MLPLayers`` is an
    ``nn.Sequential`` of, per hidden layer, ``Dropout(p)``, ``Linear``, [``BatchNorm1d`` only when
    built with ``bn=True``, which DeepFM never does], activation; DeepFM builds
    ``MLPLayers([num_fields * D] + mlp_hidden_size, dropout_prob)`` (activation "relu", bn False,
    last_activation True), so with two hidden layers the Linear layers are at indices 1 and 4
    (0 Dropout, 1 Linear, 2 ReLU, 3 Dropout, 4 Linear, 5 ReLU): a ReLU follows the last hidden layer
    too. The exporter lists the Linear prefixes in ``"mlp_linear_layers"``.
  - ``deep_predict_layer.weight`` [1, last hidden] / ``.bias`` [1]: the output unit.

* ``description.json``::

    {"framework": "recbole", "framework_version": recbole.__version__, "model": "DeepFM",
     "fields": [<one object per field, in the FM / MLP input order>],
     "embedding_size": D, "mlp_hidden_size": [...], "dropout_prob": p, "batch_norm": false,
     "activation": "relu", "last_activation": true,
     "mlp_linear_layers": ["mlp_layers.mlp_layers.1", ...], "output_layer": "deep_predict_layer",
     "first_order_bias": "first_order_linear.bias", "output_activation": "sigmoid",
     "token_seq_mean_eps": 1e-08,
     "label": {"field": LABEL_FIELD, "threshold": config["threshold"] or null},
     "vocabularies": {...}, "numeric": {...}}

  Each field object: ``{"name", "type": "token" | "float" | "token_seq", "source": "user_id" |
  "item_id" | "user" | "item" | "inter", "vocab": rows of its table(s) (``dataset.num``),
  "embedding": {"tensor": <key>, "offset": <first row>}, "first_order": {"tensor": <key>,
  "offset": <first row>}}`` plus, for ``token_seq``: ``"max_len"`` (``field2seqlen``: the padded
  length), ``"padding_id": 0``, ``"pooling": "mean"`` (FM / MLP embedding) and
  ``"first_order_pooling": "sum"``; for ``float``: ``"index": 1`` (the row used is ``offset +
  index``) and ``"normalized"`` (whether RecBole min-max normalised the field: ``normalize_all`` or
  ``normalize_field``).

  Field order (``ContextRecommender.concat_embed_input_fields``): ``embed_input_fields`` returns
  ``sparse = cat([token_seq fields..., token fields...])`` and ``dense = float fields...``; the
  FM and the MLP take ``cat([sparse, dense])``: all token_seq fields, then all token fields, then
  all float fields, each group in ``dataset.fields(source=[INTERACTION, USER, USER_ID, ITEM,
  ITEM_ID])`` order (the order the dataset first saw the fields: .inter columns, then .user, then
  .item, as loaded). The MLP input is that [num_fields, D] matrix flattened row by row.

The math, as RecBole 1.2.1 computes it (``DeepFM.forward`` / ``predict``)::

    e_f  = T_f[offset_f + id]                             token
    e_f  = v * F[offset_f + 1]                            float (v: the float32 input value)
    e_f  = sum_{t in seq, t != 0} S_f[t] / (count + 1e-8)  token_seq (mean over non-padding ids;
                                                          0 when all padding)
    first = sum_token w[offset_f + id] + sum_float v * wf[offset_f + 1]
          + sum_token_seq sum_{t != 0} ws_f[t]            (SUM, not mean) + first_order_linear.bias
    fm   = 0.5 * sum_d ((sum_f e_f[d])^2 - sum_f e_f[d]^2)
    h    = relu(W2 relu(W1 x + b1) + b2) ...              x = [e_1, ..., e_F] (dropout: eval no-op)
    y    = first + fm + deep_predict_layer(h);   predict = sigmoid(y)

Vocabularies (``"vocabularies"``, schema in ``tools/export/vocabularies.py``): one entry per token
and token_seq field, ``ids`` = ``dataset.field2token_id[field]`` less ``[PAD]`` (id 0; RecBole's
``_remap`` factorises the tokens of all loaded files and adds 1, so ids start at 1). For a token
side field (not the user / item id) an empty raw cell is RecBole's missing value: pandas reads it as
NaN, ``pd.factorize`` codes it -1, + 1 = 0, and ``_fill_nan`` fills 0 ([PAD]) too, so ``""`` is
written with id 0. ``oov`` is null: RecBole remaps only the tokens of the atomic files it loaded and
has no id for an unseen token. ``sep`` (token_seq) is ``config["seq_separator"]``; RecBole drops
empty pieces (``filter(None, s.split(sep))``) and right-pads with 0.

Numeric (``"numeric"``): RecBole keeps no statistics of its preprocessing, so the entries are given
(``numeric={field: entry}``); every float field that RecBole normalised must have one with
``scale``/``shift``. RecBole 1.2.1 does, for a FLOAT field: ``_fill_nan`` fills a missing value with
the column mean (``feat[field].fillna(feat[field].mean())``), then ``_normalize`` (``normalize_all``
or the field in ``normalize_field``) ``(x - min) / (max - min)`` over that feature file's column
(float64; ``1.0`` for every row of a constant column), and the model gets float32.
:func:`minmax_entry` builds that entry from the raw column (fill_na = mean, scale = 1 / (max - min),
shift = -min / (max - min)). Discretised float fields (``discretization``), float_seq fields and
double_tower models are refused.
"""

import os

from . import vocabularies as _vocabularies

__all__ = ["export", "describe", "minmax_entry", "field_order"]

_SOURCES = ("inter", "user_id", "item_id", "user", "item")


def minmax_entry(raw_values, normalized=True, what="numeric"):
    """RecBole's float-field preprocessing of one feature file column as a "numeric" entry.

    raw_values: the column as RecBole reads it (floats, NaN for an empty cell), all rows of the
    feature file the field comes from (for a user / item field: every user / item row, the [PAD]
    row RecBole adds included or not: it holds the mean, which changes neither min nor max).
    normalized: whether RecBole min-max normalises the field (``normalize_all`` or
    ``normalize_field``); without it only ``fill_na`` is written.
    """
    import numpy as np

    vals = np.asarray([float(v) for v in raw_values], dtype=np.float64)
    if np.isnan(vals).all():
        raise ValueError(f"{what}: no value in the column")
    mean = float(np.nanmean(vals))  # pandas' Series.mean (NaN skipped)
    if not normalized:
        return _vocabularies.numeric_entry(fill_na=mean, what=what)
    filled = np.where(np.isnan(vals), mean, vals)
    mx, mn = float(filled.max()), float(filled.min())
    if mx == mn:  # RecBole: arr = 1.0
        return _vocabularies.numeric_entry(fill_na=mean, scale=0.0, shift=1.0, what=what)
    return _vocabularies.numeric_entry(fill_na=mean, scale=1.0 / (mx - mn), shift=0.0 - mn / (mx - mn),
                                       what=what)


def field_order(model):
    """[(name, type)] in the order DeepFM concatenates the field embeddings."""
    return ([(n, "token_seq") for n in model.token_seq_field_names]
            + [(n, "token") for n in model.token_field_names]
            + [(n, "float") for n in model.float_field_names])


def _mlp_description(model):
    from torch import nn

    mlp = model.mlp_layers
    layers = list(mlp.mlp_layers)
    linear_keys, dropouts, act = [], [], None
    i = 0
    while i < len(layers):
        if type(layers[i]) is not nn.Dropout:
            raise ValueError(f"mlp_layers.mlp_layers.{i}: expected Dropout, found {type(layers[i]).__name__}")
        dropouts.append(float(layers[i].p))
        i += 1
        if i == len(layers) or type(layers[i]) is not nn.Linear or layers[i].bias is None:
            raise ValueError(f"mlp_layers.mlp_layers.{i}: expected Linear with bias")
        linear_keys.append(f"mlp_layers.mlp_layers.{i}")
        i += 1
        if i < len(layers) and type(layers[i]) is nn.BatchNorm1d:
            raise ValueError("MLPLayers with bn=True is not supported (RecBole's DeepFM never builds it)")
        if i < len(layers) and type(layers[i]) is nn.ReLU:
            act = "relu"
            i += 1
        else:
            found = type(layers[i]).__name__ if i < len(layers) else "nothing"
            raise ValueError(f"mlp_layers.mlp_layers.{i}: activation {found} is not supported (ReLU only, "
                             "after every hidden layer)")
    if len(set(dropouts)) > 1:
        raise ValueError(f"per-layer dropout {dropouts}")
    hidden = [layers[int(k.rsplit(".", 1)[1])].out_features for k in linear_keys]
    if list(hidden) != list(model.mlp_hidden_size):
        raise ValueError(f"MLP widths {hidden} != mlp_hidden_size {model.mlp_hidden_size}")
    out = model.deep_predict_layer
    if type(out) is not nn.Linear or out.out_features != 1 or out.bias is None:
        raise ValueError("deep_predict_layer must be Linear(., 1) with bias")
    return {
        "mlp_hidden_size": [int(h) for h in hidden],
        "dropout_prob": dropouts[0] if dropouts else 0.0,
        "batch_norm": False,
        "activation": act or "relu",
        "last_activation": True,
        "mlp_linear_layers": linear_keys,
        "output_layer": "deep_predict_layer",
    }


def _normalized_fields(config, dataset):
    from recbole.utils import FeatureType

    if config["normalize_field"]:
        return set(config["normalize_field"])
    if config["normalize_all"]:
        return {f for f, t in dataset.field2type.items() if t in (FeatureType.FLOAT, FeatureType.FLOAT_SEQ)}
    return set()


def _fields_description(model, dataset):
    import numpy as np

    fo = model.first_order_linear
    for attr in ("token_field_names", "token_seq_field_names", "float_field_names"):
        if list(getattr(model, attr)) != list(getattr(fo, attr)):
            raise ValueError(f"first_order_linear.{attr} {getattr(fo, attr)} differs from the model's "
                             f"{getattr(model, attr)} (double_tower?)")
    if model.float_seq_field_names or fo.float_seq_field_names:
        raise ValueError(f"float_seq fields {model.float_seq_field_names} are not supported")
    if getattr(model, "double_tower", False):
        raise ValueError("double_tower is not supported")
    config = dataset.config
    disc = config["discretization"] or {}
    normalized = _normalized_fields(config, dataset)
    D = model.embedding_size
    out = []
    sd = model.state_dict()

    def check_rows(key, first, n, width):
        t = sd[key]
        if t.shape[1] != width or first + n > t.shape[0]:
            raise ValueError(f"{key}: shape {tuple(t.shape)} cannot hold rows {first}..{first + n - 1}")

    for j, name in enumerate(model.token_seq_field_names):
        vocab = int(dataset.num(name))
        emb, fo_key = f"token_seq_embedding_table.{j}.weight", f"first_order_linear.token_seq_embedding_table.{j}.weight"
        check_rows(emb, 0, vocab, D)
        check_rows(fo_key, 0, vocab, 1)
        if sd[emb].shape[0] != vocab:
            raise ValueError(f"{emb}: {sd[emb].shape[0]} rows, vocab {vocab}")
        out.append({"name": name, "type": "token_seq", "source": dataset.field2source[name].value, "vocab": vocab,
                    "max_len": int(dataset.field2seqlen[name]), "padding_id": 0,
                    "pooling": "mean", "first_order_pooling": "sum",
                    "embedding": {"tensor": emb, "offset": 0},
                    "first_order": {"tensor": fo_key, "offset": 0}})
    offsets = [int(x) for x in np.asarray(getattr(model, "token_field_offsets", []))]
    fo_offsets = [int(x) for x in np.asarray(getattr(fo, "token_field_offsets", []))]
    if offsets != fo_offsets:
        raise ValueError(f"token offsets {offsets} != first-order offsets {fo_offsets}")
    for k, name in enumerate(model.token_field_names):
        vocab = int(dataset.num(name))
        if int(model.token_field_dims[k]) != vocab:
            raise ValueError(f"token field {name}: dims {model.token_field_dims[k]} != dataset.num {vocab}")
        emb, fo_key = "token_embedding_table.embedding.weight", "first_order_linear.token_embedding_table.embedding.weight"
        check_rows(emb, offsets[k], vocab, D)
        check_rows(fo_key, offsets[k], vocab, 1)
        out.append({"name": name, "type": "token", "source": dataset.field2source[name].value, "vocab": vocab,
                    "embedding": {"tensor": emb, "offset": offsets[k]},
                    "first_order": {"tensor": fo_key, "offset": offsets[k]}})
    if model.token_field_names and sd["token_embedding_table.embedding.weight"].shape[0] != sum(model.token_field_dims):
        raise ValueError("token_embedding_table rows != sum of the token field vocabs")
    f_offsets = [int(x) for x in np.asarray(getattr(model, "float_field_offsets", []))]
    for k, name in enumerate(model.float_field_names):
        if name in disc:
            raise ValueError(f"float field {name}: discretization {disc[name]} is not supported")
        vocab = int(dataset.num(name))
        if vocab != 2:
            raise ValueError(f"float field {name}: {vocab} rows, expected 2 (value, index 1)")
        emb, fo_key = "float_embedding_table.embedding.weight", "first_order_linear.float_embedding_table.embedding.weight"
        check_rows(emb, f_offsets[k], vocab, D)
        check_rows(fo_key, f_offsets[k], vocab, 1)
        out.append({"name": name, "type": "float", "source": dataset.field2source[name].value, "vocab": vocab,
                    "index": 1, "normalized": name in normalized,
                    "embedding": {"tensor": emb, "offset": f_offsets[k]},
                    "first_order": {"tensor": fo_key, "offset": f_offsets[k]}})
    if [f["name"] for f in out] != [n for n, _ in field_order(model)] or len(out) != model.num_feature_field:
        raise ValueError("field list does not match num_feature_field")
    for f in out:
        if f["source"] not in _SOURCES:
            raise ValueError(f"field {f['name']}: source {f['source']!r}")
    return out


def _vocabularies_description(model, dataset, fields):
    sep = dataset.config["seq_separator"]
    id_fields = {dataset.uid_field, dataset.iid_field}
    out = {}
    for f in fields:
        if f["type"] == "float":
            continue
        name = f["name"]
        token_id = dataset.field2token_id[name]
        ids = {str(t): int(i) for t, i in token_id.items() if int(i) != 0}
        if len(ids) != f["vocab"] - 1 or sorted(ids.values()) != list(range(1, f["vocab"])):
            raise ValueError(f"field {name}: field2token_id does not cover ids 1..{f['vocab'] - 1} once each")
        if f["type"] == "token" and name not in id_fields:
            if "" in ids:
                raise ValueError(f"field {name}: an empty token with an id other than 0")
            ids[""] = 0  # an empty cell: NaN -> factorize -1 + 1 = 0 ([PAD]); _fill_nan fills 0 too
        out[name] = _vocabularies.entry(ids, oov=None, sep=sep if f["type"] == "token_seq" else None,
                                        what=f"field {name}")
    return out


def describe(model, dataset, numeric=None):
    """description.json's content (see the module docstring). ``numeric``: {float field: "numeric"
    entry}, required for every float field RecBole normalised (see :func:`minmax_entry`)."""
    import recbole
    from recbole.model.context_aware_recommender import DeepFM

    if not isinstance(model, DeepFM) or type(model) is not DeepFM:
        raise ValueError(f"only recbole's DeepFM is supported, got {type(model).__name__}")
    fields = _fields_description(model, dataset)
    desc = {
        "framework": "recbole",
        "framework_version": recbole.__version__,
        "model": "DeepFM",
        "fields": fields,
        "embedding_size": int(model.embedding_size),
        **_mlp_description(model),
        "first_order_bias": "first_order_linear.bias",
        "output_activation": "sigmoid",
        "token_seq_mean_eps": 1e-8,
        "label": {"field": dataset.config["LABEL_FIELD"],
                  "threshold": dict(dataset.config["threshold"]) if dataset.config["threshold"] else None},
    }
    desc["vocabularies"] = _vocabularies_description(model, dataset, fields)
    floats = {f["name"]: f for f in fields if f["type"] == "float"}
    entries = _vocabularies.check_numeric(numeric or {}, features=set(floats), what="numeric")
    for name, f in floats.items():
        if f["normalized"] and not ("scale" in entries.get(name, {}) and "shift" in entries.get(name, {})):
            raise ValueError(f"float field {name} is min-max normalised by RecBole: pass numeric={{{name!r}: "
                             "minmax_entry(raw values)} (RecBole keeps no min / max)")
        if not f["normalized"] and ("scale" in entries.get(name, {}) or "shift" in entries.get(name, {})):
            raise ValueError(f"float field {name} is not normalised by RecBole but numeric has scale / shift")
    if entries:
        desc["numeric"] = entries
    return desc


def export(model, dataset, out_dir, numeric=None):
    """Write out_dir/model.safetensors and out_dir/description.json; returns the description."""
    from safetensors.torch import save_file

    description = describe(model, dataset, numeric)
    os.makedirs(out_dir, exist_ok=True)
    tensors = {k: v.detach().cpu().clone().contiguous() for k, v in model.state_dict().items()}
    save_file(tensors, os.path.join(out_dir, "model.safetensors"))
    with open(os.path.join(out_dir, "description.json"), "w", encoding="utf-8") as f:
        _vocabularies.dump_description(description, f)
    return description
