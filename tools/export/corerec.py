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
  from the fit task: implicit -> sigmoid, rating -> raw score), ``bn_eps``, ``feature_map``
  (field -> {raw token as a string: index within the field}) and ``vocabularies`` (the schema of
  ``tools/export/vocabularies.py``: the same token -> index maps, one entry per field, with
  ``"oov"``: null for "user" and "item", 0 for every side-feature field). CoreRec's own
  ``predict(user_id, item_id)`` (corerec/engines/deepfm.py, 0.6.0) returns 0.0 for an unknown user
  or item (``if user_id not in self.feature_map["user"]: return 0.0``): there is no id to give
  them, so an importer refuses them (oov null). An unknown side-feature value is looked up with
  ``self.feature_map[f"user_{feature_type}"].get(value, 0)`` (the same for items), and a missing one
  is ``x.append(0)``: index 0 of that field, which is also the index of the field's first token in
  sorted order.

The model's input is one index per field, each *within its field* (0 .. field_dims[f]-1); the
module adds ``fm_layer.offsets`` itself.
"""

import os

from . import vocabularies as _vocabularies

__all__ = ["export", "describe"]

# CoreRec 0.6.0 predict(): unknown user / item -> `return 0.0` (no id: refused on import);
# unknown or missing side-feature value -> `.get(value, 0)` / `x.append(0)`: index 0 of its field.
_UNKNOWN_ID = {"user": None, "item": None}
_SIDE_FEATURE_OOV = 0


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

    vocabularies = {
        name: _vocabularies.entry(tokens, oov=_UNKNOWN_ID.get(name, _SIDE_FEATURE_OOV), what=f"field {name}")
        for name, tokens in feature_map.items()
    }

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
        "vocabularies": vocabularies,
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
        _vocabularies.dump_description(description, f)
    return description
