#!/usr/bin/env bash
# The GPU path's host cost: CPU seconds of the submitting (main) thread against two binaries.
#
#   benches/host-time.sh BIN_A BIN_B [ROUNDS] [TRAIN FLAGS...]     (default 5 rounds)
#
# Runs `BIN train --device gpu --steps 300 -q --num-samples 0` (or the flags given) with each
# binary in turn, ROUNDS times, after one 3-step warm-up run each (CubeCL compiles and
# autotunes its kernels on first use and caches them), and reads the main thread's user +
# system time from /proc/PID/task/PID/stat just before the process exits (Linux only). On
# Mesa's software Vulkan the kernels run on the same cores in lavapipe's own threads, so the
# main thread's time is the part that carries over to a real GPU: Burn's autodiff and fusion
# bookkeeping, CubeCL, and the driver's recording and submission of the kernels.
# Prints each run and the medians.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
if [ $# -lt 2 ]; then
    echo "usage: benches/host-time.sh BIN_A BIN_B [ROUNDS] [TRAIN FLAGS...]" >&2
    exit 2
fi
A="$1" B="$2"
ROUNDS="${3:-5}"
case "$ROUNDS" in
    '' | *[!0-9]*) echo "error: ROUNDS must be a number (the flags come after it), not '$ROUNDS'" >&2; exit 2 ;;
esac
shift 2; shift || true
FLAGS=("$@")
[ ${#FLAGS[@]} -gt 0 ] || FLAGS=(--steps 300)
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
mkdir -p "$WORK/data"
cp "$ROOT/data/names.txt" "$WORK/data/names.txt"
TICK=$(getconf CLK_TCK)

# prints "main-thread-seconds train-seconds" for one run of binary $1
one() {
    (cd "$WORK" && exec "$1" train --device gpu -q --num-samples 0 "${FLAGS[@]}" >"$WORK/out" 2>&1) &
    local pid=$! last=""
    while kill -0 "$pid" 2>/dev/null; do
        # the child is the subshell that execs the binary: the same pid
        last=$(cut -d' ' -f14,15 "/proc/$pid/task/$pid/stat" 2>/dev/null || echo "$last")
        sleep 0.05
    done
    wait "$pid"
    local train
    train=$(grep -o 'train time: [0-9.]*' "$WORK/out" | grep -o '[0-9.]*$' || echo "?")
    awk -v t="$last" -v hz="$TICK" -v tr="$train" 'BEGIN { split(t, a, " "); printf "%.2f %s\n", (a[1] + a[2]) / hz, tr }'
}

for bin in "$A" "$B"; do (cd "$WORK" && "$bin" train --device gpu -q --num-samples 0 --steps 3 >/dev/null); done
: >"$WORK/a"; : >"$WORK/b"
for r in $(seq "$ROUNDS"); do
    a=$(one "$A"); echo "round $r A: main thread ${a% *} s, train ${a#* } s"; echo "$a" >>"$WORK/a"
    b=$(one "$B"); echo "round $r B: main thread ${b% *} s, train ${b#* } s"; echo "$b" >>"$WORK/b"
done
median() { sort -n -k"$2" "$1" | awk -v k="$2" '{ v[NR] = $k } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
echo "median main-thread CPU s: A $(median "$WORK/a" 1), B $(median "$WORK/b" 1)"
echo "median train s:           A $(median "$WORK/a" 2), B $(median "$WORK/b" 2)"
