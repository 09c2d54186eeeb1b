#!/usr/bin/env bash
# Benchmark microgpt on a machine with an NVIDIA GPU that has no Rust toolchain and no network.
#
#   benches/gpu.sh pack [--torch PATH] [--bin PATH]   on the build machine (with Rust and apt)
#   benches/gpu.sh run  [BUNDLE]                       on the GPU machine (PyTorch installed)
#
# `pack` builds nothing: it takes the release binary (cargo build --release --all-features),
# strips and xz-compresses it, and puts it in gpu-bundle/ with Debian's libvulkan1 package (the
# Vulkan loader, which GPU machines often lack) and the GL dispatch libraries (libglvnd) that
# NVIDIA's Vulkan driver loads, names.txt, shakespeare.txt and the PyTorch script: about 40 MB (39 MB measured with the
# all-features binary, CUDA included; the GPU machine takes 64 MiB a call).
#
# `run` unpacks them, finds the NVIDIA Vulkan driver, checks that the GPU learns (the reference
# run's held-out loss within 0.02 of 2.3689), then times the reference run and the small, medium
# and large presets and nanoGPT's baby GPT on Shakespeare (block 256, batch 64, f32), on both
# GPU backends (wgpu, and CUDA when the binary has it), against `torch_microgpt.py --device cuda`
# at the same sizes
# (benches/compare.py, after one short warm-up run of ours per size that fills CubeCL's kernel
# and autotune caches), and prints one Markdown table headed by the GPU's name. Then GPT-2 124M
# (random weights made by transformers, when the machine has it): greedy sampling and fine-tuning
# steps on both GPU backends against transformers on PyTorch CUDA (benches/gpt2.py --device
# cuda), a second table.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
BUNDLE="$ROOT/gpu-bundle"

pack() {
    local bin="${CARGO_TARGET_DIR:-$ROOT/target}/release/microgpt"
    local torch="$ROOT/benches/torch_microgpt.py"
    while [ $# -gt 0 ]; do
        case "$1" in
            --bin) bin="$2"; shift 2 ;;
            --torch) torch="$2"; shift 2 ;;
            *) echo "error: unknown argument $1 (pack takes --bin PATH and --torch PATH)" >&2; exit 2 ;;
        esac
    done
    [ -x "$bin" ] || { echo "error: no release binary at $bin: run cargo build --release --all-features, or pass --bin PATH" >&2; exit 1; }
    [ -f "$torch" ] || { echo "error: no PyTorch script at $torch: pass --torch PATH to torch_microgpt.py" >&2; exit 1; }
    [ -f "$ROOT/data/names.txt" ] || { echo "error: data/names.txt is missing: run cargo run --release once" >&2; exit 1; }
    [ -f "$ROOT/data/shakespeare.txt" ] || { echo "error: data/shakespeare.txt is missing: run cargo run --release -- train --dataset shakespeare --steps 1 once" >&2; exit 1; }
    rm -rf "$BUNDLE" && mkdir -p "$BUNDLE"
    strip -o "$BUNDLE/microgpt" "$bin"
    xz -T0 -6 "$BUNDLE/microgpt"
    # the Vulkan loader, and the GL dispatch libraries NVIDIA's Vulkan driver library loads
    (cd "$BUNDLE" && apt-get download libvulkan1 libglvnd0 libglx0 libgl1 libegl1 libgles2 libopengl0 >/dev/null 2>&1)
    cp "$torch" "$BUNDLE/torch_microgpt.py"
    cp "$ROOT/benches/gpt2.py" "$BUNDLE/gpt2.py"
    # GPT-2's tokenizer ranks, which the GPU machine's tiktoken cannot download
    local ranks; ranks="$(ls "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/tiktoken-rs-*/assets/r50k_base.tiktoken 2>/dev/null | head -1)"
    [ -n "$ranks" ] && cp "$ranks" "$BUNDLE/r50k_base.tiktoken"
    cp "$ROOT/data/names.txt" "$BUNDLE/names.txt"
    xz -T0 -6 -c "$ROOT/data/shakespeare.txt" > "$BUNDLE/shakespeare.txt.xz"
    du -sh "$BUNDLE"/*
}

# The NVIDIA Vulkan driver manifests this machine has, likeliest first.
nvidia_icds() {
    local d f
    for d in /usr/local/nvidia/share/vulkan/icd.d /usr/share/vulkan/icd.d /etc/vulkan/icd.d \
             /usr/local/share/vulkan/icd.d; do
        for f in "$d"/nvidia*.json; do
            [ -f "$f" ] && echo "$f"
        done
    done
    find / -xdev -name 'nvidia_icd*.json' 2>/dev/null
}

run() {
    local bundle="${1:-$BUNDLE}"
    [ -d "$bundle" ] || { echo "error: no bundle at $bundle: run benches/gpu.sh pack on the build machine first" >&2; exit 1; }
    bundle="$(cd "$bundle" && pwd)"
    local work; work="$(mktemp -d)"
    local gpu; gpu="$(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null | head -1 || true)"
    [ -n "$gpu" ] || { echo "error: nvidia-smi found no NVIDIA GPU" >&2; exit 1; }

    # the binary
    python3 -c "import lzma,shutil,sys; shutil.copyfileobj(lzma.open(sys.argv[1]), open(sys.argv[2],'wb'))" \
        "$bundle/microgpt.xz" "$work/microgpt"
    chmod +x "$work/microgpt"

    # the Vulkan loader and GL dispatch libraries, unpacked beside it rather than into /,
    # unless the system has a loader
    if ! ldconfig -p 2>/dev/null | grep -q 'libvulkan.so.1'; then
        local deb
        for deb in "$bundle"/*.deb; do dpkg-deb -x "$deb" "$work/vulkan"; done
        export LD_LIBRARY_PATH="$(dirname "$(find "$work/vulkan" -name 'libvulkan.so.1' | head -1)")${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
    fi
    export XDG_RUNTIME_DIR="$work"
    cd "$work"
    mkdir -p data && cp "$bundle/names.txt" data/names.txt
    python3 -c "import lzma,shutil,sys; shutil.copyfileobj(lzma.open(sys.argv[1]), open(sys.argv[2],'wb'))" \
        "$bundle/shakespeare.txt.xz" data/shakespeare.txt

    # the first driver manifest with which the GPU opens (the loader's own search first)
    local icd="" found=""
    for icd in "" $(nvidia_icds | awk '!seen[$0]++'); do
        if [ -n "$icd" ]; then export VK_DRIVER_FILES="$icd" VK_ICD_FILENAMES="$icd"; fi
        if ./microgpt --device gpu --steps 1 --num-samples 0 -q >/dev/null 2>"$work/open.err"; then
            found=1; break
        fi
    done
    [ -n "$found" ] || { cat "$work/open.err" >&2; echo "error: no Vulkan driver manifest opened the GPU (tried: $(nvidia_icds | tr '\n' ' '))" >&2; exit 1; }
    echo "GPU: $gpu; Vulkan driver: ${icd:-the loader default}" >&2

    # correctness first: the reference run on the GPU must learn as the reference does
    local ref; ref="$(timeout 300 ./microgpt --device gpu 2>&1)" || { echo "$ref" | tail -5 >&2; echo "error: the reference run failed on the GPU" >&2; exit 1; }
    local val; val="$(echo "$ref" | sed -n 's/^val loss: //p')"
    echo "$ref" | grep -E '^(step 1000|val loss|train time|sample  1)' >&2
    python3 -c "import sys; v=float(sys.argv[1]); sys.exit(0 if abs(v-2.3689)<=0.02 else 1)" "$val" \
        || { echo "error: reference val loss $val on the GPU is not within 0.02 of 2.3689" >&2; exit 1; }

    # the CUDA backend, when the binary has it: the same check
    local rows="gpu-reference gpu-small gpu-medium gpu-large gpu-baby" cuda_note="not in this binary"
    if ./microgpt --device cuda --steps 1 --num-samples 0 -q >/dev/null 2>"$work/cuda.err"; then
        local cref; cref="$(timeout 300 ./microgpt --device cuda 2>&1)" || { echo "$cref" | tail -5 >&2; echo "error: the reference run failed on CUDA" >&2; exit 1; }
        local cval; cval="$(echo "$cref" | sed -n 's/^val loss: //p')"
        python3 -c "import sys; v=float(sys.argv[1]); sys.exit(0 if abs(v-2.3689)<=0.02 else 1)" "$cval" \
            || { echo "error: reference val loss $cval on CUDA is not within 0.02 of 2.3689" >&2; exit 1; }
        cuda_note="\`val loss: $cval\`; $(echo "$cref" | grep '^train time')"
        rows="gpu-reference cuda-reference gpu-small cuda-small gpu-medium cuda-medium gpu-large cuda-large gpu-baby cuda-baby"
    else
        cuda_note="not run ($(head -1 "$work/cuda.err"))"
    fi

    echo "### $gpu (benches/gpu.sh, $(date -u +%Y-%m-%d))"
    echo
    echo "Reference run on the GPU: wgpu \`val loss: $val\` (reference 2.3689); $(echo "$ref" | grep '^train time'). CUDA: $cuda_note."
    echo
    python3 "$ROOT/benches/compare.py" --torch "$bundle/torch_microgpt.py" --python python3 \
        --microgpt "$work/microgpt" --data "$work/data/names.txt" --text "$work/data/shakespeare.txt" \
        --runs 1 --timeout 240 --warmup --only $rows | sed '1,2d'

    # GPT-2 124M: needs transformers (and tiktoken) beside PyTorch on this machine
    echo
    if python3 -c "import transformers, tiktoken" 2>/dev/null && [ -f "$bundle/r50k_base.tiktoken" ]; then
        R50K_BASE="$bundle/r50k_base.tiktoken" timeout 900 python3 "$bundle/gpt2.py" --device cuda --runs 1 \
            --microgpt "$work/microgpt" --model "$work/gpt2-124m" --text "$work/data/shakespeare.txt" \
            || echo "GPT-2 rows: failed (above)"
    else
        echo "GPT-2 rows: not run (python3 lacks transformers or tiktoken, or the bundle lacks r50k_base.tiktoken)"
    fi
}

case "${1:-}" in
    pack) shift; pack "$@" ;;
    run) shift; run "$@" ;;
    *) echo "usage: benches/gpu.sh pack [--bin PATH] [--torch PATH] | run [BUNDLE]" >&2; exit 2 ;;
esac
