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
dropped); every other feature holds its value as in ``batch.json`` (an id as an integer, a number in
the same text, a list of ids without a vocabulary as comma-separated ids, padding included).
:func:`check_raw_tsv` maps raw.tsv back through the vocabularies and compares with batch.json.
"""

import json
import os

__all__ = ["entry", "dump_description", "write_raw_tsv", "check_raw_tsv", "RAW_ROWS"]

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
    if fw == "fuxictr":
        return [n for e in desc["feature_map"]["features"] for n, s in e.items() if s["type"] != "meta"]
    raise ValueError(f"unknown framework {fw!r}")


def _map_token(vocab, token, where):
    idx = vocab["ids"].get(token, vocab["oov"])
    if idx is None:
        raise AssertionError(f"{where}: token {token!r} is not in the vocabulary (no oov id)")
    return idx


def check_raw_tsv(fixture_dir, rows=RAW_ROWS):
    """Map raw.tsv through description.json's vocabularies and compare with batch.json.

    Returns (rows checked, {feature: number of tokens mapped to oov}); raises AssertionError on the
    first difference.
    """
    with open(os.path.join(fixture_dir, "description.json"), encoding="utf-8") as f:
        desc = json.load(f)
    with open(os.path.join(fixture_dir, "batch.json"), encoding="utf-8") as f:
        batch = json.load(f)
    vocabs = desc.get("vocabularies", {})
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
    body = lines[1:]
    assert len(body) == min(rows, batch["rows"]), f"raw.tsv has {len(body)} rows, expected {rows}"
    oov_hits = {name: 0 for name in vocabs}
    for r, line in enumerate(body):
        cells = line.split("\t")
        assert len(cells) == len(header), f"raw.tsv line {r + 2}: {len(cells)} cells"
        for name, cell in zip(header, cells):
            want = batch["features"][name][r]
            where = f"raw.tsv line {r + 2}, {name}"
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
    return len(body), oov_hits
