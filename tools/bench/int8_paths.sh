#!/usr/bin/env bash
# tools/bench/int8_paths.sh: race the int8 kernels of this CPU against each other, in
# interleaved rounds, on one binary.
#
# Usage: tools/bench/int8_paths.sh [BASE [PATH...]]
#   BASE   the int8 path the others are divided by (default avx512-vnni)
#   PATH   the paths raced against it (default amx); names as DEEPFM_INT8 takes them
#          (scalar, avx2, avx-vnni, avx512-vnni, amx; `deepfm bench` refuses one this CPU lacks)
# Environment: SHAPES (default "criteo-like movielens-like"), BATCHES (default "1 4096"),
#   ROUNDS (default 5), BENCH_SECONDS (default 2), DEEPFM (default target/release/deepfm).
#
# Each round runs `DEEPFM_INT8=P deepfm bench --mlp int8 --threads 1 --json` for every path,
# alternating the order between rounds, and the report is the median over rounds of each
# per-round ratio PATH/BASE (with its range): this VM drifts 10-30% between minutes, so only
# ratios taken seconds apart are worth quoting. The int8 scores are bit-identical on every
# path (exact integer sums), so this measures speed only.
set -euo pipefail
cd "$(dirname "$0")/../.."
base=${1:-avx512-vnni}
shift || true
paths=("${@:-amx}")
bin=${DEEPFM:-target/release/deepfm}
rounds=${ROUNDS:-5}
[ -x "$bin" ] || cargo build --release --quiet
samples() { # path shape batch -> samples/s
  DEEPFM_INT8=$1 "$bin" bench --shape "$2" --batch "$3" --threads 1 --seconds "${BENCH_SECONDS:-2}" \
    --mlp int8 --json | tail -n 1 | python3 -c 'import json, sys; print(json.load(sys.stdin)["samples_per_sec"])'
}
echo "CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs); load $(cut -d' ' -f1 /proc/loadavg)"
echo
echo "| shape | batch | path | median samples/s | $base samples/s | path/$base (median of per-round ratios) |"
echo "|---|---:|---|---:|---:|---:|"
for shape in ${SHAPES:-criteo-like movielens-like}; do
  for batch in ${BATCHES:-1 4096}; do
    declare -A runs=() last=()
    for ((round = 1; round <= rounds; round++)); do
      order=("$base" "${paths[@]}")
      if ((round % 2 == 0)); then order=("${paths[@]}" "$base"); fi
      for p in "${order[@]}"; do
        last[$p]=$(samples "$p" "$shape" "$batch")
        runs[$p]+="${last[$p]} "
      done
      echo "round $round/$rounds $shape batch $batch: $(for p in "${order[@]}"; do printf '%s ' "$p=${last[$p]}"; done)" >&2
    done
    for p in "${paths[@]}"; do
      python3 - "$shape" "$batch" "$p" "${runs[$p]}" "${runs[$base]}" <<'PY'
import statistics, sys
shape, batch, path, mine, base = sys.argv[1:]
mine, base = [float(v) for v in mine.split()], [float(v) for v in base.split()]
ratios = sorted(m / b for m, b in zip(mine, base))
print(f"| {shape} | {batch} | {path} | {statistics.median(mine):,.0f} | {statistics.median(base):,.0f} | "
      f"**{statistics.median(ratios):.3f}** ({ratios[0]:.3f}-{ratios[-1]:.3f}) |")
PY
    done
    unset runs last
  done
done
