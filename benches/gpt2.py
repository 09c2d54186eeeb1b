#!/usr/bin/env python3
"""GPT-2 124M on the CPU, this crate against Hugging Face's transformers, side by side.

    cargo build --release                         # target/release/microgpt
    pip install torch transformers safetensors
    python3 benches/gpt2.py                       # --runs 3 --new-tokens 200 --model DIR --text FILE

Both run the same model: OpenAI's GPT-2 124M shapes with random weights, made by transformers'
`GPT2LMHeadModel(GPT2Config())` and saved with `save_pretrained` (once, into --model; the real
weights time the same and need the hub; give --model a folder holding them to use those).
Each row runs each program alternately, --runs times, in a process of its own, and keeps the
median; transformers runs with 1 and with 2 threads and the faster counts; ours uses every core.

- sampling: greedy (top-k 1), --new-tokens tokens after nanoGPT's prompt, with the key/value
  cache: `microgpt sample --top-k 1` against `model.generate(do_sample=False)`; tokens/s of the
  new tokens after the first.
- prompt: one pass over a prompt of --prompt-tokens tokens of --text (the first token's logits
  out): tokens/s.
- eval: the mean loss of the first --eval-tokens tokens of --text in windows of 1024 side by side
  (`microgpt eval`, transformers in batches of 8 windows under no_grad): tokens/s.
- sampling and eval again with the weights in bf16: ours `--dtype bf16` (the matrices held in
  bf16, every sum in f32), transformers' model loaded in torch.bfloat16; the last line gives bf16
  sampling against transformers' f32 `generate`.
Each cell also gives the process's peak memory (max RSS).

On the CPU the run first prints the CPU's model and core count and measures, with numpy, what
bounds each row on this machine (best of a few repeats, a few seconds in all):
- memory read bandwidth (a numpy sum over a 1 GiB float32 array, on 1 thread and on every thread,
  each on its own slice as the sampler streams its share of the weights; with torch also its sum
  and a matrix-vector product over the same bytes, a sampled token's own work; the fastest counts: a
  bound that a program passes was measured too low), and from it the sampling
  row's "bound tokens/s": greedy sampling with the KV cache reads every weight once per
  new token, so tokens/s <= bandwidth / bytes of the weights read per token, f32 or bf16 (counted from
  the --model folder's config.json; the position embeddings are left out, a token reads one row
  of them);
- f32 GEMM throughput (a 2048x2048 numpy matmul, GFLOP/s), and from it the prompt and eval rows'
  bound, which is compute, not memory: tokens/s <= GFLOP/s / FLOPs per token (2 x the weights
  per token, plus attention's 2 x n_layer x context x n_embd).
"ours / bound" is microgpt's tokens/s as a percentage of that row's bound (memory for sampling,
gemm for prompt and eval), "theirs / bound" transformers'. Without numpy the run says the bounds were not measured and the
table keeps only the columns above.

`--device cuda` (benches/gpu.sh runs it on a GPU machine) times the GPU instead: sampling as above
on both of our GPU backends (`--device gpu`, wgpu; `--device cuda`, when the binary has it)
against transformers on PyTorch CUDA, and fine-tuning steps (nanoGPT's finetune_shakespeare
recipe, --finetune-batch windows of 1,024 tokens, --finetune-steps steps after one untimed)
against PyTorch's AdamW on the same model.
"""
import argparse
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PROMPT = "Hello, I'm a language model,"


def rss_mib(usage):
    # ru_maxrss is KiB on Linux, bytes on macOS
    return usage.ru_maxrss / (1024 * 1024 if sys.platform == "darwin" else 1024)


def measured(cmd, env=None):
    """stdout and peak RSS of a child, read with wait4."""
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    out = proc.stdout.read().decode()
    err = proc.stderr.read().decode()
    _, status, usage = os.wait4(proc.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"{' '.join(cmd)} failed:\n{err}")
    return out, rss_mib(usage)


def cpu_model():
    """The CPU's name: /proc/cpuinfo on Linux, sysctl on macOS, else the architecture."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.lower().startswith(("model name", "hardware", "cpu model")):
                    name = line.split(":", 1)[1].strip()
                    if name:
                        return name
    except OSError:
        pass
    if sys.platform == "darwin":
        try:
            name = subprocess.run(["sysctl", "-n", "machdep.cpu.brand_string"], capture_output=True,
                                  text=True, timeout=5).stdout.strip()
            if name:
                return name
        except (OSError, subprocess.SubprocessError):
            pass
    return platform.processor() or platform.machine() or "unknown CPU"


def usable_cpus():
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def bandwidth_probe(gib=1, repeats=5, budget_s=6.0):
    """Memory read bandwidth, GB/s (1e9 bytes/s): the best of `repeats` sums of a float32 array of
    `gib` GiB (far past any cache), on 1 thread and on every usable CPU, each thread summing a
    contiguous slice of its own the way the sampler's threads stream their share of a weight
    matrix (numpy lets go of the GIL inside a reduction). This bounds sampling: greedy sampling
    with the KV cache reads every weight once per new token, so
    tokens/s <= bandwidth / bytes of weights read per token.
    Returns {"gbs": best, "by_threads": {threads: GB/s}, "gib", "repeats"}, or None without numpy."""
    try:
        import numpy as np
    except ImportError:
        return None
    from concurrent.futures import ThreadPoolExecutor
    data = np.ones(gib * (1 << 30) // 4, dtype=np.float32)  # written once: every page is faulted in
    nbytes = data.nbytes
    deadline = time.perf_counter() + budget_s
    by_threads = {}
    for threads in sorted({1, usable_cpus()}):
        chunks = np.array_split(data, threads)
        best = 0.0
        with ThreadPoolExecutor(threads) as pool:
            for i in range(repeats):
                start = time.perf_counter()
                list(pool.map(np.sum, chunks))
                best = max(best, nbytes / (time.perf_counter() - start) / 1e9)
                if time.perf_counter() > deadline and i >= 1:
                    break
        by_threads[threads] = best
    del data, chunks
    how = "numpy sum"
    # numpy's float32 sum is pairwise and can fall short of the memory's speed; torch's sum and a
    # matrix-vector product over the same bytes (what a sampled token does with each weight
    # matrix), on torch's own threads, read at the memory's speed where they can: the fastest counts
    try:
        import torch
    except ImportError:
        torch = None
    if torch is not None:
        how = "the fastest of a numpy sum, a torch sum and a torch matrix-vector product"
        matrix, vector = torch.ones(nbytes // 4 // 1024, 1024), torch.ones(1024)
        for threads in sorted({1, usable_cpus()}):
            torch.set_num_threads(threads)
            for read in (lambda: torch.mv(matrix, vector), lambda: matrix.sum()):
                read()
                for _ in range(repeats):
                    start = time.perf_counter()
                    read()
                    by_threads[threads] = max(by_threads[threads], nbytes / (time.perf_counter() - start) / 1e9)
        del matrix
    return {"gbs": max(by_threads.values()), "by_threads": by_threads, "gib": gib, "repeats": repeats, "how": how}


def gemm_probe(n=2048, repeats=3):
    """f32 matrix-multiply throughput, GFLOP/s: the best of `repeats` numpy matmuls of two n x n
    float32 matrices (2 n^3 FLOPs each, on numpy's BLAS with its own threads), after one untimed.
    This bounds the prompt and eval rows, where every weight is used by many tokens at once and
    the work is compute, not memory. None without numpy."""
    try:
        import numpy as np
    except ImportError:
        return None
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n), dtype=np.float32)
    b = rng.standard_normal((n, n), dtype=np.float32)
    a @ b  # warm up: BLAS threads, pages
    best = 0.0
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        best = max(best, 2 * n ** 3 / (time.perf_counter() - start) / 1e9)
    return {"gflops": best, "n": n, "repeats": repeats}


def gpt2_counts(model_dir):
    """GPT-2's parameter counts from the --model folder's config.json, or None if unreadable:
    wte V*C + wpe P*C + per layer 12*C^2 + 13*C + the final layer norm 2*C.
    "per_token" leaves wpe out: a token reads one row of it, while it reads all of wte (the
    tied LM head) and every layer's weights. The f32 bytes per token are 4 * per_token (the
    KV cache's reads, 8*n_layer*C bytes per token of context, are left out: the bound stays an
    upper one)."""
    try:
        cfg = json.load(open(os.path.join(model_dir, "config.json")))
        V, P = cfg.get("vocab_size", 50257), cfg.get("n_positions", 1024)
        C, L = cfg.get("n_embd", 768), cfg.get("n_layer", 12)
    except (OSError, ValueError):
        return None
    total = V * C + P * C + L * (12 * C * C + 13 * C) + 2 * C
    return {"total": total, "per_token": total - P * C, "n_layer": L, "n_embd": C}


def flops_per_token(counts, context):
    """Forward FLOPs per token, kept simple: 2 per weight used (the matmuls, the LM head over the
    whole vocabulary included) plus attention, 2 * n_layer * T * C for a causal window of T
    tokens (QK^T and AV are 4*C FLOPs per pair per layer, over T/2 keys on average)."""
    return 2 * counts["per_token"] + 2 * counts["n_layer"] * context * counts["n_embd"]


def bound_lines(bw, gemm, counts):
    """The lines that say what the bounds were measured as."""
    if bw is None or gemm is None:
        return ["memory bandwidth, gemm: not measured (numpy is not installed: pip install numpy); "
                "no bound columns"]
    threads = ", ".join(f"{bw['by_threads'][t]:,.1f} on {t} thread{'s' if t > 1 else ''}" for t in bw["by_threads"])
    best = max(bw["by_threads"], key=bw["by_threads"].get)
    lines = [f"memory bandwidth: {bw['gbs']:,.1f} GB/s ({bw['how']} over {bw['gib']} GiB, best of {bw['repeats']}, "
             f"{best} thread{'s' if best > 1 else ''}; {threads})",
             f"gemm: {gemm['gflops']:,.0f} GFLOP/s (f32 {gemm['n']}², best of {gemm['repeats']})"]
    if counts is None:
        lines.append("weights: the --model folder's config.json was not readable; no bound columns")
    else:
        lines.append(f"weights: {counts['total']:,} parameters, {counts['per_token'] * 4 / 1e6:,.1f} MB of f32 "
                     f"read per sampled token (all but wpe, of which a token reads one row)")
    return lines


def worker(args):
    """One transformers measurement in this process, printed as JSON; or (`--worker probe`) the
    machine's bounds, measured here so that the parent stays small: a child's peak RSS counts the
    memory of the process it was forked from."""
    if args.worker == "probe":
        return print(json.dumps({"bw": bandwidth_probe(), "gemm": gemm_probe()}))
    import torch
    from transformers import GPT2LMHeadModel
    torch.set_num_threads(args.threads)
    dev = args.device
    dtype = {"f32": torch.float32, "bf16": torch.bfloat16}[args.dtype]
    model = GPT2LMHeadModel.from_pretrained(args.model, torch_dtype=dtype).to(dev).eval()
    tokens = json.load(open(args.tokens))
    sync = torch.cuda.synchronize if dev == "cuda" else (lambda: None)
    if args.worker == "finetune":
        return print(json.dumps(finetune(model, tokens["eval"], args, sync)))
    with torch.no_grad():
        if args.worker == "sample":
            ids = torch.tensor([tokens["prompt"]], device=dev)
            model.generate(ids, max_new_tokens=2, do_sample=False, pad_token_id=50256)  # warm up
            sync()
            first = time.perf_counter()
            model.generate(ids, max_new_tokens=1, do_sample=False, pad_token_id=50256)
            sync()
            first = time.perf_counter() - first
            start = time.perf_counter()
            out = model.generate(ids, max_new_tokens=args.new_tokens, do_sample=False, pad_token_id=50256)
            sync()
            total = time.perf_counter() - start
            result = {"tokens_per_s": (args.new_tokens - 1) / (total - first), "tokens": out[0, ids.shape[1]:].tolist()}
        elif args.worker == "prompt":
            ids = torch.tensor([tokens["long"]])
            model(ids[:, :8])  # warm up
            start = time.perf_counter()
            model(ids)
            result = {"tokens_per_s": ids.shape[1] / (time.perf_counter() - start)}
        else:
            text = tokens["eval"]
            n = (len(text) - 1) // 1024
            windows = torch.tensor([text[i * 1024:i * 1024 + 1025] for i in range(n)])
            start = time.perf_counter()
            total = 0.0
            for b in range(0, n, 8):
                w = windows[b:b + 8]
                logits = model(w[:, :-1]).logits
                total += torch.nn.functional.cross_entropy(
                    logits.reshape(-1, logits.size(-1)), w[:, 1:].reshape(-1), reduction="sum").item()
            secs = time.perf_counter() - start
            result = {"tokens_per_s": n * 1024 / secs, "loss": total / (n * 1024)}
    print(json.dumps(result))


def finetune(model, tokens, args, sync):
    """nanoGPT's fine-tuning steps (AdamW 3e-5, betas 0.9/0.95, decay 0.1 on the matrices,
    clipping 1) on windows of 1,024 tokens; tokens/s of the timed steps."""
    import torch
    model.train()
    decay = [p for p in model.parameters() if p.dim() >= 2]
    rest = [p for p in model.parameters() if p.dim() < 2]
    optim = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": rest, "weight_decay": 0.0}],
                              lr=3e-5, betas=(0.9, 0.95), eps=1e-8)
    n = args.finetune_batch
    batch = torch.tensor([tokens[i * 512:i * 512 + 1025] for i in range(n)], device=args.device)
    x, y = batch[:, :-1], batch[:, 1:]

    def step():
        logits = model(x).logits
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.size(-1)), y.reshape(-1))
        optim.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optim.step()
        return loss

    step()  # untimed: allocations, kernels
    sync()
    start = time.perf_counter()
    for _ in range(args.finetune_steps):
        loss = step()
    sync()
    return {"tokens_per_s": args.finetune_steps * n * 1024 / (time.perf_counter() - start), "loss": loss.item()}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--new-tokens", type=int, default=200)
    parser.add_argument("--prompt-tokens", type=int, default=512)
    parser.add_argument("--eval-tokens", type=int, default=8 * 1024 + 1)
    parser.add_argument("--model", default=os.path.join(tempfile.gettempdir(), "microgpt-bench-gpt2-124m"))
    parser.add_argument("--text", default=os.path.join(ROOT, "data", "shakespeare.txt"))
    parser.add_argument("--microgpt", default=os.path.join(ROOT, "target", "release", "microgpt"))
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--finetune-batch", type=int, default=8)
    parser.add_argument("--finetune-steps", type=int, default=10)
    parser.add_argument("--worker", choices=["sample", "prompt", "eval", "finetune", "probe", "make"],
                        help=argparse.SUPPRESS)
    parser.add_argument("--threads", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--dtype", choices=["f32", "bf16"], default="f32", help=argparse.SUPPRESS)
    parser.add_argument("--tokens", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker == "make":
        import torch
        from transformers import GPT2Config, GPT2LMHeadModel
        torch.manual_seed(0)
        GPT2LMHeadModel(GPT2Config()).save_pretrained(args.model, safe_serialization=True)
        return print(f"made a GPT-2 124M with random weights in {args.model}", file=sys.stderr)
    if args.worker:
        return worker(args)

    # torch and the probes' arrays stay out of this process (see worker)
    if not os.path.isfile(os.path.join(args.model, "model.safetensors")):
        subprocess.run([sys.executable, __file__, "--worker", "make", "--model", args.model], check=True)

    # the texts both sides run on, cut at whole tokens; transformers' side gets tiktoken's ids
    # (the tests check ours are the same)
    enc = encoder()
    text = open(args.text, encoding="utf-8").read()
    eval_file = os.path.join(tempfile.gettempdir(), "microgpt-bench-eval.txt")
    tokens = enc.encode(text[: 8 * (args.eval_tokens + args.prompt_tokens)])
    long_prompt = enc.decode(tokens[:args.prompt_tokens])
    with open(eval_file, "w", encoding="utf-8") as f:
        f.write(enc.decode(tokens[:args.eval_tokens]))
    token_file = os.path.join(tempfile.gettempdir(), "microgpt-bench-tokens.json")
    eval_tokens = enc.encode(open(eval_file, encoding="utf-8").read())
    json.dump({"prompt": enc.encode(PROMPT), "long": enc.encode(long_prompt), "eval": eval_tokens}, open(token_file, "w"))

    if args.device == "cuda":
        return gpu_rows(args, token_file, eval_file)
    # what bounds the rows on this machine, measured now, before the runs (see bandwidth_probe, gemm_probe)
    cpu = cpu_model()
    print(f"CPU: {cpu}, {os.cpu_count()} cores", file=sys.stderr, flush=True)
    probed = json.loads(measured([sys.executable, __file__, "--worker", "probe"])[0].strip().splitlines()[-1])
    bw, gemm, counts = probed["bw"], probed["gemm"], gpt2_counts(args.model)
    if bw is not None:
        bw["by_threads"] = {int(t): gbs for t, gbs in bw["by_threads"].items()}  # JSON's keys are text
    bounds = bound_lines(bw, gemm, counts)
    print("\n".join(bounds), file=sys.stderr, flush=True)
    ours_cmd = {
        "sample": [args.microgpt, "sample", "--checkpoint", args.model, "--prefix", PROMPT,
                   "--num-tokens", str(args.new_tokens), "--top-k", "1", "--device", "cpu"],
        "prompt": [args.microgpt, "sample", "--checkpoint", args.model, "--prefix", long_prompt,
                   "--num-tokens", "1", "--top-k", "1", "--device", "cpu"],
        "eval": [args.microgpt, "eval", "--checkpoint", args.model, "--data", eval_file, "--device", "cpu"],
    }
    # the same rows with the weights in bf16: ours `--dtype bf16` (the sums in f32), transformers'
    # model in torch.bfloat16
    for what in ["sample", "eval"]:
        ours_cmd[f"{what}-bf16"] = ours_cmd[what] + ["--dtype", "bf16"]
    rows = []
    for what in ["sample", "prompt", "eval", "sample-bf16", "eval-bf16"]:
        kind, dtype = what.split("-")[0], "bf16" if what.endswith("-bf16") else "f32"
        ours, theirs = {"speed": [], "rss": []}, {1: {"speed": [], "rss": []}, 2: {"speed": [], "rss": []}}
        for _ in range(args.runs):
            out, rss = measured(ours_cmd[what])
            ours["speed"].append(our_speed(kind, out))
            ours["rss"].append(rss)
            for threads in (1, 2):
                out, rss = measured([sys.executable, __file__, "--worker", kind, "--threads", str(threads),
                                     "--model", args.model, "--tokens", token_file, "--dtype", dtype])
                theirs[threads]["speed"].append(json.loads(out.strip().splitlines()[-1])["tokens_per_s"])
                theirs[threads]["rss"].append(rss)
        best = max((1, 2), key=lambda t: statistics.median(theirs[t]["speed"]))
        o, t = statistics.median(ours["speed"]), statistics.median(theirs[best]["speed"])
        rows.append((what, o, statistics.median(ours["rss"]), t, best, statistics.median(theirs[best]["rss"]), o / t))

    labels = {"sample": f"sampling, greedy, {args.new_tokens} tokens (KV cache)",
              "prompt": f"prompt, {len(enc.encode(long_prompt))} tokens in one pass",
              "eval": f"eval, {len(eval_tokens) - 1} tokens in windows of 1024"}
    labels.update({f"{what}-bf16": f"{labels[what]}, bf16 weights" for what in ["sample", "eval"]})
    # each row's bound, tokens/s: sampling by memory (bandwidth / f32 bytes per token), the prompt
    # and eval by compute (gemm FLOP/s / FLOPs per token over their context: the prompt, a window)
    bound = {}
    if bw is not None and gemm is not None and counts is not None:
        context = {"prompt": len(enc.encode(long_prompt)), "eval": 1024}
        bound["sample"] = (bw["gbs"] * 1e9 / (4 * counts["per_token"]), "memory")
        bound["sample-bf16"] = (bw["gbs"] * 1e9 / (2 * counts["per_token"]), "memory, bf16")
        for what, T in context.items():
            bound[what] = (gemm["gflops"] * 1e9 / flops_per_token(counts, T), "gemm")
            bounds.append(f"{what}: {flops_per_token(counts, T) / 1e9:.3f} GFLOP per token (context {T})")
        bound["eval-bf16"] = bound["eval"]
    print(f"GPT-2 124M on the CPU ({cpu}, {platform.machine()}, {os.cpu_count()} cores), f32 unless a row says bf16, medians of {args.runs}; "
          f"{time.strftime('%Y-%m-%d')}\n")
    print("\n".join(bounds) + "\n")
    extra = " bound tokens/s | ours / bound | theirs / bound |" if bound else ""
    print("| | microgpt tokens/s | max RSS | transformers tokens/s (threads) | max RSS | ours / theirs |" + extra)
    print("|---|---:|---:|---:|---:|---:|" + ("---:|---:|---:|" if bound else ""))
    for what, o, orss, t, threads, trss, ratio in rows:
        b = bound.get(what, (float("nan"), ""))
        cells = f" {b[0]:,.1f} ({b[1]}) | {100 * o / b[0]:.0f}% | {100 * t / b[0]:.0f}% |" if bound else ""
        print(f"| {labels[what]} | {o:,.1f} | {orss:,.0f} MiB | {t:,.1f} ({threads}) | {trss:,.0f} MiB | {ratio:.2f}x |"
              + cells)
    speed = {what: (o, t) for what, o, _, t, *_ in rows}
    print(f"\nbf16 sampling against transformers' f32 generate: {speed['sample-bf16'][0] / speed['sample'][1]:.2f}x "
          f"({speed['sample-bf16'][0]:,.1f} against {speed['sample'][1]:,.1f} tokens/s)")


def gpu_rows(args, token_file, eval_file):
    """Sampling and fine-tuning on the GPU: ours on wgpu and CUDA against PyTorch CUDA."""
    import torch
    gpu = torch.cuda.get_device_name(0)
    backends = ["gpu"] + (["cuda"] if measured_ok([args.microgpt, "--device", "cuda", "--steps", "1", "--num-samples", "0",
                                                  "-q"]) else [])
    finetune = ["--finetune-batch", str(args.finetune_batch), "--finetune-steps", str(args.finetune_steps)]
    ours = {
        "sample": lambda b: [args.microgpt, "sample", "--checkpoint", args.model, "--prefix", PROMPT, "--num-tokens",
                             str(args.new_tokens), "--top-k", "1", "--device", b],
        "finetune": lambda b: [args.microgpt, "train", "--init-from", args.model, "--data", args.text,
                               "--preset", "gpt2-finetune-shakespeare", "--steps", str(args.finetune_steps + 1),
                               "--batch-size", str(args.finetune_batch), "--eval-windows", "1", "--num-tokens", "1",
                               "--device", b, "--quiet"],
    }
    labels = {"sample": f"sampling, greedy, {args.new_tokens} tokens (KV cache)",
              "finetune": f"fine-tuning, batch {args.finetune_batch} x 1024 tokens, AdamW"}
    print(f"GPT-2 124M on {gpu}, f32, medians of {args.runs}; {time.strftime('%Y-%m-%d')}\n")
    print("| | " + " | ".join(f"microgpt {b} tokens/s" for b in backends) + " | PyTorch CUDA tokens/s | ours / theirs |")
    print("|---|" + "---:|" * (len(backends) + 2))
    for what in ["sample", "finetune"]:
        speeds = {b: [] for b in backends + ["torch"]}
        for _ in range(args.runs):
            for b in backends:
                out, _ = measured(ours[what](b))
                speeds[b].append(our_speed(what, out))
            out, _ = measured([sys.executable, __file__, "--worker", what, "--device", "cuda", "--model", args.model,
                               "--tokens", token_file, "--new-tokens", str(args.new_tokens)] + finetune)
            speeds["torch"].append(json.loads(out.strip().splitlines()[-1])["tokens_per_s"])
        med = {k: statistics.median(v) for k, v in speeds.items()}
        best = max(med[b] for b in backends)
        cells = " | ".join(f"{med[b]:,.1f}" for b in backends)
        print(f"| {labels[what]} | {cells} | {med['torch']:,.1f} | {best / med['torch']:.2f}x |")


def measured_ok(cmd):
    return subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode == 0


def encoder():
    import tiktoken
    from tiktoken.load import load_tiktoken_bpe
    from tiktoken_ext.openai_public import r50k_pat_str
    import glob
    ranks = [os.environ["R50K_BASE"]] if "R50K_BASE" in os.environ else \
        glob.glob(os.path.expanduser("~/.cargo/registry/src/*/tiktoken-rs-*/assets/r50k_base.tiktoken"))
    if not ranks:
        sys.exit("r50k_base.tiktoken not found: build the crate first (cargo build --release)")
    return tiktoken.Encoding("gpt2-local", pat_str=r50k_pat_str, mergeable_ranks=load_tiktoken_bpe(ranks[0]),
                             special_tokens={"<|endoftext|>": 50256})


def our_speed(what, out):
    if what == "sample":
        return float(re.search(r"^speed: ([0-9.]+) tokens/s", out, re.M).group(1))
    if what == "finetune":
        return float(re.search(r"^train time: .*?([0-9.]+) tokens/s\)", out, re.M).group(1))
    if what == "prompt":
        m = re.search(r"the prompt's (\d+) in ([0-9.]+) s", out)
        return int(m.group(1)) / float(m.group(2))
    return float(re.search(r"^speed: ([0-9.]+) tokens/s", out, re.M).group(1))


if __name__ == "__main__":
    main()
