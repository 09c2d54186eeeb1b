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
Each cell also gives the process's peak memory (max RSS).

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


def worker(args):
    """One transformers measurement in this process, printed as JSON."""
    import torch
    from transformers import GPT2LMHeadModel
    torch.set_num_threads(args.threads)
    dev = args.device
    model = GPT2LMHeadModel.from_pretrained(args.model).to(dev).eval()
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
    parser.add_argument("--worker", choices=["sample", "prompt", "eval", "finetune"], help=argparse.SUPPRESS)
    parser.add_argument("--threads", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--tokens", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker(args)

    if not os.path.isfile(os.path.join(args.model, "model.safetensors")):
        import torch
        from transformers import GPT2Config, GPT2LMHeadModel
        torch.manual_seed(0)
        GPT2LMHeadModel(GPT2Config()).save_pretrained(args.model, safe_serialization=True)
        print(f"made a GPT-2 124M with random weights in {args.model}", file=sys.stderr)

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
    ours_cmd = {
        "sample": [args.microgpt, "sample", "--checkpoint", args.model, "--prefix", PROMPT,
                   "--num-tokens", str(args.new_tokens), "--top-k", "1", "--device", "cpu"],
        "prompt": [args.microgpt, "sample", "--checkpoint", args.model, "--prefix", long_prompt,
                   "--num-tokens", "1", "--top-k", "1", "--device", "cpu"],
        "eval": [args.microgpt, "eval", "--checkpoint", args.model, "--data", eval_file, "--device", "cpu"],
    }
    rows = []
    for what in ["sample", "prompt", "eval"]:
        ours, theirs = {"speed": [], "rss": []}, {1: {"speed": [], "rss": []}, 2: {"speed": [], "rss": []}}
        for _ in range(args.runs):
            out, rss = measured(ours_cmd[what])
            ours["speed"].append(our_speed(what, out))
            ours["rss"].append(rss)
            for threads in (1, 2):
                out, rss = measured([sys.executable, __file__, "--worker", what, "--threads", str(threads),
                                     "--model", args.model, "--tokens", token_file])
                theirs[threads]["speed"].append(json.loads(out.strip().splitlines()[-1])["tokens_per_s"])
                theirs[threads]["rss"].append(rss)
        best = max((1, 2), key=lambda t: statistics.median(theirs[t]["speed"]))
        o, t = statistics.median(ours["speed"]), statistics.median(theirs[best]["speed"])
        rows.append((what, o, statistics.median(ours["rss"]), t, best, statistics.median(theirs[best]["rss"]), o / t))

    labels = {"sample": f"sampling, greedy, {args.new_tokens} tokens (KV cache)",
              "prompt": f"prompt, {len(enc.encode(long_prompt))} tokens in one pass",
              "eval": f"eval, {len(eval_tokens) - 1} tokens in windows of 1024"}
    print(f"GPT-2 124M on the CPU ({platform.machine()}, {os.cpu_count()} cores), f32, medians of {args.runs}; "
          f"{time.strftime('%Y-%m-%d')}\n")
    print("| | microgpt tokens/s | max RSS | transformers tokens/s (threads) | max RSS | ours / theirs |")
    print("|---|---:|---:|---:|---:|---:|")
    for what, o, orss, t, threads, trss, ratio in rows:
        print(f"| {labels[what]} | {o:,.1f} | {orss:,.0f} MiB | {t:,.1f} ({threads}) | {trss:,.0f} MiB | {ratio:.2f}x |")


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
