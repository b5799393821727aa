"""The ``"vocabularies"`` key of an exported ``description.json``, and the fixtures' ``raw.tsv``.

Standard library only: the exporters import this as ``export.vocabularies`` (``from . import
vocabularies``), the check scripts as ``vocabularies`` (their own folder is on ``sys.path``).

Schema (optional top-level key of every exporter's description.json)::

    "vocabularies": {
      "<feature name>": {
        "ids": {"<raw token, as a string>": <id>, ...},
        "oov": <id> | null,
        "sep": "<separator>"      # only for a multi-valued feature (VarLenSparseFeat, sequence)
      },
      ...
    }

* Only features whose ids come from a token vocabulary have an entry; dense / numeric features and
  features whose ids are used as they are (e.g. MovieLens user ids fed as ids) have none.
* ``ids``: every token the framework knows, as ``str(token)`` (an int-keyed vocabulary's tokens are
  their decimal text), each with the row it selects in the feature's embedding tables. Distinct
  tokens may share an id; no two tokens print the same.
* ``oov``: the id the framework gives a token that is not in ``ids``; ``null`` when the framework
  has no such id (an unknown token is then an error, not a guess).
* ``sep``: how the tokens of one raw value of a multi-valued feature are separated (the framework's
  own splitter where it has one). Empty tokens between separators are dropped (they are padding).

In description.json each ``ids`` object is written compactly on one line (``{"a":0,"b":1}``);
everything else keeps ``json.dump(..., indent=2)``'s layout.

``raw.tsv`` (interop fixtures): the first rows of ``batch.json`` in raw form. A header line with the
feature names (tab-separated, in the description's feature order), then one line per row: a feature
with a vocabulary holds its raw token (a multi-valued one its tokens joined by its ``sep``, padding
dropped); a feature with a ``"numeric"`` entry holds its raw number (empty for a missing value);
every other feature holds its value as in ``batch.json`` (an id as an integer, a number in the same
text, a list of ids without a vocabulary as comma-separated ids, padding included). A weighted
feature (torchrec: read by tables with ``"is_weighted": true``; batch.json has a list of
``[id, weight]`` pairs per row) holds ``id:weight,id:weight`` (ids as integers, each weight as text
that parses to the same float32; an empty cell for an empty list).
:func:`check_raw_tsv` maps raw.tsv back through the vocabularies and numeric entries and compares
with batch.json.

``"numeric"`` (optional top-level key, next to ``"vocabularies"``): how the framework's preprocessing
turned a raw number into a numeric / dense feature's value, so that raw numbers can be given::

    "numeric": {
      "<feature name>": {
        "fill_na": <number>,      # optional: the value of an empty cell (without it: an error)
        "log1p": <bool>,          # optional, default false: v -> ln(1 + max(v, 0))
        "scale": <number>,        # optional, default 1
        "shift": <number>         # optional, default 0
      },
      ...
    }

applied in this order: an empty cell takes ``fill_na``, then ``ln(1 + max(v, 0))`` if ``log1p``,
then ``v * scale + shift``, all in float64 (no fused multiply-add), rounded to float32 once at the
end (:func:`apply_numeric`). Only features whose raw value the preprocessing transforms have an
entry; no other keys. :func:`numeric_entry` builds and checks one entry.
"""

import json
import math
import os
import struct

__all__ = ["entry", "numeric_entry", "check_numeric", "apply_numeric", "f32", "f32_ulps",
           "dump_description", "write_raw_tsv", "check_raw_tsv", "RAW_ROWS", "NUMERIC_KEYS"]

NUMERIC_KEYS = ("fill_na", "log1p", "scale", "shift")

RAW_ROWS = 50


def entry(ids, oov=None, sep=None, what="vocabulary"):
    """One feature's vocabulary as written: {"ids": {str: int}, "oov": int | None[, "sep": str]}.

    ``ids`` is a mapping token -> id (tokens are written as ``str(token)``). Refuses tokens that
    print alike, negative or non-integer ids, an empty ``sep`` and a token that contains ``sep``
    (splitting a raw value could never give it back).
    """
    out = {}
    for raw, idx in ids.items():
        key = str(raw)
        if key in out:
            raise ValueError(f"{what}: two tokens print as {key!r}")
        if isinstance(idx, bool) or int(idx) != idx or int(idx) < 0:
            raise ValueError(f"{what}: token {key!r} has id {idx!r}, not a non-negative integer")
        if sep is not None and sep != "" and sep in key:
            raise ValueError(f"{what}: token {key!r} contains the separator {sep!r}")
        out[key] = int(idx)
    if oov is not None and (isinstance(oov, bool) or int(oov) != oov or int(oov) < 0):
        raise ValueError(f"{what}: oov {oov!r} is not a non-negative integer")
    e = {"ids": out, "oov": None if oov is None else int(oov)}
    if sep is not None:
        if not isinstance(sep, str) or sep == "":
            raise ValueError(f"{what}: sep must be a non-empty string, got {sep!r}")
        e["sep"] = sep
    return e


def _finite_number(x, what):
    if isinstance(x, bool) or not isinstance(x, (int, float)) or not math.isfinite(x):
        raise ValueError(f"{what}: {x!r} is not a finite number")
    return x


def numeric_entry(fill_na=None, log1p=False, scale=None, shift=None, what="numeric"):
    """One feature's "numeric" entry, only the keys given (None / log1p False: left out, i.e. the
    defaults: no fill, no log1p, scale 1, shift 0). Numbers must be finite ints or floats (numpy
    scalars are converted); ``log1p`` a bool. Refuses an entry that does nothing."""
    e = {}
    if fill_na is not None:
        e["fill_na"] = _finite_number(_py(fill_na), f"{what}: fill_na")
    if not isinstance(_py(log1p), bool):
        raise ValueError(f"{what}: log1p {log1p!r} is not a bool")
    if _py(log1p):
        e["log1p"] = True
    if scale is not None:
        e["scale"] = _finite_number(_py(scale), f"{what}: scale")
    if shift is not None:
        e["shift"] = _finite_number(_py(shift), f"{what}: shift")
    if not e:
        raise ValueError(f"{what}: an entry without fill_na, log1p, scale or shift (leave the feature out)")
    return e


def _py(x):
    return x.item() if hasattr(x, "item") else x  # numpy scalars -> Python bool / int / float


def check_numeric(numeric, features=None, what="numeric"):
    """Check a "numeric" dict {feature: entry} (keys only ``NUMERIC_KEYS``, finite numbers, log1p a
    bool) and return it as written: the same keys and values, numpy scalars as Python numbers.
    ``features``: the names allowed (the numeric / dense features of the model), if given."""
    if not isinstance(numeric, dict):
        raise TypeError(f"{what}: expected a dict feature -> entry, got {type(numeric).__name__}")
    out = {}
    for name, e in numeric.items():
        where = f"{what}[{name!r}]"
        if not isinstance(name, str):
            raise ValueError(f"{where}: feature names are strings")
        if features is not None and name not in features:
            raise ValueError(f"{where}: not a numeric / dense feature of the model "
                             f"(those are {sorted(features)})")
        if not isinstance(e, dict):
            raise TypeError(f"{where}: expected a dict with keys among {NUMERIC_KEYS}, got {type(e).__name__}")
        unknown = [k for k in e if k not in NUMERIC_KEYS]
        if unknown:
            raise ValueError(f"{where}: unknown keys {unknown} (allowed: {list(NUMERIC_KEYS)})")
        if not e:
            raise ValueError(f"{where}: an empty entry (leave the feature out)")
        checked = {}
        for k, v in e.items():
            v = _py(v)
            if k == "log1p":
                if not isinstance(v, bool):
                    raise ValueError(f"{where}: log1p {v!r} is not a bool")
            else:
                _finite_number(v, f"{where}: {k}")
            checked[k] = v
        out[name] = checked
    return out


def f32(x):
    """float64 x rounded to the nearest float32 (ties to even), as a Python float."""
    return struct.unpack("<f", struct.pack("<f", x))[0]


def f32_ulps(a, b):
    """How many float32 steps apart two float32 values are (0 for equal values, +0 and -0 alike)."""
    def key(x):
        (i,) = struct.unpack("<i", struct.pack("<f", x))
        return i if i >= 0 else -(i & 0x7FFFFFFF)
    return abs(key(a) - key(b))


def apply_numeric(e, cell, where="numeric"):
    """The float32 value (a Python float) of a raw cell under a "numeric" entry: an empty cell takes
    fill_na (an error without it), then ln(1 + max(v, 0)) if log1p, then v * scale + shift, in
    float64, rounded to float32 once."""
    if cell == "":
        if "fill_na" not in e:
            raise AssertionError(f"{where}: an empty cell and no fill_na")
        v = float(e["fill_na"])
    else:
        v = float(cell)
    if e.get("log1p", False):
        v = math.log1p(max(v, 0.0))
    v = v * float(e.get("scale", 1.0)) + float(e.get("shift", 0.0))
    if not math.isfinite(v):
        raise AssertionError(f"{where}: {cell!r} gives {v!r}")
    return f32(v)


def dump_description(description, f):
    """json.dump(description, f, indent=2) + newline, with each vocabulary's "ids" on one line."""
    vocabs = description.get("vocabularies")
    if not vocabs:
        json.dump(description, f, indent=2)
        f.write("\n")
        return
    placeholders, shown = {}, {}
    for i, (name, v) in enumerate(vocabs.items()):
        mark = f"@@vocabulary-ids-{i}@@"
        placeholders[json.dumps(mark)] = json.dumps(v["ids"], separators=(",", ":"))
        shown[name] = {**v, "ids": mark}
    text = json.dumps({**description, "vocabularies": shown}, indent=2)
    for mark, ids_text in placeholders.items():
        assert text.count(mark) == 1, mark
        text = text.replace(mark, ids_text)
    assert json.loads(text) == json.loads(json.dumps(description))
    f.write(text)
    f.write("\n")


def write_raw_tsv(out_dir, header, rows):
    """Write out_dir/raw.tsv: the header names and rows of already formatted cells."""
    lines = ["\t".join(header)]
    for cells in rows:
        assert len(cells) == len(header), (len(cells), len(header))
        for c in cells:  # deepfm trims cells and splits on tabs: such a value cannot be read back
            assert not any(ch in c for ch in "\t\r\n") and c == c.strip(), repr(c)
        lines.append("\t".join(cells))
    with open(os.path.join(out_dir, "raw.tsv"), "w", encoding="utf-8", newline="\n") as f:
        f.write("\n".join(lines) + "\n")


def _feature_order(desc):
    fw = desc.get("framework")
    if fw == "deepctr-torch":
        names = []
        for fc in desc["dnn_feature_columns"] + desc["linear_feature_columns"]:
            n = fc["sparsefeat"]["name"] if fc["type"] == "VarLenSparseFeat" else fc["name"]
            if n not in names:
                names.append(n)
        return names
    if fw == "corerec":
        return list(desc["field_names"])
    if fw == "recbole":
        return [f["name"] for f in desc["fields"]]
    if fw == "torchrec":
        return list(desc["feature_order"])
    if fw == "fuxictr":
        return [n for e in desc["feature_map"]["features"] for n, s in e.items() if s["type"] != "meta"]
    raise ValueError(f"unknown framework {fw!r}")


def _weighted_features(desc):
    """The features whose rows are [id, weight] pairs: torchrec tables with "is_weighted" (or a
    top-level "is_weighted": true for every table)."""
    if desc.get("framework") != "torchrec":
        return set()
    everything = desc.get("is_weighted", False)
    return {f for tb in desc.get("tables", []) + desc.get("first_order_tables", [])
            if everything or tb.get("is_weighted", False) for f in tb["feature_names"]}


def _map_token(vocab, token, where):
    idx = vocab["ids"].get(token, vocab["oov"])
    if idx is None:
        raise AssertionError(f"{where}: token {token!r} is not in the vocabulary (no oov id)")
    return idx


def check_raw_tsv(fixture_dir, rows=RAW_ROWS, max_ulps=0):
    """Map raw.tsv through description.json's vocabularies and numeric entries and compare with
    batch.json.

    A feature with a "numeric" entry: the raw cell through :func:`apply_numeric` must be within
    ``max_ulps`` float32 steps of batch.json's value parsed as float32 (0: equal). Returns (rows
    checked, {feature: number of tokens mapped to oov}, {numeric feature: max float32 steps from
    batch.json's value}); raises AssertionError on the first difference.
    """
    with open(os.path.join(fixture_dir, "description.json"), encoding="utf-8") as f:
        desc = json.load(f)
    with open(os.path.join(fixture_dir, "batch.json"), encoding="utf-8") as f:
        batch = json.load(f)
    vocabs = desc.get("vocabularies", {})
    numeric = check_numeric(desc.get("numeric", {}))
    with open(os.path.join(fixture_dir, "raw.tsv"), encoding="utf-8", newline="") as f:
        lines = f.read().split("\n")
    assert lines[-1] == "", "raw.tsv must end with a newline"
    lines = lines[:-1]
    header = lines[0].split("\t")
    order = _feature_order(desc)
    assert header == order, f"raw.tsv header {header} is not the description's feature order {order}"
    assert list(batch["features"]) == order, "batch.json's features are not in the description's order"
    for name in vocabs:
        assert name in order, f"vocabulary for unknown feature {name!r}"
    for name in numeric:
        assert name in order, f"numeric entry for unknown feature {name!r}"
        assert name not in vocabs, f"{name!r} has both a vocabulary and a numeric entry"
    body = lines[1:]
    assert len(body) == min(rows, batch["rows"]), f"raw.tsv has {len(body)} rows, expected {rows}"
    oov_hits = {name: 0 for name in vocabs}
    ulps = {name: 0 for name in numeric}
    weighted = _weighted_features(desc)
    for name in weighted:
        assert name not in vocabs and name not in numeric, \
            f"weighted feature {name!r} with a vocabulary / numeric entry"
    for r, line in enumerate(body):
        cells = line.split("\t")
        assert len(cells) == len(header), f"raw.tsv line {r + 2}: {len(cells)} cells"
        for name, cell in zip(header, cells):
            want = batch["features"][name][r]
            where = f"raw.tsv line {r + 2}, {name}"
            if name in numeric:
                assert isinstance(want, (int, float)) and not isinstance(want, bool), \
                    f"{where}: a numeric entry for a feature whose batch values are not numbers"
                got = apply_numeric(numeric[name], cell, where)
                steps = f32_ulps(got, f32(float(want)))
                ulps[name] = max(ulps[name], steps)
                assert steps <= max_ulps, (f"{where}: {cell!r} gives {got!r}, batch has {want!r} "
                                           f"({steps} float32 steps apart, at most {max_ulps} allowed)")
                continue
            if name in weighted:  # id:weight,id:weight (no vocabulary: comma-separated), each weight text the float32 itself
                got = []
                for term in cell.split(",") if cell else []:
                    i_text, sep, w_text = term.partition(":")
                    assert sep, f"{where}: {term!r} is not id:weight"
                    got.append([int(i_text), float(w_text)])
                    assert f32(got[-1][1]) == got[-1][1], f"{where}: weight {w_text!r} is not a float32's value"
                assert got == want, f"{where}: {cell!r} != batch {want!r}"
                continue
            v = vocabs.get(name)
            if v is None:
                if isinstance(want, list):
                    got = [int(t) for t in cell.split(",")] if cell else []
                elif isinstance(want, int):
                    got = int(cell)
                else:
                    got = float(cell)  # the same decimal text parses to the same value
                assert got == want, f"{where}: {cell!r} != batch {want!r}"
                continue
            if "sep" in v:
                assert isinstance(want, list), f"{where}: a sep for a single-valued feature"
                tokens = [t for t in cell.split(v["sep"]) if t != ""]
                got = [_map_token(v, t, where) for t in tokens]
                oov_hits[name] += sum(t not in v["ids"] for t in tokens)
                assert len(got) <= len(want), f"{where}: {len(got)} tokens, max_len {len(want)}"
                got += [0] * (len(want) - len(got))  # post-padding with 0
            else:
                assert not isinstance(want, list), f"{where}: a multi-valued feature without sep"
                got = _map_token(v, cell, where)
                oov_hits[name] += cell not in v["ids"]
            assert got == want, f"{where}: {cell!r} maps to {got!r}, batch has {want!r}"
    return len(body), oov_hits, ulps
