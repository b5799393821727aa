"""Export a DeepFM head over torchrec ``EmbeddingBagCollection``s to ``model.safetensors`` +
``description.json`` (read by ``deepfm import --from torchrec``).

Usage (from the repository root; put ``tools/`` on ``sys.path`` and import this file as
``export.torchrec`` so that it does not shadow the ``torchrec`` package itself)::

    import sys
    sys.path.insert(0, "tools")
    from export.torchrec import export

    # After sharded training (DistributedModelParallel): gather the state_dict to full tensors on
    # rank 0 (ShardedTensor.gather(dst=0, out=...), DTensor.full_tensor(); keys without the
    # "_dmp_wrapped_module." / "module." prefixes), then on rank 0:
    model = MyDeepFM()                          # the unsharded module
    model.load_state_dict(gathered, strict=True)
    export(model, "out/my-model", feature_order=["user", "item", "genres"],
           multi_valued=["genres"],             # KJT features with several ids per row
           vocabularies={"genres": vocabularies.entry(genre_ids, sep="|")})   # optional
    # or, without loading it (the module may then live on the meta device):
    export(model, "out/my-model", feature_order=[...], state_dict=gathered)

    # Self-check (builds small models, exports them to a temporary folder, reads the files back,
    # checks every refusal; needs torch, torchrec, safetensors):
    #   python -c "import sys; sys.path.insert(0, 'tools'); from export.torchrec import self_check; self_check()"
    #   or: python tools/export/torchrec.py

``tools/export/make_fixtures_torchrec.py`` writes the torchrec-ml100k fixture with it.

The model this describes (``TorchrecDeepFM`` in make_fixtures_torchrec.py is one):

* one or more ``torchrec.EmbeddingBagCollection`` anywhere in ``model.named_modules()``. Tables of
  ``embedding_dim`` 1 are the first-order weights, every other table is an embedding table (all
  of one width D). Weighted collections (``is_weighted=True``, read through a KJT with
  ``weights=``) pool ``sum_i w_i * row_i`` (mean: divided by the number of ids, as fbgemm's
  sharded kernel does; the unsharded ``nn.EmbeddingBag`` refuses weighted mean).
* ``forward`` computes, F = ``feature_order``, e_f / w_f the feature's pooled embedding / first-order
  weight::

      logit = global_bias + sum_f w_f + 0.5 * sum_d[(sum_f e_fd)^2 - sum_f e_fd^2]
              + output_layer(mlp(concat_f e_f))          (concat feature-major, B x F*D)
      prediction = sigmoid(logit)  (output="sigmoid") or logit (output="linear" / None)

  The exporter cannot read ``forward``: ``feature_order`` (the order of the concatenation) and the
  names ``mlp``, ``output_layer``, ``global_bias`` say how the model is wired.
* ``mlp`` (a submodule path; None for no hidden layers): an ``nn.Sequential`` (nested ones and
  torchrec's ``torchrec.modules.mlp.MLP`` / ``Perceptron`` are walked too) of, per hidden layer,
  ``Linear`` (with bias) -> optional ``BatchNorm1d`` (affine, running stats, one eps for all) ->
  ``ReLU`` (``nn.ReLU``, or torch.relu as a Perceptron's activation); ``Dropout`` and ``Identity``
  anywhere are skipped (identity in eval mode). Its last module may be the output layer itself
  (pass its path as ``output_layer``, e.g. ``"mlp.6"``).
* ``output_layer``: ``nn.Linear(last hidden width, 1)`` with a bias. ``global_bias``: a
  state_dict key of a [1] tensor.

Refused, with a ValueError naming the module or tensor (the importer could not score it exactly):
torchrec's own ``torchrec.models.deepfm.SimpleDeepFMNN`` / ``torchrec.modules.deepfm.FactorizationMachine``
(its FM sums the products of all pairs of the F x D scalars flattened, across dimensions, and the
over-arch weighs [dense vector, deep output, FM term] with a learned layer), state_dict keys under
``over_arch.`` / ``inter_arch.`` / ``dense_arch.`` (how the importer recognises that model), a sharded
module or tensors (DistributedModelParallel, ShardedTensor, DTensor: gather first), other sparse
modules (EmbeddingCollection, FeatureProcessedEmbeddingBagCollection, fused collections, an
``nn.Embedding`` / ``nn.EmbeddingBag`` outside an EmbeddingBagCollection), pooling other than SUM
/ MEAN, tables that are not float32, embedding tables of different widths, a feature without
exactly one embedding table and one first-order table (or not in ``feature_order``, or whose two
tables are not shared alike or not both weighted / unweighted), any MLP layer kind or activation
other than the above (Sigmoid, PReLU, LayerNorm, SwishLayerNorm, batch norm after the activation, a
Linear without bias, ...), widths that do not chain, and any state_dict tensor none of the above
accounts for (the importer refuses unused tensors).

Written:

* ``model.safetensors``: the state_dict (``model.state_dict()`` or ``state_dict``) with torch's
  names, every tensor contiguous (tensors sharing storage are copied), dtypes kept (float32;
  int64 ``num_batches_tracked``).
* ``description.json`` (``vocabularies.dump_description``), in this key order::

    {"framework": "torchrec", "framework_version": torchrec.__version__,
     "torch_version": torch.__version__ without "+...",
     "model": "<module>.<class> of the model" (or extra["model"]),
     "tables": [<embedding table>...], "first_order_tables": [<1-dim table>...],
     "feature_order": [...], "multi_valued": {feature: text},
     "hidden": [widths], "activation": "relu" | null, "batch_norm": true | false | [per layer],
     "bn_eps": eps | null, "dropout": p | [p per Dropout],
     "mlp_layers": [{"linear": "mlp.0", "batch_norm": "mlp.1", "activation": "relu"}, ...],
     "output_layer": "out", "global_bias": "bias", "output": "sigmoid" | "linear" | null,
     "logit": "<the formula above, with these names>",
     <extra's other keys, in their order>,
     "vocabularies": {...}}            (only with ``vocabularies``)

  A table: ``{"name", "num_embeddings", "embedding_dim", "pooling": "sum" | "mean",
  "feature_names", "tensor": "<module path>.embedding_bags.<name>.weight"}`` plus
  ``"is_weighted": true`` for a weighted collection's tables (absent = false); tables in
  ``named_modules()`` order, each collection's in its config order. ``"batch_norm"`` of a layer
  without one is omitted from its ``mlp_layers`` entry. ``"multi_valued"``: the features with
  several ids per row (KJT lengths, no padding; ``multi_valued``) and every weighted feature, each
  with a text saying how it is fed (a default unless ``multi_valued`` is a dict with a text);
  the importer makes these multi-hot fields pooled by their tables' pooling, the others one-id
  categorical fields.

``vocabularies`` (optional): ``{feature: vocabularies.entry(...) | {token: id}}``, schema in
``tools/export/vocabularies.py``; a multi-valued (or weighted) feature needs ``sep``, a single-valued
one takes none; ids and ``oov`` must be below the feature's table size. torchrec keeps no
vocabulary: these are the user's own.
"""

import json
import math
import os
import sys

if __name__ == "__main__" and not __package__:
    # python tools/export/torchrec.py: the self-check, with this file imported as export.torchrec
    # (tools/export itself must not be on sys.path, where this file would shadow torchrec).
    _here = os.path.dirname(os.path.abspath(__file__))
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != _here]
    sys.path.insert(0, os.path.dirname(_here))
    from export.torchrec import self_check as _self_check

    _self_check()
    sys.exit(0)

from . import vocabularies as _vocabularies  # noqa: E402

__all__ = ["export", "describe", "self_check"]

# How the importer (src/interop/torchrec.rs) recognises torchrec's own DeepFM, and why it refuses it.
_TORCHREC_DEEPFM_PREFIXES = ("over_arch.", "inter_arch.", "dense_arch.")
_TORCHREC_DEEPFM_REASON = (
    "its FactorizationMachine sums the products of all pairs of the F x D scalars flattened (across "
    "embedding dimensions, the dense vector included), and its over-arch weighs [dense vector, deep "
    "output, FM term] with a learned layer; a DeepFM model file has neither (build the head as "
    "tools/export/make_fixtures_torchrec.py's TorchrecDeepFM does)")
_FM_REASON = (
    "it sums the products of all pairs of the F x D scalars flattened (across embedding dimensions), "
    "not the per-dimension FM 0.5 * sum_d[(sum_f e_fd)^2 - sum_f e_fd^2] that DeepFM (and the importer) "
    "computes (build the FM term as tools/export/make_fixtures_torchrec.py's TorchrecDeepFM does)")
_DMP_PREFIXES = ("_dmp_wrapped_module.", "module.")
# Keys the exporter computes; extra may replace only "model".
_EXTRA_REPLACEABLE = ("model",)


def _default_multi_valued_text(weighted, pooling):
    if not weighted:
        return "KJT lengths, no padding: the row's ids as a list, pooled over its length"
    how = "sum_i w_i * row_i" if pooling == "sum" else "sum_i w_i * row_i / n (n = the number of ids)"
    return f"KJT lengths and weights, no padding: the row's (id, weight) pairs, {pooling}-pooled as {how}"


# ----------------------------------------------------------------------------------------------
# Modules
# ----------------------------------------------------------------------------------------------

def _classes():
    from torchrec.modules.embedding_modules import (EmbeddingBagCollection, EmbeddingBagCollectionInterface,
                                                    EmbeddingCollectionInterface)
    return EmbeddingBagCollection, EmbeddingBagCollectionInterface, EmbeddingCollectionInterface


def _check_modules(model):
    """Refuse torchrec's DeepFM, its FactorizationMachine, sharded modules and sparse modules other
    than EmbeddingBagCollection; return [(path, ebc)] in named_modules() order."""
    from torch import nn

    EBC, EBCInterface, ECInterface = _classes()
    ebcs, inside = [], []
    for path, m in model.named_modules():
        cls = type(m)
        where = f"module {path or '(the model)'} ({cls.__module__}.{cls.__qualname__})"
        if cls.__module__ == "torchrec.models.deepfm":
            raise ValueError(f"{where}: torchrec's DeepFM (torchrec.models.deepfm) cannot be exported: "
                             + _TORCHREC_DEEPFM_REASON)
        if cls.__module__ == "torchrec.modules.deepfm" and cls.__name__ == "FactorizationMachine":
            raise ValueError(f"{where}: torchrec.modules.deepfm.FactorizationMachine cannot be exported: "
                             + _FM_REASON)
        if cls.__module__.startswith("torchrec.distributed") or cls.__name__ == "DistributedModelParallel":
            raise ValueError(f"{where}: a sharded module; pass the unsharded model with the gathered "
                             "state_dict loaded into it (or as state_dict=)")
        if any(path == p or path.startswith(p + ".") for p in inside):
            continue
        if isinstance(m, EBC):
            ebcs.append((path, m))
            inside.append(path)
        elif isinstance(m, (EBCInterface, ECInterface)) or (cls.__module__.startswith("torchrec.") and (
                "EmbeddingBagCollection" in cls.__name__ or "EmbeddingCollection" in cls.__name__)):
            raise ValueError(f"{where}: only torchrec.EmbeddingBagCollection is supported (an "
                             "EmbeddingCollection's unpooled sequences, feature processors' position "
                             "weights and fused collections cannot be described)")
        elif isinstance(m, (nn.Embedding, nn.EmbeddingBag)):
            raise ValueError(f"{where}: an embedding outside a torchrec EmbeddingBagCollection cannot be "
                             "described")
    if not ebcs:
        raise ValueError("the model has no torchrec.EmbeddingBagCollection")
    return ebcs


def _tables(ebcs, tensors):
    """(embedding tables, first-order tables) as description entries, checked against the tensors."""
    import torch

    tables, first_order = [], []
    for path, ebc in ebcs:
        weighted = bool(ebc.is_weighted())
        for c in ebc.embedding_bag_configs():
            pooling = getattr(c.pooling, "name", str(c.pooling)).lower()
            tensor = f"{path + '.' if path else ''}embedding_bags.{c.name}.weight"
            what = f"table {c.name} of {path or '(the model)'}"
            if pooling not in ("sum", "mean"):
                raise ValueError(f"{what}: pooling {c.pooling} (only SUM and MEAN)")
            if tensor not in tensors:
                raise ValueError(f"{what}: no tensor {tensor} in the state_dict")
            t = tensors[tensor]
            if t.dtype != torch.float32:
                raise ValueError(f"{what}: {t.dtype} weights (the importer reads float32 tables)")
            if tuple(t.shape) != (c.num_embeddings, c.embedding_dim):
                raise ValueError(f"{what}: tensor {tensor} is {list(t.shape)}, its config says "
                                 f"[{c.num_embeddings}, {c.embedding_dim}]")
            entry = {"name": c.name, "num_embeddings": int(c.num_embeddings), "embedding_dim": int(c.embedding_dim),
                     "pooling": pooling, "feature_names": list(c.feature_names), "tensor": tensor}
            if weighted:
                entry["is_weighted"] = True
            (first_order if c.embedding_dim == 1 else tables).append(entry)
    if not tables:
        raise ValueError("every table is 1 wide: the embedding tables (D > 1) and the first-order tables "
                         "(1 wide) cannot be told apart")
    dims = sorted({t["embedding_dim"] for t in tables})
    if len(dims) != 1:
        raise ValueError(f"embedding tables of different widths {dims} "
                         f"({[(t['name'], t['embedding_dim']) for t in tables]}): all must be one D")
    return tables, first_order


def _check_features(tables, first_order, feature_order):
    """Every feature of feature_order has one embedding table and one first-order table, shared
    alike and weighted alike; every table's features are in feature_order."""
    if not isinstance(feature_order, (list, tuple)) or not all(isinstance(f, str) for f in feature_order):
        raise TypeError("feature_order: a list of feature names (the order of concat_f e_f)")
    if len(set(feature_order)) != len(feature_order):
        raise ValueError(f"feature_order has duplicates: {list(feature_order)}")
    for kind, tbs in (("embedding", tables), ("first-order", first_order)):
        for t in tbs:
            missing = [f for f in t["feature_names"] if f not in feature_order]
            if missing:
                raise ValueError(f"{kind} table {t['name']} reads {missing}, not in feature_order "
                                 f"{list(feature_order)} (its tensor would be left unused)")

    def table_of(tbs, feature, kind):
        found = [t for t in tbs if feature in t["feature_names"]]
        if len(found) != 1:
            raise ValueError(f"feature {feature}: {len(found)} {kind} tables read it "
                             f"({[t['name'] for t in found]}); it needs exactly one")
        t = found[0]
        owner = next(f for f in feature_order if f in t["feature_names"])
        return t, owner

    weighted = set()
    for f in feature_order:
        t, owner = table_of(tables, f, "embedding")
        lin, lin_owner = table_of(first_order, f, "first-order (1 wide)")
        if owner != lin_owner or t["num_embeddings"] != lin["num_embeddings"]:
            raise ValueError(f"feature {f}: its embedding table {t['name']} and first-order table {lin['name']} "
                             "are not shared alike (the same features, the same number of rows)")
        if t.get("is_weighted", False) != lin.get("is_weighted", False):
            raise ValueError(f"feature {f}: one of its tables {t['name']} and {lin['name']} is weighted and "
                             "the other is not: a field's ids carry one set of weights")
        if t.get("is_weighted", False):
            weighted.add(f)
    return weighted


def _mlp_steps(module, path):
    """The leaves of an MLP as (kind, path, module): kind "linear", "bn", "relu" or "skip"."""
    import torch
    from torch import nn

    cls = type(module)
    if cls is nn.Sequential:
        for name, child in module.named_children():
            yield from _mlp_steps(child, f"{path}.{name}")
    elif cls.__module__ == "torchrec.modules.mlp" and cls.__name__ == "MLP":
        yield from _mlp_steps(module._mlp, f"{path}._mlp")
    elif cls.__module__ == "torchrec.modules.mlp" and cls.__name__ == "Perceptron":
        yield from _mlp_steps(module._linear, f"{path}._linear")
        act = module._activation_fn
        if isinstance(act, nn.Module):
            yield from _mlp_steps(act, f"{path}._activation_fn")
        elif act in (torch.relu, nn.functional.relu):
            yield ("relu", f"{path}._activation_fn", act)
        else:
            raise ValueError(f"mlp module {path}: activation {getattr(act, '__name__', act)!r} (only relu "
                             "can be expressed)")
    elif cls is nn.Linear:
        if module.bias is None:
            raise ValueError(f"mlp module {path}: a Linear without bias (the importer reads {path}.bias)")
        yield ("linear", path, module)
    elif cls in (nn.BatchNorm1d, nn.SyncBatchNorm):
        if not module.affine or not module.track_running_stats:
            raise ValueError(f"mlp module {path}: batch norm without affine weights or running statistics "
                             f"(affine={module.affine}, track_running_stats={module.track_running_stats})")
        yield ("bn", path, module)
    elif cls is nn.ReLU:
        yield ("relu", path, module)
    elif cls in (nn.Dropout, nn.Identity):
        yield ("skip", path, module)
    else:
        raise ValueError(f"mlp module {path}: {cls.__module__}.{cls.__qualname__} cannot be expressed (per "
                         "hidden layer: Linear -> [BatchNorm1d] -> ReLU; Dropout and Identity are skipped)")


def _mlp_description(model, mlp, output_layer, in_width):
    """(the MLP's description keys, the tensor names it reads, its output width, whether its last
    module is the output layer)."""
    from torch import nn

    steps, dropouts = [], []
    if mlp is not None:
        try:
            module = model.get_submodule(mlp)
        except AttributeError:
            raise ValueError(f"mlp: the model has no submodule {mlp!r} (pass mlp=None for no hidden layers)")
        for step in _mlp_steps(module, mlp):
            if step[0] == "skip":
                if isinstance(step[2], nn.Dropout):
                    dropouts.append(float(step[2].p))
            else:
                steps.append(step)
    layers, used, hidden, norms, eps = [], [], [], [], set()
    width, i, out_in_mlp = in_width, 0, False
    while i < len(steps):
        kind, path, m = steps[i]
        if kind != "linear":
            raise ValueError(f"mlp module {path}: {type(m).__name__ if kind != 'relu' else 'ReLU'} where a Linear "
                             "was expected (per hidden layer: Linear -> [BatchNorm1d] -> ReLU)")
        if m.in_features != width:
            raise ValueError(f"mlp module {path}: Linear({m.in_features}, {m.out_features}) after width {width}"
                             + (" (the MLP input is D x len(feature_order))" if not layers else ""))
        if path == output_layer:
            if i != len(steps) - 1:
                raise ValueError(f"output_layer {path} is followed by {steps[i + 1][1]} in the mlp")
            out_in_mlp = True
            break
        i += 1
        entry = {"linear": path}
        used += [f"{path}.weight", f"{path}.bias"]
        if i < len(steps) and steps[i][0] == "bn":
            _, bn_path, bn = steps[i]
            if bn.num_features != m.out_features:
                raise ValueError(f"mlp module {bn_path}: BatchNorm1d({bn.num_features}) after "
                                 f"Linear(..., {m.out_features})")
            entry["batch_norm"] = bn_path
            eps.add(float(bn.eps))
            used += [f"{bn_path}.{k}" for k in ("weight", "bias", "running_mean", "running_var",
                                                 "num_batches_tracked")]
            i += 1
        if i >= len(steps) or steps[i][0] != "relu":
            after = f"followed by {steps[i][1]}" if i < len(steps) else "the last module of the mlp"
            raise ValueError(f"mlp module {path}: hidden Linear {after}, not by [BatchNorm1d ->] ReLU (pass the "
                             "output Linear as output_layer)")
        entry["activation"] = "relu"
        i += 1
        layers.append(entry)
        norms.append("batch_norm" in entry)
        hidden.append(int(m.out_features))
        width = m.out_features
    if len(eps) > 1:
        raise ValueError(f"batch norm layers with different eps {sorted(eps)}: the description has one bn_eps")
    # "batch_norm": true / false when every hidden layer has / lacks one, else one bool per layer.
    batch_norm = norms if len(set(norms)) > 1 else bool(norms and norms[0])
    desc = {
        "hidden": hidden,
        "activation": "relu" if layers else None,
        "batch_norm": batch_norm,
        "bn_eps": eps.pop() if eps else None,
        "dropout": (dropouts[0] if len(set(dropouts)) == 1 else dropouts) if dropouts else 0.0,
        "mlp_layers": layers,
    }
    return desc, used, width, out_in_mlp


# ----------------------------------------------------------------------------------------------
# Tensors
# ----------------------------------------------------------------------------------------------

def _state_dict(model, state_dict):
    """The state_dict to write: plain full tensors, keys as the unsharded model's."""
    import torch

    own = model.state_dict()
    if state_dict is None:
        sd = dict(own)
    else:
        sd = dict(state_dict)
        if set(sd) != set(own):
            stripped = {}
            for k, v in sd.items():
                while k.startswith(_DMP_PREFIXES):
                    k = k[len(next(p for p in _DMP_PREFIXES if k.startswith(p))):]
                stripped[k] = v
            if set(stripped) == set(own):
                sd = stripped
            else:
                missing, unknown = sorted(set(own) - set(sd)), sorted(set(sd) - set(own))
                raise ValueError(f"state_dict does not match the model's keys: missing {missing[:5]}, "
                                 f"unexpected {unknown[:5]}")
    out = {}
    for k, v in sd.items():
        if not isinstance(v, torch.Tensor) or type(v) not in (torch.Tensor, torch.nn.Parameter):
            raise ValueError(f"tensor {k}: a {type(v).__name__}, not a full tensor (gather a ShardedTensor with "
                             "ShardedTensor.gather(dst=0, out=...), a DTensor with full_tensor())")
        if v.is_meta:
            raise ValueError(f"tensor {k} is on the meta device: pass the gathered state_dict=")
        if state_dict is not None and not own[k].is_meta and own[k].shape != v.shape:
            raise ValueError(f"tensor {k}: {list(v.shape)} in state_dict, {list(own[k].shape)} in the model")
        out[k] = v.detach().cpu()
    # safetensors refuses tensors that share storage: those get their own copy (same values).
    storages = {}
    for k, v in out.items():
        storages.setdefault(v.untyped_storage().data_ptr(), []).append(k)
    shared = {k for ks in storages.values() if len(ks) > 1 for k in ks}
    return {k: (v.clone() if k in shared else v).contiguous() for k, v in out.items()}


def _check_vector(tensors, name, what, shape=None):
    import torch

    if name not in tensors:
        raise ValueError(f"{what}: no tensor {name} in the state_dict")
    t = tensors[name]
    if t.dtype != torch.float32:
        raise ValueError(f"{what}: tensor {name} is {t.dtype}, not float32")
    if shape is not None and tuple(t.shape) != shape:
        raise ValueError(f"{what}: tensor {name} is {list(t.shape)}, expected {list(shape)}")


# ----------------------------------------------------------------------------------------------
# Description
# ----------------------------------------------------------------------------------------------

def _multi_valued(multi_valued, feature_order, weighted, table_pooling):
    if multi_valued is None:
        given = {}
    elif isinstance(multi_valued, dict):
        given = dict(multi_valued)
    elif isinstance(multi_valued, str):
        raise TypeError("multi_valued: a list of feature names or a dict feature -> text, not a string")
    else:
        given = {f: None for f in multi_valued}
    for f, text in given.items():
        if f not in feature_order:
            raise ValueError(f"multi_valued: {f!r} is not in feature_order")
        if text is not None and not isinstance(text, str):
            raise TypeError(f"multi_valued[{f!r}]: a text or None, got {type(text).__name__}")
    order = list(given) + [f for f in feature_order if f in weighted and f not in given]
    return {f: given.get(f) or _default_multi_valued_text(f in weighted, table_pooling[f]) for f in order}


def _vocabularies_description(vocabularies, feature_order, multi, rows):
    out = {}
    for name, v in vocabularies.items():
        what = f"vocabularies[{name!r}]"
        if name not in feature_order:
            raise ValueError(f"{what}: not in feature_order")
        if isinstance(v, dict) and "ids" in v:
            unknown = sorted(set(v) - {"ids", "oov", "sep"})
            if unknown:
                raise ValueError(f"{what}: unknown keys {unknown} (ids, oov, sep)")
            ids, oov, sep = v["ids"], v.get("oov"), v.get("sep")
        elif isinstance(v, dict):
            ids, oov, sep = v, None, None
        else:
            raise TypeError(f"{what}: vocabularies.entry(...) or a dict token -> id, got {type(v).__name__}")
        if name in multi and sep is None:
            raise ValueError(f"{what}: {name} is multi-valued: give the separator of its tokens "
                             "(vocabularies.entry(ids, sep=...))")
        if name not in multi and sep is not None:
            raise ValueError(f"{what}: {name} has one id per row: it takes no sep")
        e = _vocabularies.entry(ids, oov=oov, sep=sep, what=what)
        bad = [(k, i) for k, i in e["ids"].items() if i >= rows[name]]
        if bad or (e["oov"] is not None and e["oov"] >= rows[name]):
            raise ValueError(f"{what}: ids outside 0..{rows[name] - 1} (its table's rows): "
                             f"{bad[:5] or [('(oov)', e['oov'])]}")
        out[name] = e
    return out


def describe(model, *, feature_order, mlp="mlp", output_layer="out", global_bias="bias", output="sigmoid",
             state_dict=None, vocabularies=None, multi_valued=None, extra=None, _tensors=None):
    """description.json's content (see the module docstring). Arguments as :func:`export`."""
    import torch
    import torchrec

    ebcs = _check_modules(model)
    tensors = _tensors if _tensors is not None else _state_dict(model, state_dict)
    names = sorted(tensors)
    for name in names:
        if name.startswith(_TORCHREC_DEEPFM_PREFIXES):
            raise ValueError(f"tensor {name}: the importer takes a model with modules over_arch / inter_arch / "
                             f"dense_arch for torchrec's DeepFM (torchrec.models.deepfm), which it refuses: "
                             + _TORCHREC_DEEPFM_REASON + " (rename the module if it is not that model)")
    tables, first_order = _tables(ebcs, tensors)
    feature_order = list(feature_order) if isinstance(feature_order, tuple) else feature_order
    weighted = _check_features(tables, first_order, feature_order)
    table_of = {f: t for t in tables for f in t["feature_names"]}
    d = tables[0]["embedding_dim"]
    mlp_desc, used, width, out_in_mlp = _mlp_description(model, mlp, output_layer, d * len(feature_order))

    try:
        out = model.get_submodule(output_layer)
    except AttributeError:
        raise ValueError(f"output_layer: the model has no submodule {output_layer!r}")
    if type(out) is not torch.nn.Linear or out.out_features != 1 or out.bias is None:
        raise ValueError(f"output_layer {output_layer}: {out} is not a Linear(..., 1) with bias")
    if out.in_features != width:
        raise ValueError(f"output_layer {output_layer}: Linear({out.in_features}, 1) after width {width}")
    _check_vector(tensors, f"{output_layer}.weight", "output_layer", (1, width))
    _check_vector(tensors, f"{output_layer}.bias", "output_layer", (1,))
    if not isinstance(global_bias, str):
        raise TypeError("global_bias: the state_dict key of the [1] global bias")
    _check_vector(tensors, global_bias, "global_bias", (1,))
    for name in used:
        if name in tensors and name.endswith(("weight", "bias", "running_mean", "running_var")):
            _check_vector(tensors, name, "mlp")
        elif not name.endswith("num_batches_tracked") and name not in tensors:
            raise ValueError(f"mlp: no tensor {name} in the state_dict")
    if output not in ("sigmoid", "linear", None):
        raise ValueError(f"output: {output!r} (sigmoid, linear or None)")

    accounted = set(used) | {t["tensor"] for t in tables + first_order} | {
        f"{output_layer}.weight", f"{output_layer}.bias", global_bias}
    unused = [n for n in names if n not in accounted]
    if unused:
        raise ValueError(f"tensors {unused[:8]} are not part of the DeepFM the description expresses (tables, "
                         "mlp, output_layer, global_bias); the importer refuses unused tensors")

    if out_in_mlp:
        deep = f"{mlp}(concat_f e_f)"
    elif mlp is None or not mlp_desc["mlp_layers"]:
        deep = f"{output_layer}(concat_f e_f)"
    else:
        deep = f"{output_layer}({mlp}(concat_f e_f))"
    cls = type(model)
    desc = {
        "framework": "torchrec",
        "framework_version": torchrec.__version__,
        "torch_version": torch.__version__.split("+")[0],
        "model": f"{cls.__module__}.{cls.__qualname__}",
        "tables": tables,
        "first_order_tables": first_order,
        "feature_order": list(feature_order),
        "multi_valued": _multi_valued(multi_valued, feature_order, weighted,
                                      {f: table_of[f]["pooling"] for f in feature_order}),
        **mlp_desc,
        "output_layer": output_layer,
        "global_bias": global_bias,
        "output": output,
        "logit": f"{global_bias} + sum_f first_order_f + 0.5*sum_d[(sum_f e_fd)^2 - sum_f e_fd^2] + {deep}",
    }
    for key, value in (extra or {}).items():
        if not isinstance(key, str):
            raise TypeError(f"extra: keys are strings, got {key!r}")
        if (key in desc and key not in _EXTRA_REPLACEABLE) or key == "vocabularies":
            raise ValueError(f"extra[{key!r}]: computed by the exporter (only {list(_EXTRA_REPLACEABLE)} may be "
                             "replaced; vocabularies go in vocabularies=)")
        desc[key] = value
    if vocabularies:
        rows = {f: table_of[f]["num_embeddings"] for f in feature_order}
        desc["vocabularies"] = _vocabularies_description(vocabularies, feature_order, desc["multi_valued"], rows)
    json.dumps(desc)  # extra must be JSON
    return desc


def export(model, out_dir, *, feature_order, mlp="mlp", output_layer="out", global_bias="bias", output="sigmoid",
           state_dict=None, vocabularies=None, multi_valued=None, extra=None):
    """Write out_dir/model.safetensors and out_dir/description.json; returns the description.

    model: the unsharded torch module (the gathered state_dict loaded into it), or any instance of
    its class (even on the meta device) with ``state_dict``: the gathered state_dict (full tensors;
    DistributedModelParallel's "_dmp_wrapped_module." / "module." key prefixes are dropped).
    feature_order: the features in the order forward concatenates their pooled embeddings for the
    MLP (every feature of every table, once).
    mlp: the path of the MLP module (None: no hidden layers); output_layer: the path of the
    Linear(last, 1); global_bias: the state_dict key of the [1] global bias.
    output: "sigmoid" (prediction = sigmoid(logit)), "linear" or None (the logit).
    multi_valued: the features with several ids per row (list, or dict feature -> text);
    weighted features are added. vocabularies: {feature: vocabularies.entry(...) or {token: id}}.
    extra: more description keys (e.g. "training"), written after "logit"; "model" replaces the
    default (the model's class).
    Raises ValueError (naming the module or tensor) for whatever the importer cannot express.
    """
    from safetensors.torch import save_file

    tensors = _state_dict(model, state_dict)
    description = describe(model, feature_order=feature_order, mlp=mlp, output_layer=output_layer,
                           global_bias=global_bias, output=output, vocabularies=vocabularies,
                           multi_valued=multi_valued, extra=extra, _tensors=tensors)
    os.makedirs(out_dir, exist_ok=True)
    save_file(tensors, os.path.join(out_dir, "model.safetensors"))
    with open(os.path.join(out_dir, "description.json"), "w", encoding="utf-8") as f:
        _vocabularies.dump_description(description, f)
    return description


# ----------------------------------------------------------------------------------------------
# Self-check
# ----------------------------------------------------------------------------------------------

def self_check(verbose=True):
    """Export small models to a temporary folder, read the files back and check the refusals."""
    import tempfile

    import torch
    from safetensors.torch import load_file
    from torch import nn
    from torchrec.modules.embedding_configs import EmbeddingBagConfig, PoolingType
    from torchrec.modules.embedding_modules import EmbeddingBagCollection
    from torchrec.sparse.jagged_tensor import KeyedJaggedTensor

    order = ["u", "i", "g", "h"]
    D = 4

    def ebc(dim, prefix="", weighted=False):
        spec = [("h", 9, PoolingType.SUM, ["h"])] if weighted else [
            ("u", 5, PoolingType.SUM, ["u"]), ("i", 7, PoolingType.SUM, ["i"]), ("g", 3, PoolingType.MEAN, ["g"])]
        return EmbeddingBagCollection(tables=[EmbeddingBagConfig(name=prefix + n, num_embeddings=m, embedding_dim=dim,
                                                                 feature_names=fs, pooling=p)
                                              for n, m, p, fs in spec], is_weighted=weighted)

    class Tiny(nn.Module):
        def __init__(self, mlp=None, out=True):
            super().__init__()
            self.sparse, self.first_order = ebc(D), ebc(1, "lr_")
            self.wsparse, self.wfirst_order = ebc(D, weighted=True), ebc(1, "lr_", weighted=True)
            self.mlp = mlp if mlp is not None else nn.Sequential(
                nn.Linear(D * 4, 6), nn.BatchNorm1d(6, eps=1e-3), nn.ReLU(), nn.Dropout(0.1),
                nn.Linear(6, 5), nn.ReLU())
            if out:
                self.out = nn.Linear(5, 1)
            self.bias = nn.Parameter(torch.full((1,), 0.25))

    def expect_refusal(fn, *words):
        try:
            fn()
        except (ValueError, TypeError) as e:
            assert all(w in str(e) for w in words), (words, str(e))
            return str(e)
        raise AssertionError(f"not refused (expected {words})")

    with tempfile.TemporaryDirectory() as tmp:
        torch.manual_seed(0)
        model = Tiny()
        with torch.no_grad():
            model.mlp[1].running_mean.uniform_(-0.5, 0.5)
        desc = export(model, tmp, feature_order=order, multi_valued=["g"],
                      vocabularies={"g": _vocabularies.entry({"a": 0, "b": 1, "c": 2}, sep="|")},
                      extra={"model": "tiny", "training": {"steps": 0}})
        with open(os.path.join(tmp, "description.json"), encoding="utf-8") as f:
            assert json.load(f) == desc
        assert list(desc) == ["framework", "framework_version", "torch_version", "model", "tables",
                              "first_order_tables", "feature_order", "multi_valued", "hidden", "activation",
                              "batch_norm", "bn_eps", "dropout", "mlp_layers", "output_layer", "global_bias",
                              "output", "logit", "training", "vocabularies"], list(desc)
        assert [t["tensor"] for t in desc["tables"]] == [
            "sparse.embedding_bags.u.weight", "sparse.embedding_bags.i.weight", "sparse.embedding_bags.g.weight",
            "wsparse.embedding_bags.h.weight"]
        assert [t.get("is_weighted", False) for t in desc["first_order_tables"]] == [False, False, False, True]
        assert desc["tables"][2]["pooling"] == "mean" and desc["model"] == "tiny"
        assert desc["mlp_layers"] == [{"linear": "mlp.0", "batch_norm": "mlp.1", "activation": "relu"},
                                      {"linear": "mlp.4", "activation": "relu"}], desc["mlp_layers"]
        assert desc["hidden"] == [6, 5] and desc["batch_norm"] == [True, False] and desc["bn_eps"] == 1e-3
        assert desc["dropout"] == 0.1 and list(desc["multi_valued"]) == ["g", "h"]
        assert "sum-pooled as sum_i w_i * row_i" in desc["multi_valued"]["h"]
        back = load_file(os.path.join(tmp, "model.safetensors"))
        own = model.state_dict()
        assert set(back) == set(own) and all(torch.equal(back[k], own[k]) for k in own)

        # state_dict= with DMP prefixes, into a model on the meta device.
        with torch.device("meta"):
            meta = Tiny()
        sd = {"_dmp_wrapped_module." + k: v for k, v in own.items()}
        desc2 = export(meta, tmp, feature_order=order, state_dict=sd, multi_valued=["g"],
                       vocabularies={"g": _vocabularies.entry({"a": 0, "b": 1, "c": 2}, sep="|")},
                       extra={"model": "tiny", "training": {"steps": 0}})
        assert desc2 == desc
        back = load_file(os.path.join(tmp, "model.safetensors"))
        assert all(torch.equal(back[k], own[k]) for k in own)

        # torchrec's MLP (torch.relu Perceptrons), the output Linear inside a Sequential, no BN.
        from torchrec.modules.mlp import MLP
        m2 = Tiny(mlp=MLP(D * 4, [6, 5]))
        d2 = describe(m2, feature_order=order, multi_valued=["g"], output="linear")
        assert d2["mlp_layers"][1] == {"linear": "mlp._mlp.1._linear", "activation": "relu"}, d2["mlp_layers"]
        assert d2["batch_norm"] is False and d2["bn_eps"] is None and d2["output"] == "linear"
        m3 = Tiny(mlp=nn.Sequential(nn.Linear(D * 4, 5), nn.ReLU(), nn.Linear(5, 1)), out=False)
        d3 = describe(m3, feature_order=order, output_layer="mlp.2")
        assert d3["hidden"] == [5] and d3["logit"].endswith("+ mlp(concat_f e_f)"), d3["logit"]
        m4 = Tiny(mlp=nn.Identity())
        del m4.out
        m4.out = nn.Linear(D * 4, 1)
        d4 = describe(m4, feature_order=order, mlp=None)
        assert d4["mlp_layers"] == [] and d4["activation"] is None

        # Refusals.
        expect_refusal(lambda: describe(Tiny(mlp=nn.Sequential(nn.Linear(16, 5), nn.Sigmoid())), feature_order=order),
                       "mlp.1", "Sigmoid")
        expect_refusal(lambda: describe(Tiny(mlp=MLP(16, [6, 5], activation="sigmoid")), feature_order=order),
                       "mlp._mlp.0", "sigmoid")
        expect_refusal(lambda: describe(Tiny(mlp=nn.Sequential(nn.Linear(16, 5), nn.ReLU(), nn.BatchNorm1d(5))),
                                        feature_order=order), "mlp.2", "where a Linear was expected")
        expect_refusal(lambda: describe(Tiny(mlp=nn.Sequential(nn.Linear(16, 5, bias=False), nn.ReLU())),
                                        feature_order=order), "mlp.0", "without bias")
        expect_refusal(lambda: describe(Tiny(mlp=nn.Sequential(nn.Linear(12, 5), nn.ReLU())), feature_order=order),
                       "mlp.0", "width 16")
        expect_refusal(lambda: describe(Tiny(), feature_order=order[:3]), "h", "not in feature_order")
        m5 = Tiny()
        m5.extra = nn.Linear(2, 2)
        expect_refusal(lambda: describe(m5, feature_order=order), "extra.weight", "unused")
        m6 = Tiny()
        m6.fm = __import__("torchrec.modules.deepfm", fromlist=["FactorizationMachine"]).FactorizationMachine()
        expect_refusal(lambda: describe(m6, feature_order=order), "module fm", "FactorizationMachine",
                       "F x D scalars flattened")
        from torchrec.models.deepfm import SimpleDeepFMNN
        simple = SimpleDeepFMNN(num_dense_features=2, embedding_bag_collection=ebc(D), hidden_layer_size=8,
                                deep_fm_dimension=4)
        expect_refusal(lambda: describe(simple, feature_order=["u", "i", "g"]), "torchrec.models.deepfm",
                       "F x D scalars flattened")
        from torchrec.modules.embedding_configs import EmbeddingConfig
        from torchrec.modules.embedding_modules import EmbeddingCollection
        m7 = Tiny()
        m7.seq = EmbeddingCollection(tables=[EmbeddingConfig(name="s", num_embeddings=3, embedding_dim=D,
                                                             feature_names=["s"])])
        expect_refusal(lambda: describe(m7, feature_order=order), "module seq", "EmbeddingCollection")
        expect_refusal(lambda: describe(Tiny(), feature_order=order, extra={"tables": []}), "extra['tables']")
        expect_refusal(lambda: describe(Tiny(), feature_order=order, multi_valued=["g"], vocabularies={"g": {"a": 0}}),
                       "multi-valued", "sep")
        expect_refusal(lambda: describe(Tiny(), feature_order=order, vocabularies={"u": {"a": 5}}), "outside 0..4")
        expect_refusal(lambda: describe(Tiny(), feature_order=order, output="softmax"), "softmax")

        # The pooled KJT path the description promises, on the first model (eval mode).
        model.eval()
        kjt = KeyedJaggedTensor.from_lengths_sync(keys=["u", "i", "g"], values=torch.tensor([1, 2, 0, 2, 1]),
                                                  lengths=torch.tensor([1, 1, 3], dtype=torch.int32))
        wkjt = KeyedJaggedTensor.from_lengths_sync(keys=["h"], values=torch.tensor([3, 4]),
                                                   lengths=torch.tensor([2], dtype=torch.int32),
                                                   weights=torch.tensor([0.5, -1.0]))
        with torch.no_grad():
            e = {**model.sparse(kjt).to_dict(), **model.wsparse(wkjt).to_dict()}
            t = {k: v for k, v in back.items()}
            want_h = 0.5 * t["wsparse.embedding_bags.h.weight"][3] - t["wsparse.embedding_bags.h.weight"][4]
            assert torch.allclose(e["h"][0], want_h)
            want_g = t["sparse.embedding_bags.g.weight"][[0, 2, 1]].mean(0)
            assert torch.allclose(e["g"][0], want_g)
            assert math.isclose(float(t["bias"]), 0.25)
    if verbose:
        print("export.torchrec self-check: ok")

