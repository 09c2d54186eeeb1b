#!/usr/bin/env python3
"""microGPT in PyTorch: the baseline that benches/compare.py times against this crate.

The same algorithm as Karpathy's microgpt.py and as `microgpt train` (docs/ALGORITHM.md: data, model, init
order, optimizer, sampling), written with PyTorch tensors instead of scalars:

- data: every line of --input, stripped, blank lines skipped; `random.seed(seed)` then
  `random.shuffle(docs)`; the vocabulary is the sorted set of characters plus BOS (id n).
  The last min(2000, len(docs) // 10) documents (at least 1) are held out, as the crate does;
  step s trains on the training documents s*B .. s*B+B-1 (modulo their number), which for
  names.txt and steps*B <= 30,033 is microgpt.py's `docs[s % len(docs)]`.
- model: wte, wpe, lm_head, then per layer attn_wq, attn_wk, attn_wv, attn_wo, mlp_fc1,
  mlp_fc2, each stored [out, in] and drawn row by row with `random.gauss(0, 0.08)` in that
  order (so with the same seed the weights, and the sampling stream after them, are
  microgpt.py's); rmsnorm `x * (mean(x^2) + 1e-5)^-0.5` without gain, no biases, ReLU MLP.
- training: Adam (beta1 0.85, beta2 0.99, eps 1e-8, bias correction, no weight decay) at
  `lr * (1 - step / steps)`. --batch 1 is the reference: one document per step, no padding.
  --batch B > 1 right-pads B documents to block_size positions and averages the cross-entropy
  over the real target tokens only.
- sampling: 20 names at temperature 0.5, one `random.choices` draw per token.
- --text: the input as one stream of characters (`microgpt train --layout text`): the first 90%
  trains, each step on --batch windows of block_size + 1 at random offsets; the held-out loss is
  the mean over --eval-windows random windows of the last 10%; no sampling. With --warmup,
  --cosine, --min-lr, --weight-decay (AdamW), --beta1/--beta2, --grad-clip and --dropout (at
  microgpt's places) it runs the recipe of the Shakespeare presets, for benches/gpu.sh's
  baby-GPT row.

Shapes: B batch, T positions (<= block_size), C n_embd, H n_head, D head_dim, V vocab_size.

It prints `train time: X s (cpu Y s) | ... | N tokens/s (...)` (training loop only, N = target
tokens per second) and `eval nll/token on last K docs: L` (held-out loss), which compare.py
reads. --trace FILE writes the run in the format of tests/reference/*.txt: `STEP LOSS` for
every step (full precision; one device sync per step), then `eval LOSS`, then `sample I NAME`.

    pip install torch
    python3 benches/torch_microgpt.py --input data/names.txt                 # the reference run, f32
    python3 benches/torch_microgpt.py --input data/names.txt --dtype float64 --steps 20 --trace t.txt
    python3 benches/torch_microgpt.py --input data/names.txt --batch 32 --steps 300 \\
        --n-layer 2 --n-embd 64 --n-head 4 --threads 2                      # the `small` preset
"""
import argparse
import math
import os
import random
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
p.add_argument('--input', default=os.path.join(ROOT, 'data', 'names.txt'), help='one document per line')
p.add_argument('--steps', type=int, default=1000, help='training steps (the lr decays to zero over them)')
p.add_argument('--batch', type=int, default=1, help='documents per step; 1 is the reference (no padding)')
p.add_argument('--lr', type=float, default=0.01, help='initial learning rate of Adam')
p.add_argument('--seed', type=int, default=42, help="seed of Python's random: shuffle, weights, samples")
p.add_argument('--n-layer', type=int, default=1, help='transformer blocks')
p.add_argument('--n-embd', type=int, default=16, help='embedding width')
p.add_argument('--n-head', type=int, default=4, help='attention heads (must divide --n-embd)')
p.add_argument('--block-size', type=int, default=16, help='longest context; longer documents are cut')
p.add_argument('--device', default='cpu', choices=['cpu', 'cuda'])
p.add_argument('--threads', type=int, default=0, help='torch.set_num_threads (0 = torch default)')
p.add_argument('--dtype', default='float32', choices=['float32', 'float64'])
p.add_argument('--text', action='store_true', help='the input as one text: random windows, the last tenth held out')
p.add_argument('--eval-windows', type=int, default=500, help='--text: held-out windows averaged')
p.add_argument('--warmup', type=int, default=0, help='steps of linear warmup')
p.add_argument('--cosine', action='store_true', help='cosine decay (default: linear)')
p.add_argument('--min-lr', type=float, default=0.0, help='the rate the decay ends at')
p.add_argument('--weight-decay', type=float, default=0.0, help="AdamW's decoupled weight decay")
p.add_argument('--beta1', type=float, default=0.85)
p.add_argument('--beta2', type=float, default=0.99)
p.add_argument('--grad-clip', type=float, default=0.0, help='clip the global gradient norm (0: off)')
p.add_argument('--dropout', type=float, default=0.0)
p.add_argument('--init-std', type=float, default=0.08, help='std of the initial weights (0.08, the reference)')
p.add_argument('--trace', default='', metavar='FILE',
               help='write every step\'s loss, the eval loss and the samples to FILE (a sync per step)')
args = p.parse_args()
for name in ('steps', 'batch', 'n_layer', 'n_embd', 'n_head', 'block_size'):
    if getattr(args, name) < 1:
        p.error(f"--{name.replace('_', '-')} must be at least 1")
if args.n_embd % args.n_head:
    p.error(f'--n-head {args.n_head} does not divide --n-embd {args.n_embd}')

if not os.path.isfile(args.input):
    sys.exit(f'{sys.argv[0]}: no input file at {args.input}: pass --input PATH (one document per line)')

try:
    import torch
    import torch.nn.functional as F
except ImportError:
    sys.exit(f'{sys.argv[0]}: PyTorch is not installed for {sys.executable}: pip install torch')

if args.threads:
    torch.set_num_threads(args.threads)
device, dtype = torch.device(args.device), getattr(torch, args.dtype)

# ---- data: the reference's documents, shuffle and vocabulary (or one text) ----
random.seed(args.seed)
if args.text:
    text = open(args.input, encoding='utf-8').read()
    uchars = sorted(set(text))
    BOS, vocab_size = len(uchars), len(uchars) + 1  # BOS unused, as in microgpt's text layout
    stoi = {ch: i for i, ch in enumerate(uchars)}
    stream = torch.tensor([stoi[ch] for ch in text], dtype=torch.long)
    n_train = int(len(stream) * 0.9)
    train_stream, val_stream = stream[:n_train].to(device), stream[n_train:].to(device)
    windows = torch.Generator().manual_seed(args.seed)
    print(f"num chars: {len(stream)}\nvocab size: {vocab_size}")
docs = [] if args.text else [line.strip() for line in open(args.input) if line.strip()]
if len(docs) < 2 and not args.text:
    sys.exit(f'{args.input}: {len(docs)} document(s); training needs at least 2 (one to train on, one held out)')
if not args.text:
    random.shuffle(docs)
    uchars = sorted(set(''.join(docs)))
    BOS, vocab_size = len(uchars), len(uchars) + 1
    stoi = {ch: i for i, ch in enumerate(uchars)}
    n_val = max(1, min(2000, len(docs) // 10))
    n_train = len(docs) - n_val
    print(f"num docs: {len(docs)}\nvocab size: {vocab_size}")

n_layer, n_embd, n_head, block_size = args.n_layer, args.n_embd, args.n_head, args.block_size
head_dim = n_embd // n_head

# One row per document: [BOS] + chars + [BOS] cut to block_size + 1 tokens, right-padded with -1
# (a -1 target is ignored by the loss; a -1 input is replaced by token 0, whose output is unused).
table = torch.full((len(docs), block_size + 1), -1, dtype=torch.long)  # (N, block_size + 1)
n_pred = []  # n of each document: its number of predicted positions
for i, doc in enumerate(docs):
    tokens = ([BOS] + [stoi[ch] for ch in doc] + [BOS])[:block_size + 1]
    table[i, :len(tokens)] = torch.tensor(tokens)
    n_pred.append(len(tokens) - 1)
table = table.to(device)

# ---- parameters: random.gauss(0, 0.08) in microgpt.py's order, each matrix row by row ----
def matrix(n_out, n_in, std=args.init_std):
    rows = [[random.gauss(0, std) for _ in range(n_in)] for _ in range(n_out)]
    return torch.tensor(rows, dtype=dtype, device=device).requires_grad_()

weights = {'wte': matrix(vocab_size, n_embd),    # (V, C)
           'wpe': matrix(block_size, n_embd),    # (block_size, C)
           'lm_head': matrix(vocab_size, n_embd)}  # (V, C)
for li in range(n_layer):
    weights[f'layer{li}.attn_wq'] = matrix(n_embd, n_embd)
    weights[f'layer{li}.attn_wk'] = matrix(n_embd, n_embd)
    weights[f'layer{li}.attn_wv'] = matrix(n_embd, n_embd)
    weights[f'layer{li}.attn_wo'] = matrix(n_embd, n_embd)
    weights[f'layer{li}.mlp_fc1'] = matrix(4 * n_embd, n_embd)  # (4C, C)
    weights[f'layer{li}.mlp_fc2'] = matrix(n_embd, 4 * n_embd)  # (C, 4C)
params = list(weights.values())
print(f"num params: {sum(w.numel() for w in params)}")


def rmsnorm(x):
    return x * (x.pow(2).mean(-1, keepdim=True) + 1e-5).rsqrt()


def gpt(idx):
    """Token ids (B, T) -> logits (B, T, V)."""
    B, T = idx.shape
    drop = lambda t: F.dropout(t, args.dropout, training=torch.is_grad_enabled()) if args.dropout else t
    x = drop(rmsnorm(weights['wte'][idx] + weights['wpe'][:T]))  # (B, T, C)
    causal = torch.ones(T, T, dtype=torch.bool, device=idx.device).tril()
    for li in range(n_layer):
        w = lambda name: weights[f'layer{li}.{name}']
        # attention: r + Wo(concat of the heads' causal attention)
        r, x = x, rmsnorm(x)
        q, k, v = (F.linear(x, w(f'attn_w{c}')).view(B, T, n_head, head_dim).transpose(1, 2)
                   for c in 'qkv')  # each (B, H, T, D)
        att = (q @ k.transpose(-2, -1)) / math.sqrt(head_dim)  # (B, H, T, T)
        att = drop(att.masked_fill(~causal, float('-inf')).softmax(-1))
        x = drop(F.linear((att @ v).transpose(1, 2).reshape(B, T, n_embd), w('attn_wo'))) + r
        # MLP: r + fc2(relu(fc1 x))
        r, x = x, rmsnorm(x)
        x = drop(F.linear(F.linear(x, w('mlp_fc1')).relu(), w('mlp_fc2'))) + r
    return F.linear(x, weights['lm_head'])  # (B, T, V)


def train_batch(start, size):
    """Inputs (B, T), targets (B, T) (-1 = padding) and the number of real targets of
    training documents start .. start + size - 1 (modulo their number); with --text, `size`
    windows at random offsets."""
    if args.text:
        offsets = torch.randint(len(train_stream) - block_size, (size,), generator=windows).to(device)
        rows = train_stream[offsets[:, None] + torch.arange(block_size + 1, device=device)]  # (B, T + 1)
        return rows[:, :-1], rows[:, 1:], size * block_size
    if size == 1:  # the reference: exactly n positions, no padding
        i = start % n_train
        n = n_pred[i]
        return table[i, None, :n], table[i, None, 1:n + 1], n
    rows = [(start + j) % n_train for j in range(size)]
    batch = table[torch.tensor(rows, device=device)]  # (B, block_size + 1)
    return batch[:, :block_size].clamp(min=0), batch[:, 1:], sum(n_pred[i] for i in rows)


# ---- training ----
optimizer = torch.optim.AdamW(params, lr=args.lr, betas=(args.beta1, args.beta2), eps=1e-8,
                              weight_decay=args.weight_decay)


def lr_at(step):
    """microgpt's schedule: warmup, then linear (the reference's) or cosine down to --min-lr."""
    if step < args.warmup:
        return args.lr * (step + 1) / (args.warmup + 1)
    progress = (step - args.warmup) / (args.steps - args.warmup)
    remaining = 0.5 * (1 + math.cos(math.pi * progress)) if args.cosine else 1 - progress
    return args.min_lr + (args.lr - args.min_lr) * remaining



trace = open(args.trace, 'w') if args.trace else None
n_tokens = 0
if device.type == 'cuda':
    torch.cuda.synchronize()
t0, c0 = time.perf_counter(), time.process_time()
for step in range(args.steps):
    # the learning rate: linear decay to zero over the run (the reference's), unless told otherwise
    for group in optimizer.param_groups:
        group['lr'] = args.lr * (1 - step / args.steps) if not (args.warmup or args.cosine or args.min_lr) else lr_at(step)
    # forward, backward, update
    x, y, n = train_batch(step * args.batch, args.batch)
    n_tokens += n
    loss = F.cross_entropy(gpt(x).flatten(0, 1), y.flatten(), ignore_index=-1)  # mean over real targets
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if args.grad_clip:
        torch.nn.utils.clip_grad_norm_(params, args.grad_clip)
    optimizer.step()
    # log
    if trace:
        trace.write(f"{step + 1} {loss.item()!r}\n")
    if step == 0 or (step + 1) % 100 == 0 or step == args.steps - 1:
        print(f"step {step + 1:4d} / {args.steps:4d} | loss {loss.item():.4f}")
if device.type == 'cuda':
    torch.cuda.synchronize()
wall, cpu = time.perf_counter() - t0, time.process_time() - c0
print(f"train time: {wall:.3f} s (cpu {cpu:.3f} s) | {args.steps / wall:.1f} steps/s | {n_tokens / wall:.0f} tokens/s "
      f"({n_tokens} target tokens, batch {args.batch}, {args.dtype}, {args.device}, threads {torch.get_num_threads()})")

# ---- held-out loss: mean NLL per target token over the held-out documents (or windows) ----
if args.text:
    with torch.no_grad():
        held = torch.Generator().manual_seed(args.seed + 1)
        offsets = torch.randint(len(val_stream) - block_size, (args.eval_windows,), generator=held).to(device)
        total = 0.0
        for chunk in offsets.split(max(1, 8192 // block_size)):
            rows = val_stream[chunk[:, None] + torch.arange(block_size + 1, device=device)]
            total += F.cross_entropy(gpt(rows[:, :-1]).flatten(0, 1), rows[:, 1:].flatten(), reduction='sum').item()
    print(f"eval nll/token on {args.eval_windows} held-out windows: {total / (args.eval_windows * block_size):.4f}")
    sys.exit(0)
with torch.no_grad():
    held = table[n_train:]  # (n_val, block_size + 1)
    logits = gpt(held[:, :block_size].clamp(min=0))
    nll = F.cross_entropy(logits.flatten(0, 1), held[:, 1:].flatten(), ignore_index=-1, reduction='sum')
    val_loss = (nll / (held[:, 1:] >= 0).sum()).item()
print(f"eval nll/token on last {n_val} docs: {val_loss:.4f}")
if trace:
    trace.write(f"eval {val_loss!r}\n")

# ---- sampling: the reference's stream of random.choices draws ----
temperature = 0.5
print("--- inference (new, hallucinated names) ---")
with torch.no_grad():
    for s in range(20):
        seq = [BOS]
        for _ in range(block_size):
            logits = gpt(torch.tensor([seq], device=device))[0, -1]  # (V,)
            probs = (logits / temperature).softmax(-1).double().cpu().tolist()
            token = random.choices(range(vocab_size), weights=probs)[0]
            if token == BOS:
                break
            seq.append(token)
        name = ''.join(uchars[t] for t in seq[1:])
        print(f"sample {s + 1:2d}: {name}")
        if trace:
            trace.write(f"sample {s + 1}{' ' + name if name else ''}\n")  # an empty sample: no trailing space
if trace:
    trace.close()
