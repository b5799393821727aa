#!/usr/bin/env python3
"""Load test of the scoring service (serve/, `deepfm-serve`) with a real load generator (oha).

Builds the service, writes two random Criteo-like models beside each other, starts the service
on loopback, and drives POST /score with oha at a fixed rate for a bounded number of requests,
for batch-1 and batch-256 bodies, while reloading the model 4 times (alternating between the
two files). Prints requests/s, p50/p99/p99.9 latency and non-2xx responses per run. With
--huge it does the same against a model whose embedding table (64 GiB, a sparse file) is larger
than this machine's memory, sampling the server's resident memory over the run.

Standard library only (no venv). Needs cargo; installs oha with `cargo install oha --locked`
when it is not on PATH (several minutes of compiling, once).

    python3 tools/load/run.py                 # Criteo-like, batch 1 at 5,000 req/s, batch 256 at 100
    python3 tools/load/run.py --huge          # also the 64 GiB sparse-table model
    python3 tools/load/run.py --huge-only --seconds 10
"""

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def target_dir():
    return os.environ.get("CARGO_TARGET_DIR", os.path.join(REPO, "target"))


def build():
    subprocess.run(
        ["cargo", "build", "--release", "--bin", "deepfm-serve", "--example", "sparse_model",
         "--bin", "deepfm"],
        cwd=REPO, check=True)
    release = os.path.join(target_dir(), "release")
    return (os.path.join(release, "deepfm"),
            os.path.join(release, "deepfm-serve"),
            os.path.join(release, "examples", "sparse_model"))


def find_oha():
    found = shutil.which("oha") or next(
        (p for p in [os.path.expanduser("~/.cargo/bin/oha")] if os.path.exists(p)), None)
    if found:
        return found
    print("oha not found: cargo install oha --locked (compiles for several minutes)", flush=True)
    subprocess.run(["cargo", "install", "oha", "--locked"], check=True)
    return os.path.expanduser("~/.cargo/bin/oha")


def spec_of(deepfm, model):
    out = subprocess.run([deepfm, "inspect", model], check=True, capture_output=True, text=True)
    line = next(l for l in out.stdout.splitlines() if l.startswith("spec: "))
    return json.loads(line[len("spec: "):])


def sample(spec, rng):
    row = {}
    for f in spec["fields"]:
        if f["kind"] == "categorical":
            row[f["name"]] = rng.randrange(f["vocab"])
        elif f["kind"] == "numeric":
            row[f["name"]] = round(rng.uniform(0, 3), 3)
        else:
            row[f["name"]] = [rng.randrange(f["vocab"]) for _ in range(rng.randrange(6))]
    return row


def write_bodies(spec, batch, lines, path, seed):
    """`lines` request bodies of `batch` random samples, one per line (oha -Z picks one at random
    per request), so the gather reads different rows from request to request."""
    rng = random.Random(seed)
    with open(path, "w") as f:
        for _ in range(lines):
            body = {"samples": [sample(spec, rng) for _ in range(batch)]}
            f.write(json.dumps(body, separators=(",", ":")) + "\n")


def request(url, body=None, timeout=30):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, headers={"content-type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


class Server:
    """The service as a child process on a free loopback port."""

    def __init__(self, serve, model, extra):
        import socket
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen(
            [serve, "--model", model, "--addr", f"127.0.0.1:{self.port}", *extra],
            stderr=subprocess.PIPE, text=True)
        deadline = time.time() + 30
        while time.time() < deadline:
            try:
                if request(self.url + "/health", timeout=1)[0] == 200:
                    return
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError("the service did not come up")

    def rss(self):
        """(VmRSS, RssAnon, RssFile) in MiB, from /proc/PID/status."""
        fields = {}
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key in ("VmRSS", "RssAnon", "RssFile"):
                    fields[key] = int(value.split()[0]) / 1024
        return fields.get("VmRSS", 0), fields.get("RssAnon", 0), fields.get("RssFile", 0)

    def cpu_seconds(self):
        """User + system CPU time of the service so far, from /proc/PID/stat."""
        with open(f"/proc/{self.proc.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def run_load(oha, server, bodies, rate, requests, connections, reload_paths, reloads,
             sample_rss=False, endpoint="score"):
    """One bounded oha run with `reloads` reloads spread over it; returns a result dict.
    `endpoint` "score" posts the bodies; "health" sends GET /health (the floor of the setup:
    HTTP, loopback and scheduling without any model work)."""
    seconds = requests / rate
    cmd = [oha, "-n", str(requests), "-q", str(rate), "-c", str(connections),
           "--latency-correction", "--no-tui", "--output-format", "json",
           "--worker-threads", "1"]
    if endpoint == "score":
        cmd += ["-m", "POST", "-T", "application/json", "-Z", bodies, server.url + "/score"]
    else:
        cmd += [server.url + "/" + endpoint]
    reload_log, rss_log = [], []
    stop = threading.Event()

    def reloader():
        for i in range(reloads):
            if stop.wait(seconds / (reloads + 1)):
                return
            path = reload_paths[(i + 1) % len(reload_paths)]
            t = time.perf_counter()
            status, body = request(server.url + "/reload", {"path": path})
            reload_log.append((status, body, (time.perf_counter() - t) * 1e3))

    def sampler():
        t0 = time.time()
        while not stop.wait(0.5):
            rss_log.append((time.time() - t0, *server.rss()))

    threads = [threading.Thread(target=reloader)]
    if sample_rss:
        rss_log.append((0.0, *server.rss()))
        threads.append(threading.Thread(target=sampler))
    for t in threads:
        t.start()
    cpu_before = server.cpu_seconds()
    metrics_before = server_metrics(server)
    steal_before = steal_seconds()
    busy_before, oha_before, wall = busy_seconds(), children_cpu_seconds(), time.time()
    try:
        # Bounded twice: oha stops after `requests`, and is killed at 3× the planned time.
        out = subprocess.run(cmd, check=True, capture_output=True, text=True,
                             timeout=seconds * 3 + 30)
    finally:
        stop.set()
        for t in threads:
            t.join()
    cpu = server.cpu_seconds() - cpu_before
    oha_cpu = children_cpu_seconds() - oha_before
    steal = (steal_seconds() - steal_before) / (time.time() - wall)
    metrics = {k: v - metrics_before.get(k, 0) for k, v in server_metrics(server).items()}
    # Whatever else ran on the machine meanwhile, in cores: it competes for the same 2 cores.
    others = (busy_seconds() - busy_before - cpu - oha_cpu) / (time.time() - wall) - steal
    report = json.loads(out.stdout)
    codes = {int(k): v for k, v in report.get("statusCodeDistribution", {}).items()}
    errors = sum(report.get("errorDistribution", {}).values())
    pct = report["latencyPercentiles"]
    return {
        "requests": sum(codes.values()) + errors,
        "rps": report["summary"]["requestsPerSec"],
        "p50_ms": pct["p50"] * 1e3, "p99_ms": pct["p99"] * 1e3, "p999_ms": pct["p99.9"] * 1e3,
        "non_2xx": sum(v for k, v in codes.items() if not 200 <= k < 300),
        "errors": errors,
        "reloads": [(s, json.loads(b).get("model_version"), round(ms, 1))
                    for s, b, ms in reload_log],
        "rss": rss_log,
        "server_cpu_us_per_request": cpu / max(1, sum(codes.values())) * 1e6,
        "oha_cores": oha_cpu / (time.time() - wall),
        "other_cores": max(0.0, others),
        "steal_cores": steal,
        "server_p50_ms": server_quantile(metrics, endpoint, 0.5),
        "server_p99_ms": server_quantile(metrics, endpoint, 0.99),
        "requests_per_pass": (metrics.get("deepfm_scoring_pass_requests_total", 0)
                              / metrics["deepfm_scoring_passes_total"]
                              if metrics.get("deepfm_scoring_passes_total") else None),
    }


def server_metrics(server):
    """The service's counters (name with labels -> value), from GET /metrics."""
    _, text = request(server.url + "/metrics")
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            out[name] = float(value)
    return out


def server_quantile(metrics, endpoint, q):
    """The upper bound (ms) of the latency-histogram bucket holding quantile `q` of the
    requests the service timed (handler start to response ready), or None."""
    prefix = f'deepfm_request_duration_seconds_bucket{{endpoint="{endpoint}",le="'
    buckets = sorted((float(k[len(prefix):-2]), v) for k, v in metrics.items()
                     if k.startswith(prefix))
    total = buckets[-1][1] if buckets else 0
    if total <= 0:
        return None
    return next(le for le, cumulative in buckets if cumulative >= q * total) * 1e3


def steal_seconds():
    """Time the hypervisor ran something else while this VM's vCPUs wanted to run (all
    vCPUs), from /proc/stat: on a VM it competes with the service like another process."""
    with open("/proc/stat") as f:
        return int(f.readline().split()[8]) / os.sysconf("SC_CLK_TCK")


def busy_seconds():
    """CPU time all processes spent busy since boot (all cores), from /proc/stat."""
    with open("/proc/stat") as f:
        ticks = [int(x) for x in f.readline().split()[1:]]
    idle = ticks[3] + ticks[4]
    return (sum(ticks[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def children_cpu_seconds():
    import resource
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def server_non_2xx(server):
    _, text = request(server.url + "/metrics")
    bad = 0
    for line in text.splitlines():
        if line.startswith("deepfm_requests_total{") and 'status="2' not in line:
            bad += int(line.rsplit(" ", 1)[1])
    return bad


def print_row(name, batch, rate, r):
    reloads_ok = sum(1 for s, _, _ in r["reloads"] if s == 200)
    print(f"| {name} | {batch} | {rate:,} | {r['requests']:,} | {r['rps']:,.0f} | "
          f"{r['p50_ms']:.3f} | {r['p99_ms']:.3f} | {r['p999_ms']:.3f} | "
          f"{r['non_2xx'] + r['errors']} | {reloads_ok}/{len(r['reloads'])} | "
          f"{r['server_cpu_us_per_request']:.0f} | {r['oha_cores']:.2f} | {r['other_cores']:.2f} | "
          f"{r['steal_cores']:.3f} |",
          flush=True)


HEADER = ("| model | batch | target req/s | requests | achieved req/s | p50 ms | p99 ms | "
          "p99.9 ms | non-2xx + errors | reloads ok | service CPU µs/request | oha cores | "
          "other processes' cores | stolen by the hypervisor, cores |\n"
          "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=20, help="planned length of each run")
    ap.add_argument("--rate", type=int, default=5000, help="batch-1 requests per second")
    ap.add_argument("--rate-256", type=int, default=100, help="batch-256 requests per second")
    ap.add_argument("--batches", default="1,256", help="Criteo-like batch sizes to run (1, 256)")
    ap.add_argument("--connections", type=int, default=16)
    ap.add_argument("--reloads", type=int, default=4, help="reloads during each run")
    ap.add_argument("--huge", action="store_true", help="also run the 64 GiB sparse-table model")
    ap.add_argument("--huge-only", action="store_true")
    ap.add_argument("--serve-arg", action="append", default=[],
                    help="extra argument for the service (repeatable), e.g. --serve-arg=--dispatch=blocking")
    ap.add_argument("--workdir", help="where models and bodies go (default: a temporary directory)")
    ap.add_argument("--json-out", help="write all results here")
    args = ap.parse_args()

    deepfm, serve, sparse_model = build()
    oha = find_oha()
    work = args.workdir or tempfile.mkdtemp(prefix="deepfm-load-")
    os.makedirs(work, exist_ok=True)
    results = {}
    try:
        print(f"load1 {os.getloadavg()[0]:.2f}; service {serve}; oha {oha}; files in {work}")
        print("oha and the service share this machine's cores.\n")
        print(HEADER)
        if not args.huge_only:
            a, b = os.path.join(work, "criteo-a.dfm"), os.path.join(work, "criteo-b.dfm")
            for path, seed in ((a, 1), (b, 2)):
                subprocess.run([deepfm, "random", "--shape", "criteo-like", "--out", path,
                                "--seed", str(seed)], check=True, capture_output=True)
            spec = spec_of(deepfm, a)
            wanted = {int(b) for b in args.batches.split(",")}
            plan = [(1, args.rate, 20_000), (256, args.rate_256, 100)]
            for batch, rate, lines in (p for p in plan if p[0] in wanted):
                bodies = os.path.join(work, f"criteo-{batch}.jsonl")
                write_bodies(spec, batch, lines, bodies, seed=batch)
                server = Server(serve, a, args.serve_arg)
                try:
                    # Warm-up (page in the model, grow the scratch), not measured.
                    run_load(oha, server, bodies, rate, max(rate // 4, 50), args.connections,
                             [a], 0)
                    r = run_load(oha, server, bodies, rate, int(rate * args.seconds),
                                 args.connections, [a, b], args.reloads)
                    r["server_non_2xx"] = server_non_2xx(server)
                finally:
                    server.stop()
                results[f"criteo-like/{batch}"] = r
                print_row("Criteo-like", batch, rate, r)
        if args.huge or args.huge_only:
            huge = os.path.join(work, "huge.dfm")
            subprocess.run([sparse_model, huge], check=True, capture_output=True)
            spec = spec_of(deepfm, huge)
            bodies = os.path.join(work, "huge-1.jsonl")
            write_bodies(spec, 1, 10_000, bodies, seed=7)
            server = Server(serve, huge, args.serve_arg)
            try:
                r = run_load(oha, server, bodies, args.rate, int(args.rate * args.seconds),
                             args.connections, [huge], args.reloads, sample_rss=True)
                r["server_non_2xx"] = server_non_2xx(server)
            finally:
                server.stop()
            results["huge/1"] = r
            print_row("64 GiB sparse table", 1, args.rate, r)
            print("\nResident memory of the service during the 64 GiB run (MiB):\n")
            print("| t (s) | VmRSS | RssAnon | RssFile |\n|---|---|---|---|")
            step = max(1, len(r["rss"]) // 10)
            for t, rss, anon, file_ in r["rss"][::step] + r["rss"][-1:]:
                print(f"| {t:.1f} | {rss:.1f} | {anon:.1f} | {file_:.1f} |")
        print()
        for name, r in results.items():
            print(f"{name}: reloads (status, version, ms) {r['reloads']}; "
                  f"non-2xx counted by the service: {r['server_non_2xx']}")
        if args.json_out:
            with open(args.json_out, "w") as f:
                json.dump(results, f, indent=1)
    finally:
        if not args.workdir:
            shutil.rmtree(work, ignore_errors=True)
    bad = sum(r["non_2xx"] + r["errors"] + r["server_non_2xx"] for r in results.values())
    failed_reloads = sum(1 for r in results.values() for s, _, _ in r["reloads"] if s != 200)
    if bad or failed_reloads:
        print(f"FAILED: {bad} non-2xx responses or errors, {failed_reloads} failed reloads")
        sys.exit(1)


if __name__ == "__main__":
    main()
