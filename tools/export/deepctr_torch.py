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
  ``_asdict()`` plus a ``"type"`` key; a ``VarLenSparseFeat`` nests its ``SparseFeat``).

``DeepFM``/``BaseModel`` do not keep ``linear_feature_columns`` as such: the ``Linear`` module keeps
them split by type (``sparse_feature_columns``, ``dense_feature_columns``,
``varlen_sparse_feature_columns``). This exporter puts them back in their original order using
``model.feature_index`` (built from ``linear_feature_columns + dnn_feature_columns``, so a linear
column's position there is its position in the original list). Pass ``linear_feature_columns``
explicitly to write a given list instead.
"""

import json
import os

__all__ = ["export", "describe"]


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


def describe(model, linear_feature_columns=None):
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

    return {
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


def export(model, out_dir, linear_feature_columns=None):
    """Write out_dir/model.safetensors and out_dir/description.json for a trained DeepFM.

    Returns the description dict.
    """
    from safetensors.torch import save_file

    description = describe(model, linear_feature_columns)
    os.makedirs(out_dir, exist_ok=True)
    save_file(
        {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()},
        os.path.join(out_dir, "model.safetensors"),
    )
    with open(os.path.join(out_dir, "description.json"), "w", encoding="utf-8") as f:
        json.dump(description, f, indent=2)
        f.write("\n")
    return description
