#!/usr/bin/env python3
"""Side-by-side speed of microgpt (this crate) and the PyTorch version of the same algorithm.

Runs each configuration's programs alternately, --runs times, on the same machine, reads the
`train time: X s (..., N tokens/s)` line both print (training loop only), and reports the
medians as a Markdown table: tokens per second (target tokens), our speed over PyTorch's best,
the held-out loss each reached, and the peak memory (max RSS) of each process.

    cargo build --release --all-features     # target/release/microgpt
    target/release/microgpt --device cpu     # the reference run; the first run downloads data/names.txt
    pip install torch
    python3 benches/compare.py --runs 3 --only small medium large

PyTorch runs benches/torch_microgpt.py (or --torch PATH), the PyTorch version of the same
algorithm, with the preset's --n-layer, --n-embd and --n-head, so that both train the same model
(same sizes, data, held-out split, init order, optimizer and padding rule). CPU rows run PyTorch
with 1 and with 2 threads and compare against the faster; ours uses every core.

Configurations (pick with --only; preset, batch, steps):
  reference      the reference run, batch 1, 1,000 steps, CPU (ours f64, PyTorch f32)
  batch32        reference sizes, batch 32, 1,000 steps, CPU, f32
  small          small  (2 x 64),  batch 32, 300 steps, CPU, f32
  medium         medium (4 x 128), batch 32, 100 steps, CPU, f32
  large          large  (6 x 384), batch 64, 10 steps, CPU, f32
  gpu-reference  the reference run on the GPU (PyTorch --device cuda), batch 1, 1,000 steps
  gpu-small      small  on the GPU, batch 32, 500 steps
  gpu-medium     medium on the GPU, batch 32, 500 steps
  gpu-large      large  on the GPU, batch 64, 300 steps
  shakespeare    shakespeare-char-cpu (4 x 128, block 64) on --text, batch 12, 300 steps, CPU, f32
  gpu-baby       shakespeare-char (nanoGPT's baby GPT: 6 x 384, block 256) on --text, batch 64,
                 300 steps, GPU, f32
  cuda-*         each gpu-* row on Burn's CUDA backend (ours --device cuda) instead of wgpu

The two text rows train on one text (--text, default data/shakespeare.txt) in windows, with the
presets' recipe (warmup, cosine, AdamW, clipping, dropout 0.2 for the baby GPT); PyTorch runs
torch_microgpt.py --text with the same flags.
"""
import argparse
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import threading

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TRAIN = re.compile(r"train time: ([0-9.]+) s .*?([0-9.]+) tokens/s")
# ours: `val loss: 2.3689`; PyTorch: `eval nll/token on last 2000 docs: 2.3689`
VAL = re.compile(r"(?:val loss|eval nll/token on (?:last \d+ docs|\d+ held-out windows)): ([0-9.]+|nan|inf)")

# name: (n_layer, n_embd, n_head, block_size)
PRESETS = {"reference": (1, 16, 4, 16), "small": (2, 64, 4, 16), "medium": (4, 128, 4, 16), "large": (6, 384, 6, 16),
           "shakespeare-char-cpu": (4, 128, 4, 64), "shakespeare-char": (6, 384, 6, 256)}
# the text presets' recipe, as torch_microgpt.py flags (dropout: the preset's)
RECIPE = ["--warmup", "100", "--cosine", "--lr", "1e-3", "--min-lr", "1e-4", "--weight-decay", "0.1",
          "--beta1", "0.9", "--beta2", "0.99", "--grad-clip", "1"]
DROPOUT = {"shakespeare-char-cpu": "0", "shakespeare-char": "0.2"}

# name: (preset, batch, steps, device)
CONFIGS = {
    "reference": ("reference", 1, 1000, "cpu"),
    "batch32": ("reference", 32, 1000, "cpu"),
    "small": ("small", 32, 300, "cpu"),
    "medium": ("medium", 32, 100, "cpu"),
    "large": ("large", 64, 10, "cpu"),
    "gpu-reference": ("reference", 1, 1000, "gpu"),
    "gpu-small": ("small", 32, 500, "gpu"),
    "gpu-medium": ("medium", 32, 500, "gpu"),
    "gpu-large": ("large", 64, 300, "gpu"),
    "shakespeare": ("shakespeare-char-cpu", 12, 300, "cpu"),
    "gpu-baby": ("shakespeare-char", 64, 300, "gpu"),
}
# the same GPU rows on Burn's CUDA backend (--device cuda), against the same PyTorch CUDA runs
CONFIGS.update({"cuda-" + name[4:]: (p, b, s, "cuda") for name, (p, b, s, d) in list(CONFIGS.items()) if d == "gpu"})


def run(cmd, cwd, timeout, env=None):
    """Run `cmd`; return (train seconds, tokens/s, val loss, the process's max RSS in MiB)."""
    proc = subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, **(env or {})})
    # read both pipes in threads and reap with wait4 here, for the child's own peak RSS
    outputs = {}
    readers = [threading.Thread(target=lambda k=k, f=f: outputs.__setitem__(k, f.read()))
               for k, f in (("out", proc.stdout), ("err", proc.stderr))]
    for t in readers:
        t.start()
    watchdog = threading.Timer(timeout, proc.kill)
    watchdog.start()
    _, status, usage = os.wait4(proc.pid, 0)
    watchdog.cancel()
    for t in readers:
        t.join()
    proc.returncode = os.waitstatus_to_exitcode(status)
    out, err = outputs["out"], outputs["err"]
    if proc.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed (exit {proc.returncode}, {timeout:.0f} s limit):\n{err.strip()}")
    m = TRAIN.search(out)
    if not m:
        sys.exit(f"no 'train time' line from {' '.join(cmd)}:\n{out}\n{err}")
    v = VAL.search(out)
    return float(m.group(1)), float(m.group(2)), float(v.group(1)) if v else float("nan"), usage.ru_maxrss / 1024


def commands(name, args, data, torch_script):
    """Our command and PyTorch's commands (one per thread count on the CPU) for a configuration."""
    preset, batch, steps, device = CONFIGS[name]
    n_layer, n_embd, n_head, block_size = PRESETS[preset]
    text = preset in DROPOUT
    if text:
        data = os.path.abspath(args.text)
    ours = [args.microgpt, "train", "--data", data, "--quiet", "--num-samples", "0", "--preset", preset,
            "--batch-size", str(batch), "--steps", str(steps), "--device", device]
    if name != "reference":
        ours += ["--dtype", "f32"]
    if text:
        ours += ["--num-chars", "1"]
    torch = [args.python, torch_script, "--input", data, "--steps", str(steps), "--batch", str(batch),
             "--n-layer", str(n_layer), "--n-embd", str(n_embd), "--n-head", str(n_head)]
    if text:
        torch += ["--text", "--block-size", str(block_size), "--dropout", DROPOUT[preset]] + RECIPE
        if preset == "shakespeare-char":
            torch += ["--init-std", "0.02"]
    if device in ("gpu", "cuda"):
        return ours, {"cuda": torch + ["--device", "cuda"]}
    threads = [1] if name in ("reference", "batch32") else [1, 2]
    return ours, {f"{t} thread{'s' if t > 1 else ''}": torch + ["--threads", str(t)] for t in threads}


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--torch", default=os.path.join(ROOT, "benches/torch_microgpt.py"),
                   help="the PyTorch script (default: benches/torch_microgpt.py)")
    p.add_argument("--python", default=sys.executable, help="the Python that has torch")
    p.add_argument("--microgpt", default=os.path.join(ROOT, "target/release/microgpt"),
                   help="our binary (default: target/release/microgpt)")
    p.add_argument("--data", default=os.path.join(ROOT, "data/names.txt"))
    p.add_argument("--text", default=os.path.join(ROOT, "data/shakespeare.txt"), help="the text rows' text")
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--timeout", type=float, default=600, help="seconds one program may run")
    p.add_argument("--no-torch", action="store_true", help="time ours alone")
    p.add_argument("--warmup", action="store_true",
                   help="run ours for 3 steps first: fills CubeCL's on-disk kernel and autotune caches on a GPU")
    p.add_argument("--only", nargs="*", default=["reference", "batch32", "small", "medium", "large"],
                   choices=list(CONFIGS))
    args = p.parse_args()

    data = os.path.abspath(args.data)
    if not os.path.isfile(data):
        sys.exit(f"compare.py: no data file at {data}: run `target/release/microgpt --device cpu` once "
                 "(it downloads data/names.txt), or pass --data PATH")
    if not os.access(args.microgpt, os.X_OK):
        sys.exit(f"compare.py: no microgpt binary at {args.microgpt}: run `cargo build --release "
                 "--all-features`, or pass --microgpt PATH")
    torch_script = os.path.abspath(args.torch)
    if not args.no_torch:
        if not os.path.isfile(torch_script):
            sys.exit(f"compare.py: no PyTorch script at {torch_script}: pass --torch PATH, or --no-torch")
        if subprocess.run([args.python, "-c", "import torch"], capture_output=True).returncode != 0:
            sys.exit(f"compare.py: PyTorch is not importable by {args.python}: pip install torch "
                     "(or pass --python PATH, or --no-torch to time ours alone)")
    work = tempfile.mkdtemp()
    env = {"XDG_RUNTIME_DIR": work}
    print(f"machine: {platform.node()} {platform.machine()}, {os.cpu_count()} cores; runs: {args.runs} (medians)\n")
    print("| run (preset, batch, steps, device) | ours tokens/s | PyTorch tokens/s | ours / best PyTorch "
          "| ours train s | PyTorch train s | val loss ours / PyTorch | max RSS MiB ours / PyTorch |")
    print("|---|---|---|---|---|---|---|---|")
    for name in args.only:
        preset, batch, steps, device = CONFIGS[name]
        ours_cmd, torch_cmds = commands(name, args, data, torch_script)
        if args.no_torch:
            torch_cmds = {}
        if args.warmup:
            short = [a if a != str(steps) else "3" for a in ours_cmd]
            run(short + (["--warmup-steps", "1"] if preset in DROPOUT else []), work, args.timeout, env)
        ours, theirs = [], {k: [] for k in torch_cmds}
        for _ in range(args.runs):
            ours.append(run(ours_cmd, work, args.timeout, env))
            for k, cmd in torch_cmds.items():
                theirs[k].append(run(cmd, work, args.timeout))
        med = lambda rows, i: statistics.median(r[i] for r in rows) if rows else float("nan")
        best = max(theirs, key=lambda k: med(theirs[k], 1)) if theirs else None
        torch_tps = ", ".join(f"{med(rows, 1):,.0f} ({k})" for k, rows in theirs.items()) or "-"
        ratio = med(ours, 1) / med(theirs[best], 1) if best else float("nan")
        b = theirs.get(best, [])
        print(f"| {name} ({preset}, {batch}, {steps:,}, {device}) | {med(ours, 1):,.0f} | {torch_tps} | "
              f"**{ratio:.2f}x** | {med(ours, 0):.3f} | {med(b, 0):.3f} | {med(ours, 2):.4f} / {med(b, 2):.4f} | "
              f"{med(ours, 3):.0f} / {med(b, 3):.0f} |")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
