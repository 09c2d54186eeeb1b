#!/usr/bin/env python3
"""microgpt's Shakespeare preset against nanoGPT's own train.py, on the same text, on the CPU.

nanoGPT's README runs a small character-level model on a CPU:

    python train.py config/train_shakespeare_char.py --device=cpu --compile=False --eval_iters=20
        --log_interval=1 --block_size=64 --batch_size=12 --n_layer=4 --n_head=4 --n_embd=128
        --max_iters=2000 --lr_decay_iters=2000 --dropout=0.0

and `microgpt train --preset shakespeare-char-cpu` is that run: the same sizes, batch, steps,
schedule (warmup 100, cosine 1e-3 to 1e-4), AdamW (weight decay 0.1, betas 0.9/0.99), clipping
1.0, f32, and the same 90/10 split of the text. This script runs both on one text file,
alternately, --runs times, and prints one Markdown table: tokens per second of each training
loop (medians), the held-out loss each reached, and each process's peak memory (max RSS).

    git clone https://github.com/karpathy/nanoGPT ../nanoGPT     # any checkout; only read
    pip install torch numpy
    cargo build --release
    python3 benches/nanogpt.py --nanogpt ../nanoGPT --data data/shakespeare.txt --runs 2

nanoGPT's data is prepared here the way its `data/shakespeare_char/prepare.py` does (sorted
characters, first 90% train.bin, last 10% val.bin) into a temporary directory, and train.py runs
with `--dataset` pointing there; nothing in the checkout is written. Its training speed is the
mean of its `iter N: ... time T ms` lines, leaving out the iterations that evaluate (every 250th,
whose time includes the evaluation) and the first; ours is the `train time` line, which leaves
out evaluation too. The held-out losses are each program's own estimate: nanoGPT's mean over
--eval-iters batches of 12 random held-out windows (200 here, for 2,400 windows: the README's
20 is noisier), ours the mean over 500 fixed held-out windows.

With --tokens gpt2 the two train a GPT-2 on GPT-2's BPE tokens instead (300 steps unless --steps
says otherwise): ours is `microgpt train --preset gpt2-shakespeare-cpu` (LayerNorm, GELU, biases,
tied embeddings; the same sizes and recipe as above), nanoGPT's the same command line with
`--bias=True` on data prepared as its `data/shakespeare/prepare.py` does (the text's first 90% of
characters and its last 10%, each encoded with tiktoken's `gpt2` encode_ordinary, as uint16
train.bin and val.bin, no meta.pkl, so that train.py takes GPT-2's vocabulary padded to 50304).
nanoGPT evaluates only at multiples of its eval_interval (250), so where --steps is not one it
runs with `--eval_interval=<steps>`, to report the loss at the end as ours does. Ours encodes the
whole text and holds out its last tenth of tokens, nanoGPT the tokens of its last tenth of
characters: the held-out losses are of nearly, not exactly, the same text.

    pip install tiktoken
    python3 benches/nanogpt.py --nanogpt ../nanoGPT --tokens gpt2 --runs 2
"""
import argparse
import os
import pickle
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OURS_TRAIN = re.compile(r"train time: ([0-9.]+) s .*?([0-9.]+) tokens/s")
OURS_VAL = re.compile(r"^val loss: ([0-9.]+|nan|inf)$", re.M)
THEIR_ITER = re.compile(r"^iter (\d+): loss [0-9.]+, time ([0-9.]+)ms", re.M)
THEIR_VAL = re.compile(r"^step (\d+): train loss [0-9.]+, val loss ([0-9.]+)", re.M)
EVAL_INTERVAL = 250  # config/train_shakespeare_char.py
PRESETS = {"chars": "shakespeare-char-cpu", "gpt2": "gpt2-shakespeare-cpu"}
SAMPLE_FLAGS = {"chars": ["--num-chars", "200"], "gpt2": ["--num-tokens", "20"]}
DEFAULT_STEPS = {"chars": 2000, "gpt2": 300}
BATCH, BLOCK = 12, 64
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gpt2 import cpu_model  # noqa: E402  (benches/gpt2.py: the CPU's name, on Linux and macOS)


def run(cmd, cwd, timeout):
    """Run `cmd`; return (its output, its max RSS in MiB)."""
    proc = subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    out = []
    reader = threading.Thread(target=lambda: out.append(proc.stdout.read()))
    reader.start()
    timer = threading.Timer(timeout, proc.kill)
    timer.start()
    try:
        _, status, usage = os.wait4(proc.pid, 0)
    finally:
        timer.cancel()
    reader.join()
    proc.returncode = os.waitstatus_to_exitcode(status)
    text = out[0] if out else ""
    if proc.returncode != 0:
        sys.exit(f"error: {' '.join(cmd)} exited with {proc.returncode}:\n{text[-2000:]}")
    return text, usage.ru_maxrss / 1024


def prepare(text_path, dataset_dir):
    """nanoGPT's shakespeare_char/prepare.py, on `text_path`, into `dataset_dir`."""
    import numpy as np

    with open(text_path, "r", encoding="utf-8") as f:
        data = f.read()
    chars = sorted(set(data))
    stoi = {ch: i for i, ch in enumerate(chars)}
    n = len(data)
    os.makedirs(dataset_dir, exist_ok=True)
    for name, part in (("train", data[: int(n * 0.9)]), ("val", data[int(n * 0.9) :])):
        np.array([stoi[c] for c in part], dtype=np.uint16).tofile(os.path.join(dataset_dir, f"{name}.bin"))
    meta = {"vocab_size": len(chars), "itos": dict(enumerate(chars)), "stoi": stoi}
    with open(os.path.join(dataset_dir, "meta.pkl"), "wb") as f:
        pickle.dump(meta, f)


def prepare_gpt2(text_path, dataset_dir):
    """nanoGPT's shakespeare/prepare.py, on `text_path`, into `dataset_dir` (no meta.pkl)."""
    import numpy as np

    try:
        import tiktoken
    except ImportError:
        sys.exit("error: --tokens gpt2 encodes nanoGPT's data with tiktoken: pip install tiktoken")
    with open(text_path, "r", encoding="utf-8") as f:
        data = f.read()
    try:
        enc = tiktoken.get_encoding("gpt2")
    except Exception as err:  # its first use downloads GPT-2's vocab.bpe and encoder.json
        sys.exit(f"error: tiktoken cannot load its gpt2 encoding (downloaded once, to $TIKTOKEN_CACHE_DIR): {err}")
    n = len(data)
    os.makedirs(dataset_dir, exist_ok=True)
    for name, part in (("train", data[: int(n * 0.9)]), ("val", data[int(n * 0.9) :])):
        ids = np.array(enc.encode_ordinary(part), dtype=np.uint16)
        ids.tofile(os.path.join(dataset_dir, f"{name}.bin"))


def eval_interval(args):
    """nanoGPT's --eval_interval: its config's, or the run's length where that is no multiple of it."""
    if args.tokens == "gpt2" and args.steps % EVAL_INTERVAL != 0:
        return args.steps
    return EVAL_INTERVAL


def ours(args):
    cmd = [args.microgpt, "train", "--preset", PRESETS[args.tokens], "--device", "cpu", "--data", args.data,
           "--steps", str(args.steps), "--quiet", *SAMPLE_FLAGS[args.tokens]]
    text, rss = run(cmd, ROOT, args.timeout)
    t = OURS_TRAIN.search(text)
    v = OURS_VAL.search(text)
    return float(t.group(2)), float(v.group(1)), rss, text


def theirs(args, work):
    # train.py reads data/<dataset>/ relative to its working directory: a copy of the code
    # beside the prepared data keeps the checkout untouched
    cmd = [args.python, "train.py", "config/train_shakespeare_char.py", "--device=cpu", "--compile=False",
           f"--eval_iters={args.eval_iters}", "--log_interval=1", f"--block_size={BLOCK}", f"--batch_size={BATCH}",
           "--n_layer=4", "--n_head=4", "--n_embd=128", f"--max_iters={args.steps}",
           f"--lr_decay_iters={args.steps}", "--dropout=0.0"]
    interval = eval_interval(args)
    if args.tokens == "gpt2":
        # a GPT-2's Linear and LayerNorm biases; the loss at the end, where --steps is no multiple of 250
        cmd += ["--bias=True"] + ([f"--eval_interval={interval}"] if interval != EVAL_INTERVAL else [])
    cmd += ["--dataset=bench", f"--out_dir={work}/out"]
    text, rss = run(cmd, work, args.timeout)
    times = [(int(i), float(ms)) for i, ms in THEIR_ITER.findall(text)]
    timed = [ms for i, ms in times if i > 0 and i % interval != 0]
    if not timed:
        sys.exit(f"error: no iteration times in nanoGPT's output:\n{text[-2000:]}")
    tokens_per_s = BATCH * BLOCK / (statistics.mean(timed) / 1000)
    vals = THEIR_VAL.findall(text)
    return tokens_per_s, float(vals[-1][1]), rss, text


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--nanogpt", required=True, help="a checkout of karpathy/nanoGPT (read only)")
    p.add_argument("--microgpt", default=os.path.join(ROOT, "target/release/microgpt"))
    p.add_argument("--data", default=os.path.join(ROOT, "data/shakespeare.txt"), help="the text both train on")
    p.add_argument("--python", default=sys.executable, help="the Python that has torch and numpy")
    p.add_argument("--runs", type=int, default=2, help="runs of each program, alternating")
    p.add_argument("--tokens", choices=("chars", "gpt2"), default="chars",
                   help="characters (shakespeare-char-cpu) or GPT-2's BPE tokens (gpt2-shakespeare-cpu)")
    p.add_argument("--steps", type=int, default=None, help="2000 with --tokens chars, 300 with --tokens gpt2 (more than the warmup's 100)")
    p.add_argument("--eval-iters", type=int, default=200, help="nanoGPT's held-out batches per estimate")
    p.add_argument("--timeout", type=float, default=1800, help="seconds one program may run")
    args = p.parse_args()
    if args.steps is None:
        args.steps = DEFAULT_STEPS[args.tokens]
    for path, what in ((args.microgpt, "microgpt binary (cargo build --release)"), (args.data, "text file"),
                       (os.path.join(args.nanogpt, "train.py"), "nanoGPT checkout")):
        if not os.path.exists(path):
            sys.exit(f"error: no {what} at {path}")
    args.data = os.path.abspath(args.data)

    with tempfile.TemporaryDirectory() as work:
        for name in ("train.py", "model.py", "configurator.py"):
            shutil.copy(os.path.join(args.nanogpt, name), work)
        shutil.copytree(os.path.join(args.nanogpt, "config"), os.path.join(work, "config"))
        (prepare if args.tokens == "chars" else prepare_gpt2)(args.data, os.path.join(work, "data", "bench"))
        results = {"ours": [], "nanoGPT": []}
        for i in range(args.runs):
            for name, fn in (("ours", lambda: ours(args)), ("nanoGPT", lambda: theirs(args, work))):
                tps, val, rss, _ = fn()
                results[name].append((tps, val, rss))
                print(f"run {i + 1}/{args.runs} {name}: {tps:.0f} tokens/s, held-out loss {val:.4f}, "
                      f"max RSS {rss:.0f} MiB", file=sys.stderr)

    median = lambda rows, k: statistics.median(r[k] for r in rows)
    ours_tps, their_tps = median(results["ours"], 0), median(results["nanoGPT"], 0)
    tokens = "" if args.tokens == "chars" else " in GPT-2's tokens"
    print(f"| {os.path.basename(args.data)}{tokens}, {args.steps} steps, batch {BATCH} x block {BLOCK}, CPU | "
          "tokens/s (median) | held-out loss | max RSS MiB |")
    print("|---|---|---|---|")
    for name in ("ours", "nanoGPT"):
        rows = results[name]
        vals = " / ".join(f"{r[1]:.4f}" for r in rows)
        print(f"| {name} | {median(rows, 0):.0f} | {vals} | {median(rows, 2):.0f} |")
    print(f"\nours / nanoGPT, tokens/s: {ours_tps / their_tps:.2f}x, on {cpu_model()} ({os.cpu_count()} CPUs)")


if __name__ == "__main__":
    main()
