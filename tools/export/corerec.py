"""Export a fitted CoreRec ``corerec.engines.deepfm.DeepFM`` to ``model.safetensors`` + ``description.json``.

Usage (from the repository root; put ``tools/`` on ``sys.path`` and import this file as
``export.corerec`` so that it does not shadow the ``corerec`` package itself)::

    import sys
    sys.path.insert(0, "tools")
    from export.corerec import export

    rec = DeepFM(embedding_dim=8, hidden_layers=[32, 16], epochs=2, device="cpu")
    rec.fit(user_ids, item_ids, ratings, user_features=..., item_features=...)
    export(rec, "out/my-model")            # writes out/my-model/{model.safetensors,description.json}

What is written:

* ``model.safetensors``: ``recommender.model.state_dict()`` (the inner ``DeepFMModel`` torch
  module), every tensor contiguous, dtypes kept: ``fm_layer.offsets`` [n_fields] int64 (the start
  of each field in the two shared tables), ``fm_layer.embedding.weight`` [sum(field_dims), 1],
  ``fm_layer.feature_embedding.weight`` [sum(field_dims), D],
  ``deep_layers.<i>.0.{weight,bias}`` (Linear), ``deep_layers.<i>.1.{weight,bias,running_mean,
  running_var,num_batches_tracked}`` (BatchNorm1d; num_batches_tracked int64),
  ``output_layer.{weight,bias}`` [1, last hidden], [1].
* ``description.json``: framework, version, ``field_names`` (the keys of
  ``recommender.feature_map`` in order: "user", "item", then "user_<feature>" and
  "item_<feature>" sorted by feature name, as ``fit`` builds them), ``field_dims``,
  ``embedding_dim``, ``hidden_layers``, ``use_sigmoid`` (the inner module's plain attribute, set
  from the fit task: implicit -> sigmoid, rating -> raw score), ``bn_eps`` and ``feature_map``
  (field -> {raw token as a string: index within the field}).

The model's input is one index per field, each *within its field* (0 .. field_dims[f]-1); the
module adds ``fm_layer.offsets`` itself.
"""

import json
import os

__all__ = ["export", "describe"]


def describe(recommender):
    """The description.json contents (a dict) for a fitted corerec DeepFM recommender."""
    import corerec
    import torch.nn as nn

    if not getattr(recommender, "is_fitted", False) or recommender.model is None:
        raise ValueError("the recommender has not been fitted")
    module = recommender.model
    field_names = list(recommender.feature_map.keys())
    field_dims = [int(d) for d in recommender.field_dims]
    if len(field_names) != len(field_dims):
        raise ValueError(f"feature_map has {len(field_names)} fields but field_dims has {len(field_dims)}")
    for name, dim in zip(field_names, field_dims):
        if len(recommender.feature_map[name]) != dim:
            raise ValueError(f"field {name}: {len(recommender.feature_map[name])} tokens but field_dims says {dim}")

    eps = sorted({float(m.eps) for m in module.modules() if isinstance(m, nn.BatchNorm1d)})
    if len(eps) > 1:
        raise ValueError(f"BatchNorm layers with different eps {eps}")

    feature_map = {}
    for name in field_names:
        tokens = {}
        for raw, idx in recommender.feature_map[name].items():
            key = str(raw)
            if key in tokens:
                raise ValueError(f"field {name}: two raw tokens print as {key!r}")
            tokens[key] = int(idx)
        feature_map[name] = tokens

    return {
        "framework": "corerec",
        "framework_version": getattr(corerec, "__version__", "unknown"),
        "field_names": field_names,
        "field_dims": field_dims,
        "embedding_dim": int(recommender.embedding_dim),
        "hidden_layers": [int(h) for h in recommender.hidden_layers],
        "use_sigmoid": bool(module.use_sigmoid),
        "bn_eps": eps[0] if eps else None,
        "feature_map": feature_map,
    }


def export(recommender, out_dir):
    """Write out_dir/model.safetensors and out_dir/description.json for a fitted recommender.

    Returns the description dict.
    """
    from safetensors.torch import save_file

    description = describe(recommender)
    os.makedirs(out_dir, exist_ok=True)
    save_file(
        {k: v.detach().cpu().contiguous() for k, v in recommender.model.state_dict().items()},
        os.path.join(out_dir, "model.safetensors"),
    )
    with open(os.path.join(out_dir, "description.json"), "w", encoding="utf-8") as f:
        json.dump(description, f, indent=2)
        f.write("\n")
    return description
