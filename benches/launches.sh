#!/usr/bin/env bash
# Kernel launches and device reads per training step on the GPU.
#
#   benches/launches.sh [MICROGPT_BINARY] [TRAIN FLAGS...]     (STEPS=N: N and 2N steps, default 40)
#
# Runs `microgpt train --device gpu` twice, for 40 and for 80 steps, with CubeCL's profiling
# log at its "minimal" level (one line per kernel launch, no timing, no extra syncs), and
# divides the difference by 40 steps: launches per step in steady state, without the start-up
# (weight upload, autotuning) and the final evaluation. Device reads per step come from the
# same runs (`--sync-every` decides them: one read per that many steps). Works on any Vulkan
# device, Mesa's software one included; the counts are the program's, not the GPU's. A first
# run warms CubeCL's autotune cache, whose benchmark launches would be counted otherwise.
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
    grep -c . "$WORK/kernels.log" || echo 0
}

n="${STEPS:-40}"
launches "$n" "$@" >/dev/null # first: autotuning and compiling, cached for the runs that count
a=$(launches "$n" "$@")
b=$(launches $((2 * n)) "$@")
echo "flags: ${*:-(reference run)}"
echo "kernel launches: $a for $n steps, $b for $((2 * n)) steps; per step: $(( (b - a) / n ))"
