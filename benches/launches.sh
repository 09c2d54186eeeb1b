#!/usr/bin/env bash
# Kernel launches per training step on the GPU.
#
#   benches/launches.sh [MICROGPT_BINARY] [TRAIN FLAGS...]     (STEPS=N: N and 2N steps, default 40)
#
# Runs `microgpt train --device gpu` twice, for 40 and for 80 steps, with CubeCL's profiling
# log at its "minimal" level (one line per kernel launch, no timing, no extra syncs), and
# divides the difference by 40 steps: launches per step in steady state, without the start-up
# (weight upload, autotuning) and the final evaluation. Device reads need no count:
# `--sync-every` decides them (one read per that many steps). Works on any Vulkan
# device, Mesa's software one included; the counts are the program's, not the GPU's. A first
# run warms CubeCL's autotune cache, whose benchmark launches would be counted otherwise.
# After the count, the launches per step by kernel kind (matmuls, fused element-wise kernels,
# reductions, copies, single operations).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
BIN="${1:-${CARGO_TARGET_DIR:-$ROOT/target}/release/microgpt}"
shift || true
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
mkdir -p "$WORK/data"
cp "$ROOT/data/names.txt" "$WORK/data/names.txt"
cat > "$WORK/cubecl.toml" <<EOF
[profiling.logger]
level = "minimal"
file = "$WORK/kernels.log"
append = true
EOF

launches() {
    rm -f "$WORK/kernels.log"
    (cd "$WORK" && XDG_RUNTIME_DIR="$WORK" "$BIN" train --device gpu --quiet --num-samples 0 --steps "$1" "${@:2}" >/dev/null)
    # the logger writes from a background task; give it a moment to flush
    sleep 1
    touch "$WORK/kernels.log"
}

n="${STEPS:-40}"
launches "$n" "$@" # first: autotuning and compiling, cached for the runs that count
launches "$n" "$@"
mv "$WORK/kernels.log" "$WORK/short.log"
launches $((2 * n)) "$@"
a=$(grep -c . "$WORK/short.log" || true)
b=$(grep -c . "$WORK/kernels.log" || true)
echo "flags: ${*:-(reference run)}"
echo "kernel launches: $a for $n steps, $b for $((2 * n)) steps; per step: $(( (b - a) / n ))"
echo "per step, by kernel:"
# The extra launches of the longer run per extra step, by kind: "Executing KernelBinop |
# AddOp_f625b60b" counts as "KernelBinop | AddOp", every matmul as "MatmulEntry".
awk -v n="$n" '
    { sub(/^Executing /, ""); sub(/_[0-9a-f]+$/, ""); sub(/^MatmulEntry .*/, "MatmulEntry"); sub(/ \| TensorArgs.*/, "") }
    FNR == NR { short[$0]++; next }
    { long[$0]++ }
    END { for (k in long) { d = (long[k] - short[k]) / n; if (d > 0) printf "%8.1f  %s\n", d, k } }
' "$WORK/short.log" "$WORK/kernels.log" | sort -rn
