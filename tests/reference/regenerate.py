#!/usr/bin/env python3
"""Regenerate the reference outputs in tests/reference/ (Python 3 standard library only).

    python3 tests/reference/regenerate.py --microgpt PATH/TO/microgpt.py --names data/names.txt
    python3 tests/reference/regenerate.py --microgpt microgpt.py --names data/names.txt --only steps20 --check
    python3 tests/reference/regenerate.py --names data/names.txt --only seed7 --out /tmp/ref

microgpt.py is Karpathy's gist (https://gist.github.com/karpathy/8627fe009c40f57531cb18360106ce95,
the revision that downloads makemore's names.txt at 988aa59); names.txt is that file (32,033
names). The script runs microgpt.py's own code, in a temporary directory whose input.txt is
--names, with two lines of its source substituted: `num_steps = 1000` becomes the run's step
count and `random.seed(42)` the run's seed (seed 42 leaves it as it is). Its `print` is
replaced by one that records, when microgpt.py prints a step, the full-precision `loss.data`,
and when it prints `num params`, the shuffled documents and the initial weights; the samples
are read from microgpt.py's own `sample NN: NAME` lines. Nothing else of it is changed.

Files (--only picks among steps20, steps1000, seed7; all three by default):
  seed42_steps20.txt        20 steps at seed 42: `STEP LOSS` per step, then `sample I NAME`
  seed42_steps20.txt.init   first_docs (10), last_doc, first_params (6), last_param, param_sum
  seed42_steps1000.txt      1,000 steps at seed 42, with `eval LOSS` before the samples: the mean
                            negative log-likelihood per target token of the last 2,000 shuffled
                            documents (never trained on in 1,000 steps), computed after training
                            with microgpt.py's own gpt() and softmax()  (about 12 minutes of one core)
  seed42_steps1000.txt.init as for steps20 (the same numbers: they come before training)
  seed7_steps50.torch.txt   `benches/torch_microgpt.py --seed 7 --steps 50 --dtype float64 --trace`
                            (steps and samples; its eval line dropped): an independent float64
                            implementation at another seed. Needs PyTorch (--python), not
                            microgpt.py. Its last digits depend on PyTorch's CPU kernels (version,
                            instruction set): a run elsewhere can differ from the committed file
                            by about 1e-15 per step, far inside the tests' 1e-9.

Without --check the files are written to --out (default: this directory). With --check they
are computed in a temporary directory and compared with those in --out: identical, or the
largest difference of the losses (at most 1e-9 passes) and whether the other lines match;
the exit status is 1 when a file does not pass.
"""
import argparse
import builtins
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
TOLERANCE = 1e-9

# name: (seed, steps, with eval line)
MICROGPT_RUNS = {"steps20": (42, 20, False), "steps1000": (42, 1000, True)}


def fail(msg):
    sys.exit(f"regenerate.py: {msg}")


def substitute(src, pattern, line, what):
    """Replace the one line of `src` matching `pattern` with `line`."""
    new, count = re.subn(pattern, line, src, flags=re.M)
    if count != 1:
        fail(f"microgpt.py has {count} lines like `{what}` (expected 1): is it Karpathy's microgpt.py?")
    return new


def run_microgpt(path, names, seed, steps, with_eval):
    """Run microgpt.py for `steps` steps at `seed`; return (reference lines, init lines)."""
    src = open(path, encoding="utf-8").read()
    src = substitute(src, r"^num_steps = \d+", f"num_steps = {steps}", "num_steps = 1000")
    if seed != 42:
        src = substitute(src, r"^random\.seed\(42\)", f"random.seed({seed})", "random.seed(42)")
    ns = {"__name__": "__main__", "__file__": path, "__builtins__": builtins}
    losses, samples, init = [], [], []
    progress = sys.stderr.isatty()

    def hooked_print(*args, **kwargs):
        msg = " ".join(str(a) for a in args)
        if msg.startswith("num params:"):  # just after the weights are drawn, before training
            docs, params = ns["docs"], [p.data for p in ns["params"]]
            init[:] = [f"first_docs {' '.join(docs[:10])}", f"last_doc {docs[-1]}",
                       f"first_params {' '.join(repr(p) for p in params[:6])}",
                       f"last_param {params[-1]!r}", f"param_sum {sum(params)!r}"]
        elif msg.startswith("step "):
            if ns["step"] != len(losses):
                fail(f"step {ns['step'] + 1} printed after {len(losses)} steps")
            losses.append(ns["loss"].data)
            if progress:
                sys.stderr.write(f"\r  microgpt.py seed {seed}: step {len(losses)} / {steps}")
            return
        elif msg.startswith("sample "):
            m = re.fullmatch(r"sample\s*(\d+): (.*)", msg, re.S)
            if not m or int(m.group(1)) != len(samples) + 1:
                fail(f"unexpected sample line {msg!r}")
            samples.append(m.group(2))
        elif progress:
            sys.stderr.write(f"\r  {msg.strip()}\n")

    ns["print"] = hooked_print
    code = compile(src, path, "exec")
    cwd = os.getcwd()
    with tempfile.TemporaryDirectory() as work:
        shutil.copyfile(names, os.path.join(work, "input.txt"))
        os.chdir(work)
        try:
            exec(code, ns)
        finally:
            os.chdir(cwd)
    if progress:
        sys.stderr.write("\n")
    if len(losses) != steps or not init or len(samples) != 20:
        fail(f"microgpt.py printed {len(losses)} steps, {len(samples)} samples"
             f"{'' if init else ', no num params line'}: is it Karpathy's microgpt.py?")
    lines = [f"{i + 1} {loss!r}" for i, loss in enumerate(losses)]
    if with_eval:
        lines.append(f"eval {evaluate(ns)!r}")
    lines += [sample_line(i + 1, s) for i, s in enumerate(samples)]
    return lines, init


def evaluate(ns):
    """Mean NLL per target token over the held-out documents, with microgpt.py's functions.
    Held out: the last min(2000, len(docs) // 10) shuffled documents (at least 1), as the crate."""
    docs, uchars, BOS = ns["docs"], ns["uchars"], ns["BOS"]
    gpt, softmax, n_layer, block_size = ns["gpt"], ns["softmax"], ns["n_layer"], ns["block_size"]
    held = docs[len(docs) - max(1, min(2000, len(docs) // 10)):]
    total, count = 0.0, 0
    for i, doc in enumerate(held):
        tokens = [BOS] + [uchars.index(ch) for ch in doc] + [BOS]
        n = min(block_size, len(tokens) - 1)
        keys, values = [[] for _ in range(n_layer)], [[] for _ in range(n_layer)]
        for pos_id in range(n):
            probs = softmax(gpt(tokens[pos_id], pos_id, keys, values))
            total += -math.log(probs[tokens[pos_id + 1]].data)
            count += 1
        if sys.stderr.isatty() and (i + 1) % 100 == 0:
            sys.stderr.write(f"\r  eval: {i + 1} / {len(held)} documents")
    if sys.stderr.isatty():
        sys.stderr.write("\n")
    return total / count


def sample_line(i, name):
    return f"sample {i} {name}" if name else f"sample {i}"


def run_torch(python, names, work):
    """seed7_steps50.torch.txt: the float64 trace of benches/torch_microgpt.py, without its eval line."""
    script = os.path.join(ROOT, "benches", "torch_microgpt.py")
    if subprocess.run([python, "-c", "import torch"], capture_output=True).returncode != 0:
        fail(f"PyTorch is not importable by {python} (seed7 needs it): pip install torch, or pass --python")
    trace = os.path.join(work, "seed7.trace")
    cmd = [python, script, "--input", names, "--seed", "7", "--steps", "50", "--dtype", "float64",
           "--device", "cpu", "--trace", trace]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        fail(f"{' '.join(cmd)} failed (exit {proc.returncode}):\n{proc.stderr.strip()}")
    return [line for line in open(trace).read().splitlines() if not line.startswith("eval ")]


def compare(name, new_lines, old_path):
    """Print how `new_lines` compare with the file at `old_path`; return whether they pass."""
    if not os.path.exists(old_path):
        print(f"{name}: no committed file to compare with")
        return False
    old_lines = open(old_path).read().splitlines()
    if new_lines == old_lines:
        print(f"{name}: identical")
        return True
    if len(new_lines) != len(old_lines):
        print(f"{name}: DIFFERS: {len(new_lines)} lines against {len(old_lines)}")
        return False
    worst, numeric, differ, other = 0.0, 0, 0, []
    for new, old in zip(new_lines, old_lines):
        a, b = new.split(" ", 1), old.split(" ", 1)
        if a[0] == b[0] and (a[0].isdigit() or a[0] in ("eval", "last_param", "param_sum")):  # one number
            numeric += 1
            if new != old:
                worst, differ = max(worst, abs(float(a[1]) - float(b[1]))), differ + 1
        elif new != old:
            other.append(f"    new {new!r}\n    old {old!r}")
    ok = worst <= TOLERANCE and not other
    print(f"{name}: {'passes' if ok else 'DIFFERS'}: {differ} of {numeric} numbers differ (largest difference "
          f"{worst:.3e}), {len(other)} other lines differ" + "".join("\n" + o for o in other))
    return ok


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--microgpt", help="Karpathy's microgpt.py (for steps20 and steps1000)")
    p.add_argument("--names", default=os.path.join(ROOT, "data", "names.txt"), help="makemore's names.txt")
    p.add_argument("--only", nargs="+", choices=["steps20", "steps1000", "seed7"],
                   default=["steps20", "steps1000", "seed7"])
    p.add_argument("--out", default=HERE, help="where the files are written or, with --check, read")
    p.add_argument("--check", action="store_true", help="compare with the files in --out instead of writing")
    p.add_argument("--python", default=sys.executable, help="a Python that has torch (for seed7)")
    args = p.parse_args()
    names = os.path.abspath(args.names)
    if not os.path.isfile(names):
        fail(f"no names file at {names}: pass --names PATH to makemore's names.txt")
    if any(o in MICROGPT_RUNS for o in args.only) and not (args.microgpt and os.path.isfile(args.microgpt)):
        fail("steps20 and steps1000 run Karpathy's microgpt.py: pass --microgpt PATH "
             "(https://gist.github.com/karpathy/8627fe009c40f57531cb18360106ce95)")

    outputs = []  # (file name, lines)
    with tempfile.TemporaryDirectory() as work:
        for only in args.only:
            if only in MICROGPT_RUNS:
                seed, steps, with_eval = MICROGPT_RUNS[only]
                lines, init = run_microgpt(os.path.abspath(args.microgpt), names, seed, steps, with_eval)
                base = f"seed{seed}_steps{steps}.txt"
                outputs += [(base, lines), (base + ".init", init)]
            else:
                outputs.append(("seed7_steps50.torch.txt", run_torch(args.python, names, work)))
    passed = True
    for name, lines in outputs:
        path = os.path.join(args.out, name)
        if args.check:
            passed &= compare(name, lines, path)
        else:
            os.makedirs(args.out, exist_ok=True)
            with open(path, "w") as f:
                f.write("\n".join(lines) + "\n")
            print(f"wrote {path}")
    sys.exit(0 if passed else 1)


if __name__ == "__main__":
    main()
