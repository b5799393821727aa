#!/usr/bin/env bash
# tools/race.sh: race two revisions of deepfm, interleaved round by round.
#
# Usage:
#   tools/race.sh [--rounds N] [--seconds S] [--threads T[,T...]] [--rebuild] OLD_REV [NEW_REV]
#
# Builds `deepfm` (release, the `cli` feature) at OLD_REV and at NEW_REV, then runs every shape
# on both binaries in N rounds, alternating which binary goes first (round 1: old then new,
# round 2: new then old, ...), and prints a markdown table: for each shape the median
# samples/s of each side and the median over rounds of the per-round ratio new/old (with its
# range). This VM drifts 10-30% between minutes, so only the per-round ratios, taken seconds
# apart, are worth quoting; the side medians are for orientation.
#
#   OLD_REV, NEW_REV  anything `git rev-parse` accepts (HEAD~1, a sha, a branch, a tag).
#                     NEW_REV defaults to WORKTREE: the current checkout as it is now,
#                     uncommitted changes and untracked (not ignored) files included.
#                     OLD_REV may be WORKTREE too.
#   --rounds N        rounds (default 5).
#   --seconds S       seconds each run measures (default 2; `--seconds` of the commands).
#   --threads T       threads of every shape, or a comma-separated list (1,2) to run each
#                     shape at each count (default: 1 for scoring, 2 for training, which are
#                     the commands' own defaults).
#   --rebuild         build again even if a binary of the same source is cached.
#   -h, --help        this text.
#
# Shapes (each a row; the defaults, changed with the environment variables below):
#   scoring   `deepfm bench --shape S --batch B --threads T --seconds S --json`
#             for S in criteo-like movielens-like, B in 1 4096.
#   training  `deepfm bench-train --shape S --batch B --threads T --seconds S --json`
#             for S in criteo-like movielens-like mixed-small, B = 256.
# samples/s is read from the `--json` line (`samples_per_sec`); a binary whose command has no
# `--json` is read from its text ("N samples/s"). Before the rounds every row is run once on
# both binaries (0.1 s, also a warm-up); a row that either binary rejects (a command, flag,
# shape or value it lacks) is printed as skipped, with that binary's error.
#
# Environment:
#   BENCH_ARGS     extra arguments appended to every `deepfm bench` call, on both sides,
#                  e.g. BENCH_ARGS='--mlp int8' (old revisions without --mlp are skipped)
#                  or BENCH_ARGS='--isa avx2'.
#   TRAIN_ARGS     the same for every `deepfm bench-train` call, e.g. TRAIN_ARGS='--bn'.
#   SCORE_SHAPES   scoring shapes (default "criteo-like movielens-like"; empty: no scoring).
#   SCORE_BATCHES  scoring batch sizes (default "1 4096").
#   TRAIN_SHAPES   training shapes (default "criteo-like movielens-like mixed-small";
#                  empty: no training).
#   TRAIN_BATCHES  training batch sizes (default "256").
#   RACE_DIR       where builds live (default /tmp/deepfm-race):
#                    target/   one CARGO_TARGET_DIR shared by every revision, so that the
#                              dependencies are compiled once and each revision recompiles
#                              only the deepfm crate;
#                    bin/      the built binaries, keyed by the git tree hash of the source
#                              (plus rustc version and RUSTFLAGS): racing a revision again
#                              does not rebuild it;
#                    logs/     the cargo output of each build;
#                    wt.*/     the temporary worktrees (`git worktree add --detach`), removed
#                              at exit. `rm -rf "$RACE_DIR"` resets everything.
#
# WORKTREE is snapshotted with a temporary index (`git add -A` into a copy of the index,
# `git write-tree`, `git commit-tree`): the real index, branches and stash are not touched; the
# snapshot commit is a dangling object that `git gc` removes. If the checkout is clean the
# snapshot is HEAD itself.
#
# The 1-minute load average is printed, with a warning above 0.5 (another job is running and
# the numbers will be noisy). Progress goes to stderr, the report to stdout.
#
# Examples:
#   tools/race.sh HEAD~1                          # last commit vs. the checkout
#   tools/race.sh --rounds 7 --seconds 3 main my-branch
#   BENCH_ARGS='--mlp int8' TRAIN_SHAPES= tools/race.sh --threads 1,2 HEAD
set -euo pipefail

prog=tools/race.sh
die() {
    echo "$prog: error: $*" >&2
    exit 1
}
usage() {
    # The comment block at the top of this file, from "Usage:" to "set -euo".
    sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed -E 's/^# ?//'
}

rounds=5
seconds=2
threads=
rebuild=0
revs=()
while (($#)); do
    case "$1" in
    -h | --help)
        usage
        exit 0
        ;;
    --rounds | --seconds | --threads)
        (($# >= 2)) || die "$1 needs a value (see --help)"
        case "$1" in
        --rounds) rounds=$2 ;;
        --seconds) seconds=$2 ;;
        --threads) threads=$2 ;;
        esac
        shift 2
        ;;
    --rounds=*) rounds=${1#*=}; shift ;;
    --seconds=*) seconds=${1#*=}; shift ;;
    --threads=*) threads=${1#*=}; shift ;;
    --rebuild) rebuild=1; shift ;;
    --) shift; revs+=("$@"); break ;;
    -*) die "unknown option $1 (see --help)" ;;
    *) revs+=("$1"); shift ;;
    esac
done
((${#revs[@]} >= 1)) || die "OLD_REV is missing (usage: $prog [--rounds N] [--seconds S] [--threads T] OLD_REV [NEW_REV]; see --help)"
((${#revs[@]} <= 2)) || die "at most two revisions, got ${#revs[@]}: ${revs[*]}"
old_rev=${revs[0]}
new_rev=${revs[1]:-WORKTREE}
[[ $rounds =~ ^[1-9][0-9]*$ ]] || die "--rounds must be a positive integer, got '$rounds'"
[[ $seconds =~ ^([0-9]+\.?[0-9]*|\.[0-9]+)$ ]] && awk -v s="$seconds" 'BEGIN { exit !(s > 0) }' ||
    die "--seconds must be a positive number, got '$seconds'"
[[ -z $threads || $threads =~ ^[1-9][0-9]*(,[1-9][0-9]*)*$ ]] ||
    die "--threads must be a positive integer or a comma-separated list of them, got '$threads'"
for tool in git cargo python3; do
    command -v "$tool" >/dev/null || die "$tool is not on PATH"
done

# The load before this script adds its own (builds and runs).
load1=$(cut -d' ' -f1 /proc/loadavg 2>/dev/null || echo unknown)
busy=0
if [[ $load1 != unknown ]] && awk -v l="$load1" 'BEGIN { exit !(l > 0.5) }'; then
    busy=1
    {
        echo "$prog: warning: the 1-minute load average is $load1 (> 0.5): the machine is busy and the numbers will be noisy. Busiest processes:"
        ps -eo pcpu=,pid=,args= --sort=-pcpu 2>/dev/null | head -n 3 | cut -c1-120 | sed 's/^/    /' || true
    } >&2
fi

script_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(git -C "$script_dir" rev-parse --show-toplevel 2>/dev/null) ||
    die "$script_dir is not inside a git checkout"
race_dir=${RACE_DIR:-/tmp/deepfm-race}
mkdir -p "$race_dir/target" "$race_dir/bin" "$race_dir/logs"
race_dir=$(cd "$race_dir" && pwd)
work=$(mktemp -d "$race_dir/wt.XXXXXX")
worktrees=()

cleanup() {
    local wt
    for wt in "${worktrees[@]+"${worktrees[@]}"}"; do
        git -C "$repo" worktree remove --force "$wt" >/dev/null 2>&1 || true
    done
    rm -rf "$work"
    git -C "$repo" worktree prune >/dev/null 2>&1 || true
}
trap cleanup EXIT
trap 'echo "$prog: interrupted" >&2; exit 130' INT
trap 'exit 143' TERM

# The compiler and flags, part of each binary's cache key.
toolchain_key=$({
    rustc -vV 2>/dev/null || echo no-rustc
    echo "RUSTFLAGS=${RUSTFLAGS-} CARGO_ENCODED_RUSTFLAGS=${CARGO_ENCODED_RUSTFLAGS-}"
} | git hash-object --stdin)

# resolve REV: sets rev_commit and rev_desc. WORKTREE becomes a snapshot commit of the checkout.
resolve() {
    local rev=$1
    if [[ $rev == WORKTREE ]]; then
        local head index tree
        head=$(git -C "$repo" rev-parse --verify HEAD) || die "the checkout has no HEAD commit"
        index=$work/snapshot-index
        cp "$(git -C "$repo" rev-parse --path-format=absolute --git-path index)" "$index" 2>/dev/null ||
            GIT_INDEX_FILE=$index git -C "$repo" read-tree HEAD
        GIT_INDEX_FILE=$index git -C "$repo" add -A ||
            die "could not snapshot the working tree (git add -A into a temporary index)"
        tree=$(GIT_INDEX_FILE=$index git -C "$repo" write-tree)
        rm -f "$index"
        if [[ $tree == "$(git -C "$repo" rev-parse "$head^{tree}")" ]]; then
            rev_commit=$head
            rev_desc="WORKTREE = HEAD $(git -C "$repo" rev-parse --short "$head") (clean)"
        else
            rev_commit=$(GIT_AUTHOR_NAME=race.sh GIT_AUTHOR_EMAIL=race.sh@localhost \
                GIT_COMMITTER_NAME=race.sh GIT_COMMITTER_EMAIL=race.sh@localhost \
                git -C "$repo" commit-tree "$tree" -p "$head" -m "race.sh: working tree snapshot")
            rev_desc="WORKTREE = HEAD $(git -C "$repo" rev-parse --short "$head") + uncommitted changes (snapshot tree $(git -C "$repo" rev-parse --short "$tree"))"
        fi
    else
        rev_commit=$(git -C "$repo" rev-parse --verify --quiet "$rev^{commit}") ||
            die "'$rev' is not a revision of $repo (git rev-parse '$rev^{commit}' failed)"
        rev_desc=$(git -C "$repo" log -1 --format='%h %<(80,trunc)%s' "$rev_commit" | sed 's/ *$//')
    fi
}

# build LABEL COMMIT: sets built_bin to a deepfm binary built from COMMIT's source.
build() {
    local label=$1 commit=$2 tree short features=() key dir wt log start
    tree=$(git -C "$repo" rev-parse "$commit^{tree}")
    short=$(git -C "$repo" rev-parse --short "$commit")
    # Old revisions may predate the `cli` feature; their default features then hold the CLI.
    if git -C "$repo" show "$commit:Cargo.toml" 2>/dev/null | grep -Eq '^[[:space:]]*cli[[:space:]]*='; then
        features=(--features cli)
    fi
    key=$(printf '%s %s %s\n' "$tree" "$toolchain_key" "${features[*]-}" | git hash-object --stdin)
    dir=$race_dir/bin/${tree:0:12}-${key:0:8}
    built_bin=$dir/deepfm
    if ((rebuild == 0)) && [[ -x $built_bin ]]; then
        echo "$prog: $label $short: cached binary $built_bin" >&2
        return
    fi
    wt=$work/$label
    git -C "$repo" worktree add --detach --quiet "$wt" "$commit" ||
        die "git worktree add $wt $commit failed"
    worktrees+=("$wt")
    log=$race_dir/logs/build-$label-$short.log
    echo "$prog: $label $short: cargo build --release -p deepfm --bin deepfm ${features[*]-} (CARGO_TARGET_DIR=$race_dir/target, log $log)" >&2
    start=$SECONDS
    if ! (cd "$wt" && CARGO_TARGET_DIR=$race_dir/target cargo build --release -p deepfm --bin deepfm \
        "${features[@]+"${features[@]}"}" >"$log" 2>&1); then
        tail -n 30 "$log" | sed 's/^/    /' >&2
        die "building $label ($short) failed; the whole output is in $log"
    fi
    echo "$prog: $label $short: built in $((SECONDS - start)) s" >&2
    mkdir -p "$dir"
    cp "$race_dir/target/release/deepfm" "$dir/deepfm.tmp.$$"
    mv -f "$dir/deepfm.tmp.$$" "$built_bin"
    git -C "$repo" worktree remove --force "$wt" >/dev/null 2>&1 || true
}

resolve "$old_rev"
old_commit=$rev_commit old_desc=$rev_desc
resolve "$new_rev"
new_commit=$rev_commit new_desc=$rev_desc
build old "$old_commit"
old_bin=$built_bin
build new "$new_commit"
new_bin=$built_bin

cpu=$(lscpu 2>/dev/null | sed -n 's/^Model name:[[:space:]]*//p' | head -n 1)
[[ -n $cpu ]] || cpu=$(sed -n 's/^model name[[:space:]]*:[[:space:]]*//p' /proc/cpuinfo 2>/dev/null | head -n 1)
echo "## deepfm race: $old_rev vs. $new_rev"
echo
echo "- old: $old_desc"
echo "- new: $new_desc"
echo "- CPU: ${cpu:-unknown} ($(nproc) CPUs); $(rustc -V 2>/dev/null || echo 'rustc ?')"
if ((busy)); then
    echo "- load average (1 min) at the start: $load1 -- WARNING: above 0.5, the machine is busy; expect noise"
else
    echo "- load average (1 min) at the start: $load1"
fi
echo "- rounds: $rounds, ${seconds} s per run, old and new alternating which runs first${BENCH_ARGS:+; BENCH_ARGS='$BENCH_ARGS'}${TRAIN_ARGS:+; TRAIN_ARGS='$TRAIN_ARGS'}"
echo

read -r -d '' race_py <<'PY' || true
import json, os, re, shlex, statistics, subprocess, sys

old_bin, new_bin, rounds, seconds, threads_opt = sys.argv[1:6]
rounds, seconds = int(rounds), float(seconds)
bins = {"old": old_bin, "new": new_bin}


def words(name, default):
    value = os.environ.get(name)
    return (default if value is None else value).replace(",", " ").split()


def extra(name):
    try:
        return shlex.split(os.environ.get(name, ""))
    except ValueError as e:
        sys.exit(f"tools/race.sh: error: {name}: {e}")


cases = []
for kind, cmd, shapes, batches, threads, more in (
    ("score", "bench", words("SCORE_SHAPES", "criteo-like movielens-like"),
     words("SCORE_BATCHES", "1 4096"), threads_opt.split(",") if threads_opt else ["1"],
     extra("BENCH_ARGS")),
    ("train", "bench-train", words("TRAIN_SHAPES", "criteo-like movielens-like mixed-small"),
     words("TRAIN_BATCHES", "256"), threads_opt.split(",") if threads_opt else ["2"],
     extra("TRAIN_ARGS")),
):
    for shape in shapes:
        for batch in batches:
            for t in threads:
                cases.append({"name": f"{kind} {shape}", "cmd": cmd, "shape": shape,
                              "batch": batch, "threads": t, "extra": more, "skip": None,
                              "old": [], "new": [], "ratios": []})

helps = {}


def has_json(side, cmd):
    """Whether the command lists --json in its help (None: the command does not exist)."""
    if (side, cmd) not in helps:
        p = subprocess.run([bins[side], cmd, "--help"], capture_output=True, text=True)
        helps[side, cmd] = ("--json" in p.stdout) if p.returncode == 0 else None
    return helps[side, cmd]


def reason(p):
    lines = [l.strip() for l in (p.stderr + "\n" + p.stdout).splitlines() if l.strip()]
    pick = next((l for l in lines if l.lower().startswith("error")), lines[-1] if lines else "")
    return (pick or f"exit status {p.returncode}")[:140]


def run(side, case, secs):
    """(samples/s, None) or (None, why)."""
    json_ok = has_json(side, case["cmd"])
    if json_ok is None:
        return None, f"no `{case['cmd']}` command"
    argv = [bins[side], case["cmd"], "--shape", case["shape"], "--batch", case["batch"],
            "--threads", case["threads"], "--seconds", f"{secs:g}"]
    argv += (["--json"] if json_ok else []) + case["extra"]
    try:
        p = subprocess.run(argv, capture_output=True, text=True, timeout=120 + 20 * secs)
    except subprocess.TimeoutExpired:
        return None, f"timed out after {120 + 20 * secs:.0f} s"
    if p.returncode != 0:
        return None, reason(p)
    for line in reversed(p.stdout.splitlines()):
        if line.startswith("{"):
            try:
                data = json.loads(line)
            except ValueError:
                continue
            for key in ("samples_per_sec", "samples_per_second", "throughput"):
                if isinstance(data.get(key), (int, float)):
                    return float(data[key]), None
    found = re.findall(r"([0-9][0-9,]*\.?[0-9]*)\s*samples/s", p.stdout)
    if found:
        return float(found[-1].replace(",", "")), None
    return None, "no samples/s in its output: " + (p.stdout.strip().splitlines() or [""])[-1][:100]


def label(case):
    return f"{case['name']} batch {case['batch']} threads {case['threads']}"


# Probe (and warm up): a row either binary rejects is skipped.
for case in cases:
    for side in ("old", "new"):
        rate, why = run(side, case, min(seconds, 0.1))
        if why is not None:
            case["skip"] = f"{side}: {why}"
            print(f"tools/race.sh: skipping {label(case)}: {case['skip']}", file=sys.stderr)
            break

live = [c for c in cases if c["skip"] is None]
for r in range(rounds):
    order = ("old", "new") if r % 2 == 0 else ("new", "old")
    for case in live:
        if case["skip"] is not None:
            continue
        got = {}
        for side in order:
            rate, why = run(side, case, seconds)
            if why is not None:
                case["skip"] = f"{side} failed in round {r + 1}: {why}"
                print(f"tools/race.sh: {label(case)}: {case['skip']}", file=sys.stderr)
                break
            got[side] = rate
        if len(got) < 2:
            continue
        case["old"].append(got["old"])
        case["new"].append(got["new"])
        ratio = got["new"] / got["old"] if got["old"] > 0 else float("nan")
        case["ratios"].append(ratio)
        print(f"round {r + 1}/{rounds} {label(case)} ({order[0]} first): "
              f"old {got['old']:,.0f}/s new {got['new']:,.0f}/s new/old {ratio:.3f}",
              file=sys.stderr, flush=True)


def cell(text):
    return str(text).replace("|", "\\|")


print("| shape | batch | threads | old samples/s (median) | new samples/s (median) "
      "| new/old (median of per-round ratios) | rounds |")
print("|---|---:|---:|---:|---:|---:|---:|")
for case in cases:
    head = f"| {case['name']} | {case['batch']} | {case['threads']} "
    n = len(case["ratios"])
    if n == 0:
        print(head + f"| skipped: {cell(case['skip'])} | | | 0 |")
        continue
    rs = case["ratios"]
    spread = f" ({min(rs):.3f}–{max(rs):.3f})" if n > 1 else ""
    note = f" (stopped: {cell(case['skip'])})" if case["skip"] else ""
    print(head + f"| {statistics.median(case['old']):,.0f} | {statistics.median(case['new']):,.0f} "
          f"| **{statistics.median(rs):.3f}**{spread}{note} | {n} |")
PY

python3 -c "$race_py" "$old_bin" "$new_bin" "$rounds" "$seconds" "$threads"
