"""Export a trained DeepCTR-Torch ``DeepFM`` to ``model.safetensors`` + ``description.json``.

Usage (from the repository root; put ``tools/`` on ``sys.path`` and import this file as
``export.deepctr_torch`` so that it does not shadow the ``deepctr_torch`` package itself)::

    import sys
    sys.path.insert(0, "tools")
    from export.deepctr_torch import export

    model = DeepFM(linear_feature_columns, dnn_feature_columns, task="binary", ...)
    model.compile("adam", "binary_crossentropy")
    model.fit(x, y, batch_size=256, epochs=1)
    export(model, "out/my-model")          # writes out/my-model/{model.safetensors,description.json}

    # with the token vocabularies the ids came from (optional; see "vocabularies" below):
    export(model, "out/my-model", encoders={
        "gender": gender_label_encoder,                       # a fitted sklearn LabelEncoder
        "city": {"Paris": 1, "Oslo": 2},                      # token -> id
        "genres": vocabulary(genre_ids, sep="|"),             # a VarLenSparseFeat: its separator
        "country": vocabulary(country_ids, oov=0),            # an id for unknown tokens
    })

    # with how raw numbers became the DenseFeat values (optional; see "numeric" below):
    export(model, "out/my-model", numeric={
        "age": {"scale": 0.01},                               # fed age / 100
        "I1": {"fill_na": 0, "log1p": True},                  # missing -> 0, then ln(1 + max(v, 0))
    })

What is written:

* ``model.safetensors``: ``model.state_dict()`` exactly as PyTorch names it (every tensor made
  contiguous, dtypes kept: float32 parameters and buffers, int64 ``num_batches_tracked``).
  For DeepFM the keys are ``embedding_dict.<embedding_name>.weight`` [vocabulary_size, D],
  ``linear_model.embedding_dict.<embedding_name>.weight`` [vocabulary_size, 1],
  ``linear_model.weight`` [sum of dense dimensions, 1] (only with dense features),
  ``dnn.linears.<i>.{weight,bias}``, ``dnn.bn.<i>.{weight,bias,running_mean,running_var,
  num_batches_tracked}`` (only with ``dnn_use_bn``), ``dnn.activation_layers.<i>.weight`` [1] (only for
  PReLU, the one activation with parameters that DeepFM can run: Dice is built with dice_dim=3
  and then asserts a 3-D input),
  ``dnn_linear.weight`` [1, last hidden] (no bias) and ``out.bias`` [1].
* ``description.json``: framework, version, task, use_fm, DNN shape, activation, batch-norm use
  and eps (``dnn_hidden_units`` [], ``dnn_activation`` null, ``dnn_use_bn`` false and ``bn_eps``
  null when the model has no DNN), and the linear and DNN feature columns (DeepCTR's own namedtuples written with
  ``_asdict()`` plus a ``"type"`` key; a ``VarLenSparseFeat`` nests its ``SparseFeat``), and, when
  ``encoders`` is given, ``"vocabularies"``: ``{feature name: {"ids": {token: id}, "oov": id | null,
  "sep": str}}`` (schema in ``tools/export/vocabularies.py``; ``sep`` only for a
  ``VarLenSparseFeat``). DeepCTR-Torch has no vocabulary of its own: the ids are whatever the user
  fed, so the vocabularies are the user's encoders. ``encoders`` maps a ``SparseFeat`` /
  ``VarLenSparseFeat`` name to a fitted sklearn ``LabelEncoder`` (id = index in ``classes_``), a
  dict token -> id, or ``vocabulary(ids, sep=None, oov=None)`` (= ``{"ids": ..., "sep": ...,
  "oov": ...}``, ``ids`` either of the two former). ``oov`` is null unless given: DeepCTR itself
  has no out-of-vocabulary id (LabelEncoder.transform raises on an unknown token). A
  ``VarLenSparseFeat`` needs ``sep`` (what separates its tokens in one raw value); a ``SparseFeat``
  takes none. Features without an encoder (dense ones, ids used as they are) get no entry; every id
  and ``oov`` must be below the column's ``vocabulary_size``. Note that DeepCTR masks id 0 of a
  ``VarLenSparseFeat`` without ``length_name`` as padding, so a token encoded as 0 there is
  ignored by the model, in training as in serving.
  With ``numeric``, ``"numeric"``: ``{DenseFeat name: {"fill_na": number, "log1p": bool, "scale":
  number, "shift": number}}`` (every key optional; schema in ``tools/export/vocabularies.py``):
  how the user's preprocessing turned a raw number into the value fed to the model (an empty
  cell -> fill_na, then ln(1 + max(v, 0)) if log1p, then v * scale + shift, in float64, rounded
  to float32). The preprocessing is the user's, so the entries are written as given, after
  checking them (DenseFeat names of dimension 1, only those keys, finite numbers, log1p a bool).
  Leave out the features fed as they are.

``DeepFM``/``BaseModel`` do not keep ``linear_feature_columns`` as such: the ``Linear`` module keeps
them split by type (``sparse_feature_columns``, ``dense_feature_columns``,
``varlen_sparse_feature_columns``). This exporter puts them back in their original order using
``model.feature_index`` (built from ``linear_feature_columns + dnn_feature_columns``, so a linear
column's position there is its position in the original list). Pass ``linear_feature_columns``
explicitly to write a given list instead.
"""

import os
from collections.abc import Mapping

from . import vocabularies as _vocabularies

__all__ = ["export", "describe", "vocabulary"]


def vocabulary(ids, sep=None, oov=None):
    """An ``encoders`` value with options: ids (a fitted LabelEncoder or a dict token -> id), the
    separator of a VarLenSparseFeat's tokens, and the id of an unknown token (default: none)."""
    out = {"ids": ids}
    if sep is not None:
        out["sep"] = sep
    if oov is not None:
        out["oov"] = oov
    return out


def _is_label_encoder(obj):
    return hasattr(obj, "classes_") and hasattr(obj, "transform")


def _token_ids(ids, what):
    if _is_label_encoder(ids):
        return {c.item() if hasattr(c, "item") else c: i for i, c in enumerate(ids.classes_)}
    if isinstance(ids, Mapping):
        return {(k.item() if hasattr(k, "item") else k): (v.item() if hasattr(v, "item") else v)
                for k, v in ids.items()}
    raise TypeError(f"{what}: expected a fitted LabelEncoder or a dict token -> id, "
                    f"got {type(ids).__name__}")


def _encoder_vocabularies(encoders, columns):
    """The "vocabularies" dict for encoders, in column order, checked against the columns."""
    from deepctr_torch.inputs import DenseFeat, VarLenSparseFeat

    by_name = {}
    for fc in columns:
        by_name.setdefault(fc.name, fc)
    unknown = [n for n in encoders if n not in by_name]
    if unknown:
        raise ValueError(f"encoders for features that are not columns of the model: {unknown}")
    out = {}
    for name, fc in by_name.items():
        if name not in encoders:
            continue
        what = f"encoders[{name!r}]"
        if isinstance(fc, DenseFeat):
            raise ValueError(f"{what}: {name} is a DenseFeat (a number, not ids)")
        enc = encoders[name]
        if (isinstance(enc, Mapping) and "ids" in enc and set(enc) <= {"ids", "sep", "oov"}
                and (isinstance(enc["ids"], Mapping) or _is_label_encoder(enc["ids"]))):
            ids, sep, oov = enc["ids"], enc.get("sep"), enc.get("oov")
        else:
            ids, sep, oov = enc, None, None
        varlen = isinstance(fc, VarLenSparseFeat)
        if varlen and sep is None:
            raise ValueError(f"{what}: {name} is a VarLenSparseFeat: give the separator of its tokens, "
                             f"e.g. vocabulary(ids, sep='|')")
        if not varlen and sep is not None:
            raise ValueError(f"{what}: {name} is a SparseFeat (one token): it takes no sep")
        entry = _vocabularies.entry(_token_ids(ids, what), oov=oov, sep=sep, what=what)
        size = fc.vocabulary_size
        bad = [(t, i) for t, i in entry["ids"].items() if i >= size]
        if entry["oov"] is not None and entry["oov"] >= size:
            bad.append(("(oov)", entry["oov"]))
        if bad:
            raise ValueError(f"{what}: ids outside 0..{size - 1} (vocabulary_size {size}): {bad[:5]}")
        out[name] = entry
    return out


def _column_dict(fc):
    """A DeepCTR feature column (namedtuple) as a JSON-ready dict with a "type" key first."""
    from deepctr_torch.inputs import DenseFeat, SparseFeat, VarLenSparseFeat

    if isinstance(fc, VarLenSparseFeat):
        d = {"type": "VarLenSparseFeat"}
        for k, v in fc._asdict().items():
            d[k] = _column_dict(v) if k == "sparsefeat" else v
        return d
    if isinstance(fc, SparseFeat):
        return {"type": "SparseFeat", **fc._asdict()}
    if isinstance(fc, DenseFeat):
        return {"type": "DenseFeat", **fc._asdict()}
    raise TypeError(f"unsupported feature column type {type(fc).__name__}")


def _linear_columns_from_model(model):
    """Rebuild linear_feature_columns from model.linear_model, in their original order."""
    lm = model.linear_model
    cols = list(lm.sparse_feature_columns) + list(lm.varlen_sparse_feature_columns) + list(
        lm.dense_feature_columns
    )
    order = {name: i for i, name in enumerate(model.feature_index)}
    return sorted(cols, key=lambda fc: order[fc.name])


def _activation_name(layer):
    """Lower-case DeepCTR activation name of one activation layer instance."""
    cls = type(layer).__name__
    names = {"ReLU": "relu", "Sigmoid": "sigmoid", "Identity": "linear", "PReLU": "prelu", "Dice": "dice"}
    if cls in names:
        return names[cls]
    raise ValueError(f"unsupported DNN activation layer {cls}")


def _numeric(numeric, columns):
    """The "numeric" dict as given, checked: DenseFeat names of dimension 1, valid entries."""
    from deepctr_torch.inputs import DenseFeat

    dense = {fc.name: fc for fc in columns if isinstance(fc, DenseFeat)}
    out = _vocabularies.check_numeric(numeric, features=dense, what="numeric")
    for name in out:
        if dense[name].dimension != 1:
            raise ValueError(f"numeric[{name!r}]: DenseFeat of dimension {dense[name].dimension}: a raw "
                             "cell holds one number")
    return out


def describe(model, linear_feature_columns=None, encoders=None, numeric=None):
    """The description.json contents (a dict) for a deepctr_torch DeepFM instance."""
    import deepctr_torch
    from deepctr_torch.models import DeepFM

    if not isinstance(model, DeepFM):
        raise TypeError(f"expected deepctr_torch.models.DeepFM, got {type(model).__name__}")
    if linear_feature_columns is None:
        linear_feature_columns = _linear_columns_from_model(model)

    use_dnn = bool(getattr(model, "use_dnn", False))
    if use_dnn:
        dnn = model.dnn
        hidden = [int(lin.out_features) for lin in dnn.linears]
        activations = {_activation_name(a) for a in dnn.activation_layers}
        if len(activations) != 1:
            raise ValueError(f"mixed DNN activations {sorted(activations)}")
        activation = activations.pop()
        use_bn = bool(dnn.use_bn)
        eps = sorted({float(bn.eps) for bn in dnn.bn}) if use_bn else []
        if len(eps) > 1:
            raise ValueError(f"BatchNorm layers with different eps {eps}")
        bn_eps = eps[0] if eps else None
    else:
        hidden, activation, use_bn, bn_eps = [], None, False, None

    description = {
        "framework": "deepctr-torch",
        "framework_version": deepctr_torch.__version__,
        "task": model.out.task,
        "use_fm": bool(model.use_fm),
        "dnn_hidden_units": hidden,
        "dnn_activation": activation,
        "dnn_use_bn": use_bn,
        "bn_eps": bn_eps,
        "linear_feature_columns": [_column_dict(fc) for fc in linear_feature_columns],
        "dnn_feature_columns": [_column_dict(fc) for fc in model.dnn_feature_columns],
    }
    if encoders:
        description["vocabularies"] = _encoder_vocabularies(
            encoders, list(model.dnn_feature_columns) + list(linear_feature_columns))
    if numeric:
        description["numeric"] = _numeric(numeric, list(model.dnn_feature_columns) + list(linear_feature_columns))
    return description


def export(model, out_dir, linear_feature_columns=None, encoders=None, numeric=None):
    """Write out_dir/model.safetensors and out_dir/description.json for a trained DeepFM.

    encoders: optional {feature name: LabelEncoder | dict token -> id | vocabulary(...)}, written
    as description.json's "vocabularies". numeric: optional {DenseFeat name: {"fill_na", "log1p",
    "scale", "shift"}} (each key optional), written as "numeric". Returns the description dict.
    """
    from safetensors.torch import save_file

    description = describe(model, linear_feature_columns, encoders, numeric)
    os.makedirs(out_dir, exist_ok=True)
    save_file(
        {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()},
        os.path.join(out_dir, "model.safetensors"),
    )
    with open(os.path.join(out_dir, "description.json"), "w", encoding="utf-8") as f:
        _vocabularies.dump_description(description, f)
    return description
