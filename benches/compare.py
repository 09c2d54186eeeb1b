#!/usr/bin/env python3
"""Side-by-side speed of microgpt (this crate) and the PyTorch version of the same algorithm.

Runs each configuration's two programs alternately, --runs times, on the same machine, reads the
`train time: X s` line both print (training loop only), and reports the medians, their ratio, the
tokens per second and the peak memory (max RSS) of each process, as a Markdown table.

    cargo build --release --all-features
    python3 benches/compare.py --torch path/to/torch_microgpt.py --runs 5

Configurations (pick with --only):
  reference  batch 1, 1,000 steps, the reference model, CPU (PyTorch with --threads 1)
  batch32    batch 32, 1,000 steps, the reference model, CPU (PyTorch with --threads 1)
  gpu-large  the `large` preset on the GPU (PyTorch --device cuda, same sizes), batch 64, 300 steps
  cpu-large  the `large` preset on our CPU backend, batch 64, 30 steps (the GPU's yardstick)
"""
import argparse
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TRAIN = re.compile(r"train time: ([0-9.]+) s .*?([0-9.]+) tokens/s")


def run_rss(cmd, cwd, env=None):
    """Run `cmd`; return (stdout, train seconds, tokens/s, the process's max RSS in MiB)."""
    proc = subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, **(env or {})})
    # read everything, then reap with wait4 for the child's own peak RSS
    out = proc.stdout.read()
    err = proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed:\n{err}")
    m = TRAIN.search(out)
    if not m:
        sys.exit(f"no 'train time' line from {' '.join(cmd)}:\n{out}")
    return out, float(m.group(1)), float(m.group(2)), usage.ru_maxrss / 1024


def sized_torch(path, work):
    """torch_microgpt.py with --n-layer/--n-embd/--n-head flags (it fixes the reference sizes)."""
    src = open(path).read()
    fixed = "n_layer, n_embd, block_size, n_head = 1, 16, 16, 4"
    if fixed not in src:
        sys.exit(f"{path}: cannot find the model sizes line to extend")
    src = src.replace("args = p.parse_args()", "p.add_argument('--n-layer', type=int, default=1)\n"
                      "p.add_argument('--n-embd', type=int, default=16)\np.add_argument('--n-head', type=int, default=4)\n"
                      "args = p.parse_args()")
    src = src.replace(fixed, "n_layer, n_embd, block_size, n_head = args.n_layer, args.n_embd, 16, args.n_head")
    out = os.path.join(work, "torch_microgpt_sized.py")
    open(out, "w").write(src)
    return out


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--torch", required=True, help="path to torch_microgpt.py")
    p.add_argument("--python", default=sys.executable, help="the Python that has torch")
    p.add_argument("--microgpt", default=os.path.join(ROOT, "target/release/microgpt"))
    p.add_argument("--data", default=os.path.join(ROOT, "data/names.txt"))
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--only", nargs="*", default=["reference", "batch32"],
                   choices=["reference", "batch32", "gpu-large", "cpu-large"])
    args = p.parse_args()

    data = os.path.abspath(args.data)
    work = tempfile.mkdtemp()
    ours_base = [args.microgpt, "train", "--data", data, "--quiet", "--num-samples", "0"]
    torch_base = [args.python, sized_torch(os.path.abspath(args.torch), work), "--input", data]
    configs = {
        "reference": (ours_base + ["--device", "cpu", "--steps", "1000"],
                      torch_base + ["--steps", "1000", "--threads", "1"]),
        "batch32": (ours_base + ["--device", "cpu", "--dtype", "f32", "--batch-size", "32", "--steps", "1000"],
                    torch_base + ["--steps", "1000", "--batch", "32", "--threads", "1"]),
        "gpu-large": (ours_base + ["--device", "gpu", "--preset", "large", "--batch-size", "64", "--steps", "300",
                                   "--log-every", "300"],
                      torch_base + ["--steps", "300", "--batch", "64", "--device", "cuda", "--n-layer", "6",
                                    "--n-embd", "384", "--n-head", "6"]),
        "cpu-large": (ours_base + ["--device", "cpu", "--dtype", "f32", "--preset", "large", "--batch-size", "64",
                                   "--steps", "30", "--log-every", "30"], None),
    }
    print(f"machine: {platform.node()} {platform.machine()}, {os.cpu_count()} cores; runs: {args.runs}\n")
    print("| run | ours (s) | PyTorch (s) | PyTorch / ours | ours tokens/s | PyTorch tokens/s | ours max RSS (MiB) | PyTorch max RSS (MiB) |")
    print("|---|---|---|---|---|---|---|---|")
    for name in args.only:
        ours_cmd, torch_cmd = configs[name]
        ours, theirs = [], []
        for _ in range(args.runs):
            ours.append(run_rss(ours_cmd, work, {"XDG_RUNTIME_DIR": work}))
            if torch_cmd:
                theirs.append(run_rss(torch_cmd, work))
        med = lambda rows, i: statistics.median(r[i] for r in rows) if rows else float("nan")
        ratio = statistics.median(t[1] / o[1] for o, t in zip(ours, theirs)) if theirs else float("nan")
        print(f"| {name} | {med(ours, 1):.3f} | {med(theirs, 1):.3f} | {ratio:.2f}x | {med(ours, 2):.0f} | "
              f"{med(theirs, 2):.0f} | {med(ours, 3):.0f} | {med(theirs, 3):.0f} |")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
