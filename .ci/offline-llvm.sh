#!/usr/bin/env bash
# Install the LLVM that Burn's CUDA backend builds against, from PyPI, for machines that reach
# the package registries but not GitHub. A normal build (`cargo build --features cuda` with
# internet) needs none of this: tracel-llvm-bundler's build script downloads its LLVM from
# GitHub by itself.
#
#   .ci/offline-llvm.sh            install into ~/.local/share/tracel/tracel-llvm-23.1.0-4/
#   .ci/offline-llvm.sh --check    say whether it is installed (exit 0) or not (exit 1)
#
# Burn 0.22.1's CUDA backend compiles its kernels through LLVM 23.1 to PTX (cubecl-cuda ->
# cubecl-llvm -> tracel-llvm-bundler 23.1.0-4). The bundler uses the LLVM in its data directory
# when the sentinel file `.tracel-llvm-installed` is there. PyPI's mlc-llvm-static and
# mlc-llvm-static-extra-targets (23.1.1.post0, manylinux x86-64, about 92 MB) hold a relocatable
# LLVM 23.1.1 whose `bin/llvm-config --link-static --libs` lists the NVPTX libraries; unpacked
# there with the sentinel, the bundler builds against it. Linux x86-64 only (the wheels' platform).
set -euo pipefail

VERSION="23.1.1.post0"
DEST="${XDG_DATA_HOME:-$HOME/.local/share}/tracel/tracel-llvm-23.1.0-4"
SENTINEL="$DEST/.tracel-llvm-installed"

if [ "${1:-}" = "--check" ]; then
    [ -f "$SENTINEL" ] && { echo "LLVM for the CUDA backend: installed in $DEST"; exit 0; }
    echo "LLVM for the CUDA backend: not installed (run .ci/offline-llvm.sh)"; exit 1
fi
if [ -f "$SENTINEL" ] && [ -x "$DEST/bin/llvm-config" ]; then
    echo "LLVM for the CUDA backend is already in $DEST"
    exit 0
fi
[ "$(uname -sm)" = "Linux x86_64" ] || { echo "error: the PyPI LLVM wheels are for Linux x86-64; on $(uname -sm) build with internet (the bundler downloads its own LLVM)" >&2; exit 1; }
command -v python3 >/dev/null || { echo "error: python3 is needed (pip downloads the wheels and llvm-config is a Python script)" >&2; exit 1; }

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
echo "downloading mlc-llvm-static $VERSION and its extra targets (about 92 MB) from PyPI"
python3 -m pip download --quiet --no-deps --only-binary=:all: --platform manylinux_2_28_x86_64 \
    --python-version 3.11 --dest "$work" "mlc-llvm-static==$VERSION" "mlc-llvm-static-extra-targets==$VERSION"
for wheel in "$work"/*.whl; do
    python3 -c "import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extractall(sys.argv[2])" "$wheel" "$work/unpacked"
done
static="$work/unpacked/mlc_llvm_static/static"
[ -x "$static/bin/llvm-config" ] || chmod +x "$static/bin/llvm-config" 2>/dev/null || true
[ -f "$static/bin/llvm-config" ] || { echo "error: the wheels hold no mlc_llvm_static/static/bin/llvm-config" >&2; exit 1; }
"$static/bin/llvm-config" --targets-built | grep -qw NVPTX || { echo "error: this LLVM has no NVPTX target" >&2; exit 1; }

rm -rf "$DEST"
mkdir -p "$(dirname "$DEST")"
mv "$static" "$DEST"
chmod +x "$DEST/bin/"* 2>/dev/null || true
touch "$SENTINEL"
echo "LLVM $("$DEST/bin/llvm-config" --version) for the CUDA backend installed in $DEST"
