#!/usr/bin/env python3
"""Side-by-side comparison of the `deepfm` scorer with numpy and ONNX Runtime.

The same random model is scored five ways:
  * `deepfm` (our CLI: `random`, `export`, `score`, `bench`),
  * numpy, a vectorised float32 forward pass like a Python serving stack would use
    (and the same code in float64 as the reference every score is checked against),
  * ONNX Runtime, on an ONNX graph built here from the exported safetensors + spec,
  * and, unless --no-int8, with the MLP in int8: ORT on that graph with its MLP MatMuls
    quantized by `onnxruntime.quantization.quantize_dynamic` (QInt8 weights, u8 activations
    quantized per tensor at run time), and `deepfm` on a copy made by `deepfm quantize --mlp int8`.

First every shape is checked for agreement (max |a - b| / max(|b|, 1) <= 1e-5 against
numpy-f64; the int8 peers only report their max |a - b|, with no threshold); then, unless
--check-only, throughput is measured for each batch size and thread count, the peers
interleaved so that they see the same machine state.
See README.md beside this file for setup.
"""
import argparse
import copy
import json
import logging
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from safetensors.numpy import load_file, save_file

REPO = Path(__file__).resolve().parents[2]
SHAPES = ("criteo-like", "movielens-like", "mixed-small")
TOLERANCE = 1e-5


# ----------------------------------------------------------------------------- the model
class Model:
    """Spec + tensors, with the field groups both peers need."""

    def __init__(self, spec, tensors):
        self.spec, fields = spec, spec["fields"]
        self.F, self.D = len(fields), spec["embedding_dim"]
        rows = [1 if f["kind"] == "numeric" else f["vocab"] for f in fields]
        self.offsets = np.concatenate([[0], np.cumsum(rows)[:-1]]).astype(np.int64)
        self.cat = [i for i, f in enumerate(fields) if f["kind"] == "categorical"]
        self.num = [i for i, f in enumerate(fields) if f["kind"] == "numeric"]
        self.mh = [i for i, f in enumerate(fields) if f["kind"] == "multi_hot"]
        self.num_rows = self.offsets[self.num]  # a numeric field owns one row
        self.E, self.lin, self.bias = tensors["embedding"], tensors["linear"], tensors["bias"]
        assert self.E.shape == (sum(rows), self.D) and self.lin.shape == (sum(rows),)
        self.layers = [(tensors[f"mlp.{i}.weight"], tensors[f"mlp.{i}.bias"])
                       for i in range(len(spec["hidden"]))]
        self.layers.append((tensors["out.weight"], tensors["out.bias"]))
        # float64 copies of the (small) dense weights for the reference pass; the table is
        # gathered in f32 (exact) and widened after, so it is never copied whole.
        self.layers64 = [(w.astype(np.float64), b.astype(np.float64)) for w, b in self.layers]

    def tensors(self):
        """The export layout again (for `deepfm import` of a modified copy)."""
        t = {"embedding": self.E, "linear": self.lin, "bias": self.bias}
        for i, (w, b) in enumerate(self.layers):
            name = f"mlp.{i}" if i < len(self.layers) - 1 else "out"
            t[f"{name}.weight"], t[f"{name}.bias"] = w, b
        return t


def random_feeds(m, rows, rng):
    """A random batch as model inputs: GLOBAL row ids (offset + local id), like a deployment
    that resolves ids once. Numeric values uniform in [0, 3), multi-hot lists of 0-5 ids
    (padded with the field's first row and masked out), as `deepfm bench` draws them."""
    fields, feeds = m.spec["fields"], {}
    if m.cat:
        vocab = np.array([fields[f]["vocab"] for f in m.cat])
        feeds["cat_ids"] = rng.integers(0, vocab, size=(rows, len(m.cat))) + m.offsets[m.cat]
    if m.num:
        feeds["num_vals"] = rng.random((rows, len(m.num)), dtype=np.float32) * np.float32(3)
    for k, f in enumerate(m.mh):
        lengths = rng.integers(0, 6, size=rows)
        width = max(1, int(lengths.max()))  # ORT dislikes zero-sized dims
        mask = np.arange(width)[None, :] < lengths[:, None]
        ids = rng.integers(0, fields[f]["vocab"], size=(rows, width))
        feeds[f"mh_ids_{k}"] = np.where(mask, ids, 0) + m.offsets[f]
        feeds[f"mh_mask_{k}"] = mask.astype(np.float32)
    return feeds


def feeds_to_tsv(m, feeds, path):
    """The same batch as `deepfm score` input: one column per field in spec order, local ids."""
    rows = len(next(iter(feeds.values())))
    cols = [None] * m.F
    for j, f in enumerate(m.cat):
        cols[f] = (feeds["cat_ids"][:, j] - m.offsets[f]).tolist()
    for j, f in enumerate(m.num):
        cols[f] = feeds["num_vals"][:, j].tolist()  # repr of the f32 value round-trips
    for k, f in enumerate(m.mh):
        ids, mask = feeds[f"mh_ids_{k}"] - m.offsets[f], feeds[f"mh_mask_{k}"] > 0
        cols[f] = [",".join(map(str, ids[r][mask[r]].tolist())) for r in range(rows)]
    with open(path, "w") as out:
        for r in range(rows):
            out.write("\t".join(str(c[r]) for c in cols) + "\n")


# ----------------------------------------------------------------------------- numpy peer
def numpy_scores(m, feeds, dtype=np.float32):
    """The forward pass, vectorised over the batch. Written straight from the spec (x in field
    order, unpermuted weights) so that it does not share the ONNX builder's layout tricks."""
    layers = m.layers if dtype == np.float32 else m.layers64
    rows = len(next(iter(feeds.values())))
    x = np.empty((rows, m.F, m.D), dtype)
    first = np.full(rows, m.bias[0], dtype)
    if m.cat:
        ids = feeds["cat_ids"]
        x[:, m.cat] = m.E[ids]
        first += m.lin[ids].sum(1, dtype=dtype)
    if m.num:
        v = feeds["num_vals"].astype(dtype)
        x[:, m.num] = v[:, :, None] * m.E[m.num_rows].astype(dtype)
        first += v @ m.lin[m.num_rows].astype(dtype)
    for k, f in enumerate(m.mh):
        ids, w = feeds[f"mh_ids_{k}"], feeds[f"mh_mask_{k}"].astype(dtype)
        if m.spec["fields"][f]["pooling"] == "mean":
            w = w / np.maximum(w.sum(1, keepdims=True), 1)
        x[:, f] = (m.E[ids] * w[:, :, None]).sum(1)
        first += (m.lin[ids] * w).sum(1)
    s = x.sum(1)
    fm = 0.5 * (s * s - (x * x).sum(1)).sum(1)
    h = x.reshape(rows, m.F * m.D)
    for i, (w, b) in enumerate(layers):
        h = h @ w.T + b  # BLAS reads the transposed [out, in] weight without a copy
        if i < len(layers) - 1:
            np.maximum(h, 0, out=h)
    logit = first + fm + h[:, 0]
    if m.spec["output"] == "sigmoid":
        with np.errstate(over="ignore"):
            return 1 / (1 + np.exp(-logit))
    if m.spec.get("clamp"):
        return np.clip(logit, *m.spec["clamp"])
    return logit


# ----------------------------------------------------------------------------- ONNX peer
def build_onnx(m, path, matmul=False):
    """The same network as an ONNX graph. Embeddings are concatenated by group (categorical,
    numeric, then each multi-hot field) rather than in spec order; the first layer's weight
    columns are permuted to match, an export-time change that costs nothing at run time.
    `matmul`: each layer as MatMul + Add (named mlp_i) instead of Gemm, the form that
    `quantize_dynamic` quantizes (it leaves Gemm alone)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    nodes, inits, inputs = [], [], []

    def const(name, arr):
        inits.append(numpy_helper.from_array(np.asarray(arr), name))
        return name

    def op(kind, *ins, **attrs):
        out = f"{kind.lower()}_{len(nodes)}"
        nodes.append(helper.make_node(kind, list(ins), [out], name=out, **attrs))
        return out

    def feed(name, elem, width):
        inputs.append(helper.make_tensor_value_info(name, elem, ["B", width]))
        return name

    E, lin = const("embedding", m.E), const("linear", m.lin)
    ax1 = const("axis1", np.array([1], np.int64))
    ax2 = const("axis2", np.array([2], np.int64)) if m.num or m.mh else None
    parts, firsts, order = [], [], []
    if m.cat:
        ids = feed("cat_ids", TensorProto.INT64, len(m.cat))
        parts.append(op("Gather", E, ids, axis=0))  # [B, nc, D]
        firsts.append(op("ReduceSum", op("Gather", lin, ids, axis=0), ax1, keepdims=1))
        order += m.cat
    if m.num:
        v = feed("num_vals", TensorProto.FLOAT, len(m.num))
        rows = const("num_rows", m.E[m.num_rows])  # [nn, D]: each numeric field's one row
        parts.append(op("Mul", op("Unsqueeze", v, ax2), rows))  # [B, nn, 1] * [nn, D]
        firsts.append(op("MatMul", v, const("num_linear", m.lin[m.num_rows][:, None])))
        order += m.num
    for k, f in enumerate(m.mh):
        ids = feed(f"mh_ids_{k}", TensorProto.INT64, f"L{k}")
        w = feed(f"mh_mask_{k}", TensorProto.FLOAT, f"L{k}")
        if m.spec["fields"][f]["pooling"] == "mean":
            count = op("Max", op("ReduceSum", w, ax1, keepdims=1), const(f"one{k}", np.float32(1)))
            w = op("Div", w, count)
        pooled = op("Mul", op("Gather", E, ids, axis=0), op("Unsqueeze", w, ax2))
        parts.append(op("ReduceSum", pooled, ax1, keepdims=1))  # [B, 1, D]
        firsts.append(op("ReduceSum", op("Mul", op("Gather", lin, ids, axis=0), w), ax1, keepdims=1))
        order.append(f)
    emb = op("Concat", *parts, axis=1) if len(parts) > 1 else parts[0]  # [B, F, D]
    s = op("ReduceSum", emb, ax1, keepdims=0)
    squares = op("ReduceSum", op("Mul", emb, emb), ax1, keepdims=0)
    fm = op("Mul", op("ReduceSum", op("Sub", op("Mul", s, s), squares), ax1, keepdims=1),
            const("half", np.float32(0.5)))
    h = op("Reshape", emb, const("flat", np.array([-1, m.F * m.D], np.int64)))
    for i, (w, b) in enumerate(m.layers):
        if i == 0:
            w = w.reshape(len(w), m.F, m.D)[:, order].reshape(len(w), m.F * m.D)
        if matmul:
            h = op("MatMul", h, const(f"w{i}", np.ascontiguousarray(w.T)))
            nodes[-1].name = f"mlp_{i}"
            h = op("Add", h, const(f"b{i}", b))
        else:
            h = op("Gemm", h, const(f"w{i}", np.ascontiguousarray(w)), const(f"b{i}", b), transB=1)
        if i < len(m.layers) - 1:
            h = op("Relu", h)
    logit = op("Sum", *firsts, fm, h, const("bias", m.bias))  # [B, 1]
    if m.spec["output"] == "sigmoid":
        out = op("Sigmoid", logit)
    elif m.spec.get("clamp"):
        lo, hi = m.spec["clamp"]
        out = op("Clip", logit, const("lo", np.float32(lo)), const("hi", np.float32(hi)))
    else:
        out = op("Identity", logit)
    nodes[-1].output[0] = "score"
    graph = helper.make_graph(nodes, "deepfm", inputs,
                              [helper.make_tensor_value_info("score", TensorProto.FLOAT, ["B", 1])],
                              inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8  # what opset 17 shipped with; any ORT of the last years loads it
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def quantize_onnx(m, path):
    """The int8 ORT peer: the MatMul form of the graph with its MLP layers (only those, like
    `deepfm quantize --mlp int8`) dynamically quantized: s8 weights (per tensor), u8 activations
    quantized per tensor at run time, as `quantize_dynamic` does by default."""
    from onnxruntime.quantization import QuantType, quantize_dynamic
    f32 = build_onnx(m, path.with_name(path.stem + "-matmul.onnx"), matmul=True)
    logging.disable(logging.WARNING)  # "consider pre-processing": shape inference, not needed here
    try:
        quantize_dynamic(str(f32), str(path), weight_type=QuantType.QInt8,
                         nodes_to_quantize=[f"mlp_{i}" for i in range(len(m.layers))])
    finally:
        logging.disable(logging.NOTSET)
    return path


def int8_models(m, d, deepfm, model_file, name="model"):
    """(ORT int8 graph, `deepfm` int8 model file or None) for model m, written into d."""
    q_file = None
    if deepfm:
        q_file = d / f"{name}-int8.dfm"
        run([deepfm, "quantize", "--in", model_file, "--out", q_file, "--mlp", "int8", "--samples", 0])
    return quantize_onnx(m, d / f"{name}-int8.onnx"), q_file


def ort_session(onnx_path, threads):
    import onnxruntime as ort
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.log_severity_level = 3  # errors only
    return ort.InferenceSession(str(onnx_path), so, providers=["CPUExecutionProvider"])


# ----------------------------------------------------------------------------- model files
def python_model(shape, spec_path, weights_path, seed):
    """Writes a random spec + safetensors in the export layout without the CLI (--python-model):
    lets the numpy/ORT half be tested before `deepfm` is built. Shapes mirror src/fixtures.rs."""
    if shape == "criteo-like":
        vocabs = [1000 + 997 * i for i in range(26)]
        rest = 1_000_000 - 13 - sum(vocabs)
        vocabs[0], vocabs[1] = vocabs[0] + rest // 2, vocabs[1] + rest - rest // 2
        fields = [{"name": f"I{i}", "kind": "numeric"} for i in range(1, 14)]
        fields += [{"name": f"C{i + 1}", "kind": "categorical", "vocab": v} for i, v in enumerate(vocabs)]
        spec = {"fields": fields, "embedding_dim": 16, "hidden": [400, 400, 400], "output": "sigmoid"}
    elif shape == "movielens-like":
        spec = {"fields": [{"name": "user", "kind": "categorical", "vocab": 6040},
                           {"name": "item", "kind": "categorical", "vocab": 3706}],
                "embedding_dim": 32, "hidden": [256, 128, 64], "output": "linear", "clamp": [1.0, 5.0]}
    else:
        spec = {"fields": [{"name": "user", "kind": "categorical", "vocab": 500},
                           {"name": "age", "kind": "numeric"},
                           {"name": "genres", "kind": "multi_hot", "vocab": 18, "pooling": "mean"},
                           {"name": "tags", "kind": "multi_hot", "vocab": 40, "pooling": "sum"}],
                "embedding_dim": 13, "hidden": [37, 20], "output": "sigmoid"}
    rng = np.random.default_rng(seed)
    normal = lambda scale, *shape: (rng.standard_normal(shape) * scale).astype(np.float32)
    rows = sum(1 if f["kind"] == "numeric" else f["vocab"] for f in spec["fields"])
    t = {"embedding": normal(0.1, rows, spec["embedding_dim"]), "linear": normal(0.05, rows),
         "bias": normal(0.1, 1)}
    width = len(spec["fields"]) * spec["embedding_dim"]
    for i, out in enumerate(spec["hidden"] + [1]):
        name = f"mlp.{i}" if i < len(spec["hidden"]) else "out"
        t[f"{name}.weight"], t[f"{name}.bias"] = normal((2 / width) ** 0.5, out, width), normal(0.01, out)
        width = out
    save_file(t, str(weights_path))
    spec_path.write_text(json.dumps(spec))


def run(cmd):
    """stdout of a command; on failure, exit with its stderr (CI logs should say why)."""
    p = subprocess.run([str(c) for c in cmd], capture_output=True, text=True)
    if p.returncode:
        sys.exit(f"`{' '.join(map(str, cmd))}` failed ({p.returncode}):\n{p.stderr.strip()}")
    return p.stdout


# ----------------------------------------------------------------------------- agreement
def deepfm_scores(deepfm, model_file, tsv, rows):
    """`deepfm score` of a TSV batch, as floats."""
    out = run([deepfm, "score", "--model", model_file, "--input", tsv]).split()
    if len(out) != rows:
        sys.exit(f"deepfm score printed {len(out)} scores for {rows} rows")
    return [float(s) for s in out]


def check_agreement(m, onnx_path, deepfm, model_file, workdir, seed, int8=None, rows=1000, tag=""):
    """Max relative error of deepfm, ORT and numpy-f32 against numpy-f64 on one random batch,
    and (int8 = (ORT int8 graph, deepfm int8 file or None)) the max |difference| of the int8
    peers on the same rows. Returns (errors, int8 differences)."""
    feeds = random_feeds(m, rows, np.random.default_rng(seed))
    ref = numpy_scores(m, feeds, np.float64)
    err = lambda a: float(np.max(np.abs(np.asarray(a, np.float64) - ref) / np.maximum(np.abs(ref), 1)))
    diff = lambda a: float(np.max(np.abs(np.asarray(a, np.float64) - ref)))
    errors = {f"numpy-f32{tag}": err(numpy_scores(m, feeds, np.float32)),
              f"ORT{tag}": err(ort_session(onnx_path, 1).run(["score"], feeds)[0][:, 0])}
    diffs = {}
    if int8:
        diffs[f"ort_int8_max_abs_diff{tag}"] = diff(ort_session(int8[0], 1).run(["score"], feeds)[0][:, 0])
    if deepfm:
        tsv = workdir / f"agree{tag}.tsv"
        feeds_to_tsv(m, feeds, tsv)
        errors[f"deepfm{tag}"] = err(deepfm_scores(deepfm, model_file, tsv, rows))
        if int8:
            diffs[f"deepfm_int8_max_abs_diff{tag}"] = diff(deepfm_scores(deepfm, int8[1], tsv, rows))
    if m.spec.get("clamp") and not tag:
        # A random model's logits sit near 0, so almost every score is clamped to `lo` and the
        # check above proves little. Check again with the bias moved to the middle of the range
        # (imported into deepfm as a second model file) so that the scores fall inside it.
        lo, hi = m.spec["clamp"]
        print(f"  {int(np.sum((ref > lo) & (ref < hi)))}/{rows} scores inside the clamp; "
              "checking again with the bias moved to its middle (+mid)")
        twin = copy.copy(m)
        twin.bias = m.bias + np.float32((lo + hi) / 2)
        twin_file = None
        if deepfm:
            save_file(twin.tensors(), str(workdir / "mid.safetensors"))
            (workdir / "mid.json").write_text(json.dumps(m.spec))
            twin_file = workdir / "mid.dfm"
            run([deepfm, "import", "--weights", workdir / "mid.safetensors", "--spec",
                 workdir / "mid.json", "--out", twin_file])
        twin_int8 = int8_models(twin, workdir, deepfm, twin_file, "mid") if int8 else None
        more = check_agreement(twin, build_onnx(twin, workdir / "mid.onnx"), deepfm, twin_file,
                               workdir, seed, twin_int8, rows, tag="+mid")
        errors.update(more[0])
        diffs.update(more[1])
    return errors, diffs


# ----------------------------------------------------------------------------- timing
def timed(fn, batches, seconds):
    """samples/s of fn cycling over pre-built batches for `seconds`, after a warm-up of
    min(10% of that, 0.5 s); input generation is off the clock. All as in `deepfm bench`."""
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < min(0.1 * seconds, 0.5):
        fn(batches[n % len(batches)])
        n += 1
    n, start = 0, time.perf_counter()
    while True:
        fn(batches[n % len(batches)])
        n += 1
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            return n * len(next(iter(batches[0].values()))) / elapsed


def make_batches(m, batch, seed):
    # 2^17 distinct rows in 2..1024 batches, like `deepfm bench` (tools/deepfm/throughput.rs):
    # repeated calls should not find their embedding rows in cache more often than a service would.
    count = min(max(-(-(1 << 17) // batch), 2), 1024)
    return [random_feeds(m, batch, np.random.default_rng([seed, batch, i])) for i in range(count)]


def numpy_worker(spec_path, weights_path):
    """Runs in a child process whose BLAS thread count was fixed by environment before numpy
    was imported; answers one JSON timing request per stdin line."""
    m = Model(json.loads(Path(spec_path).read_text()), load_file(weights_path))
    print("ready", flush=True)
    for line in sys.stdin:
        req = json.loads(line)
        batches = make_batches(m, req["batch"], req["seed"])
        rate = timed(lambda f: numpy_scores(m, f), batches, req["seconds"])
        print(json.dumps({"samples_per_sec": rate}), flush=True)


class NumpyWorker:
    def __init__(self, spec_path, weights_path, threads):
        env = dict(os.environ, **{k: str(threads) for k in
                                  ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")})
        self.p = subprocess.Popen([sys.executable, __file__, "--numpy-worker", spec_path, weights_path],
                                  env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert self.p.stdout.readline().strip() == "ready", "numpy worker failed to start"

    def measure(self, batch, seconds, seed):
        self.p.stdin.write(json.dumps({"batch": batch, "seconds": seconds, "seed": seed}) + "\n")
        self.p.stdin.flush()
        return json.loads(self.p.stdout.readline())["samples_per_sec"]

    def close(self):
        self.p.stdin.close()
        self.p.wait()


def cool_down():
    """A pause between measurements, so that nothing a peer left running (OpenBLAS worker threads
    busy-wait after a call; a numpy worker's start-up imports and loads the weights) overlaps the
    next peer's measurement. The start-up overlap was seen here: deepfm on two threads measured
    10-35% low in the first rounds after it."""
    time.sleep(0.5)


def deepfm_bench(deepfm, model_file, batch, threads, seconds, mlp="f32"):
    """samples/s of `deepfm bench --json`; checks that the model ran in the `mlp` precision."""
    out = run([deepfm, "bench", "--model", model_file, "--batch", batch, "--threads", threads,
               "--seconds", seconds, "--json"])
    r = json.loads(out.strip().splitlines()[-1])
    if not r["mlp"].startswith(mlp):
        sys.exit(f"deepfm bench of {model_file} ran mlp {r['mlp']}, expected {mlp}")
    return r["samples_per_sec"]


PEERS = ("deepfm", "ort", "numpy", "deepfm_int8", "ort_int8")
RATIOS = (("deepfm", "ort"), ("deepfm", "numpy"), ("deepfm_int8", "ort_int8"), ("deepfm_int8", "deepfm"))


def time_round(batch, threads, deepfm, model_file, session, worker, int8, batches, args):
    """One round of a cell: each peer back to back (None where it is left out), with pauses."""
    q_session, q_file = int8 if int8 else (None, None)
    peers = {"deepfm": lambda: deepfm and deepfm_bench(deepfm, model_file, batch, threads, args.seconds),
             "ort": lambda: timed(lambda f: session.run(["score"], f), batches, args.seconds),
             "numpy": lambda: worker and worker.measure(batch, args.seconds, args.seed),
             "deepfm_int8": lambda: q_file and deepfm_bench(deepfm, q_file, batch, threads,
                                                            args.seconds, "int8"),
             "ort_int8": lambda: q_session and timed(lambda f: q_session.run(["score"], f),
                                                     batches, args.seconds)}
    r = {}
    for k in PEERS:
        r[k] = peers[k]() or None
        if r[k]:
            cool_down()
    return r


def time_shape(shape, m, onnx_path, deepfm, model_file, spec_path, weights_path, int8, args):
    """Timings of every (threads, batch) cell of one shape; int8 = (ORT int8 graph, deepfm
    int8 file or None) or None."""
    results = []
    for threads in args.threads:
        session = ort_session(onnx_path, threads)
        q = (ort_session(int8[0], threads), int8[1]) if int8 else None
        worker = None if args.no_numpy else NumpyWorker(spec_path, weights_path, threads)
        cool_down()  # the worker's start-up (imports, weights) must not overlap a measurement
        try:
            for batch in args.batches:
                batches = make_batches(m, batch, args.seed)
                # Interleaved: the peers of one cell run back to back, `--repeat` times;
                # each figure is the median of its rounds, and each ratio the median of the
                # per-round ratios (this machine drifts by up to 30% between runs).
                rounds = [time_round(batch, threads, deepfm, model_file, session, worker, q, batches, args)
                          for _ in range(args.repeat)]
                med = lambda xs: float(np.median(xs)) if all(x is not None for x in xs) else None
                r = {"shape": shape, "batch": batch, "threads": threads, "rounds": rounds}
                for k in PEERS:
                    r[k] = med([x[k] for x in rounds])
                for a, b in RATIOS:
                    r[f"{a}/{b}"] = med([x[a] / x[b] if x[a] and x[b] else None for x in rounds])
                print(f"  {shape} batch {batch} threads {threads}: " + ", ".join(
                    f"{k} {r[k]:,.0f}/s" for k in PEERS if r[k]) +
                    (f" (medians of {args.repeat})" if args.repeat > 1 else ""), flush=True)
                results.append(r)
        finally:
            if worker:
                worker.close()
            del session, q
    return results


def table(results):
    head = ("| shape | batch | threads | deepfm samples/s | ORT samples/s | numpy samples/s | "
            "deepfm/ORT | deepfm/numpy | deepfm µs/sample | ORT µs/sample | numpy µs/sample | "
            "ORT int8 samples/s | deepfm int8 samples/s | deepfm int8/ORT int8 | "
            "deepfm int8/deepfm f32 |")
    lines = [head, "|" + "---|" * head.count(" | ") + "---|"]
    fmt = lambda x: f"{x:,.0f}" if x else "-"
    ratio = lambda r, a, b: f"{r[f'{a}/{b}']:.2f}" if r.get(f"{a}/{b}") else "-"
    us = lambda r, k: f"{1e6 / r[k]:.1f}" if r["batch"] == 1 and r[k] else ""
    for r in results:
        lines.append(f"| {r['shape']} | {r['batch']} | {r['threads']} | {fmt(r['deepfm'])} | "
                     f"{fmt(r['ort'])} | {fmt(r['numpy'])} | {ratio(r, 'deepfm', 'ort')} | "
                     f"{ratio(r, 'deepfm', 'numpy')} | {us(r, 'deepfm')} | {us(r, 'ort')} | {us(r, 'numpy')} | "
                     f"{fmt(r['ort_int8'])} | {fmt(r['deepfm_int8'])} | {ratio(r, 'deepfm_int8', 'ort_int8')} | "
                     f"{ratio(r, 'deepfm_int8', 'deepfm')} |")
    return "\n".join(lines)


# ----------------------------------------------------------------------------- main
def environment(deepfm):
    import onnxruntime
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")),
               platform.processor()) if Path("/proc/cpuinfo").exists() else platform.processor()
    try:
        blas = np.__config__.CONFIG["Build Dependencies"]["blas"]
        blas = f"{blas['name']} {blas['version']}"
    except Exception:
        blas = "unknown"
    env = {"cpu": cpu, "cores": os.cpu_count(), "load average (1 min)": round(os.getloadavg()[0], 2),
           "python": platform.python_version(), "numpy": np.__version__, "blas": blas,
           "onnxruntime": onnxruntime.__version__}
    if deepfm:
        env["deepfm"] = run([deepfm, "--version"]).strip()
    return env


def main():
    if len(sys.argv) == 4 and sys.argv[1] == "--numpy-worker":
        return numpy_worker(sys.argv[2], sys.argv[3])
    ints = lambda s: [int(x) for x in s.split(",")]
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--deepfm", type=Path, default=REPO / "target/release/deepfm")
    p.add_argument("--shape", action="append", help=f"one of {', '.join(SHAPES)} (repeatable or "
                   "comma-separated; default criteo-like,movielens-like)")
    p.add_argument("--check-only", action="store_true", help="agreement only, no timing (CI)")
    p.add_argument("--batches", type=ints, default=[1, 256, 4096, 65536])
    p.add_argument("--threads", type=ints, default=[1, 2])
    p.add_argument("--seconds", type=float, default=2.0, help="per measurement")
    p.add_argument("--repeat", type=int, default=1,
                   help="rounds per cell; report medians (and the median of per-round ratios)")
    p.add_argument("--no-numpy", action="store_true", help="leave the numpy peer out")
    p.add_argument("--no-int8", action="store_true", help="leave the int8 peers (ORT, deepfm) out")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--workdir", type=Path, help="keep models here (default: a temp dir)")
    p.add_argument("--json-out", type=Path, help="save environment, errors and timings as JSON")
    p.add_argument("--python-model", action="store_true",
                   help="generate the model in Python and leave deepfm out (numpy vs ORT only)")
    args = p.parse_args()
    shapes = [s for arg in (args.shape or ["criteo-like,movielens-like"]) for s in arg.split(",")]
    if bad := [s for s in shapes if s not in SHAPES]:
        p.error(f"unknown shape(s) {bad}; choose from {SHAPES}")
    deepfm = None if args.python_model else args.deepfm.resolve()
    if deepfm and not deepfm.exists():
        p.error(f"{deepfm} not found: run `cargo build --release` or pass --deepfm / --python-model")

    tmp = None if args.workdir else tempfile.TemporaryDirectory(prefix="deepfm-peers-")
    workdir = args.workdir or Path(tmp.name)
    workdir.mkdir(parents=True, exist_ok=True)
    env = environment(deepfm)
    print("\n".join(f"{k}: {v}" for k, v in env.items()), flush=True)
    if not args.check_only and env["load average (1 min)"] > 0.5:
        print("WARNING: the machine is busy; these timings are not worth keeping", flush=True)

    report, failed = {"environment": env, "agreement": {}, "int8": {}, "timings": []}, False
    for shape in shapes:
        d = workdir / shape
        d.mkdir(exist_ok=True)
        model_file, spec_path, weights_path = d / "model.dfm", d / "spec.json", d / "weights.safetensors"
        if deepfm:
            run([deepfm, "random", "--shape", shape, "--out", model_file, "--seed", args.seed])
            run([deepfm, "export", "--model", model_file, "--weights", weights_path, "--spec", spec_path])
        else:
            python_model(shape, spec_path, weights_path, args.seed)
        m = Model(json.loads(spec_path.read_text()), load_file(str(weights_path)))
        onnx_path = build_onnx(m, d / "model.onnx")
        int8 = None if args.no_int8 else int8_models(m, d, deepfm, model_file)
        errors, diffs = check_agreement(m, onnx_path, deepfm, model_file, d, args.seed, int8)
        report["agreement"][shape], report["int8"][shape] = errors, diffs
        bad = [k for k, e in errors.items() if not e <= TOLERANCE]
        failed |= bool(bad)
        print(f"\n{shape}: max relative error vs numpy-f64: " +
              ", ".join(f"{k} {e:.2e}" for k, e in errors.items()) +
              (f"  FAIL ({', '.join(bad)} > {TOLERANCE:g})" if bad else "  ok"), flush=True)
        if diffs:
            print(f"{shape}: int8 max |score difference| vs numpy-f64 (no threshold): " +
                  ", ".join(f"{k.replace('_max_abs_diff', '')} {e:.2e}" for k, e in diffs.items()),
                  flush=True)
        if not args.check_only:
            report["timings"] += time_shape(shape, m, onnx_path, deepfm, model_file,
                                            str(spec_path), str(weights_path), int8, args)
    if report["timings"]:
        print("\n" + table(report["timings"]))
    if args.json_out:
        args.json_out.write_text(json.dumps(report, indent=2))
    if tmp:
        tmp.cleanup()
    if failed:
        sys.exit("agreement check FAILED")


if __name__ == "__main__":
    main()
