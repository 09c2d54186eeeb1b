#!/usr/bin/env python3
"""Make tests/reference/gpt2/: a small GPT-2 with random weights, made by Hugging Face's
transformers, and what transformers and PyTorch compute with it. The Rust GPT-2
(`src/gpt/gpt2.rs`) is checked against it in tests/gpt2.rs, with no network.

    pip install torch transformers safetensors tiktoken
    python3 tests/reference/gpt2_model.py --ranks ~/.cargo/registry/src/*/tiktoken-rs-0.12.1/assets/r50k_base.tiktoken

It writes:
- `saved/`: the model as `GPT2LMHeadModel.save_pretrained` writes it (`config.json`,
  `model.safetensors`: keys under `transformer.`, the tied `lm_head.weight` absent).
- `hub/`: the same weights as the Hugging Face hub's `gpt2` repositories hold them (keys without
  the prefix, each layer's `attn.bias` causal-mask buffer present).
- `logits.safetensors`: transformers' logits [T, V] for the ids of `PROMPT`.
- `expected.json`: those ids; the greedy continuation `generate` gives; the mean loss per token of
  `text.txt` tiled as `microgpt eval` tiles a text (windows of n_positions + 1 side by side, the
  short tail left out); and the losses of a few AdamW steps of PyTorch on fixed windows of it
  (nanoGPT's recipe: weight decay on the matrices only, gradients clipped to norm 1).

The weights are drawn far from transformers' initialisation (std 0.02 would leave every loss near
ln 50257 whatever the architecture does), LayerNorm gains and biases included, so that a wrong
transposition, GELU or epsilon shows in the logits.
"""
import argparse
import json
import os

import tiktoken
import torch
from safetensors.torch import save_file
from tiktoken.load import load_tiktoken_bpe
from tiktoken_ext.openai_public import r50k_pat_str
from transformers import GPT2Config, GPT2LMHeadModel

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "gpt2")
PROMPT = "ROMEO: soft! what light? Ça va ✨"
CONTINUE = "The king said"
NEW_TOKENS = 12
# the training check: nanoGPT's AdamW, a constant learning rate, these windows of text.txt
TRAIN = {"lr": 1e-3, "beta1": 0.9, "beta2": 0.95, "eps": 1e-8, "weight_decay": 0.1, "grad_clip": 1.0,
         "steps": 3, "offsets": [0, 5, 40, 77]}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--ranks", required=True, help="r50k_base.tiktoken (tiktoken-rs ships it)")
    args = parser.parse_args()
    enc = tiktoken.Encoding("gpt2-local", pat_str=r50k_pat_str, mergeable_ranks=load_tiktoken_bpe(args.ranks),
                            special_tokens={"<|endoftext|>": 50256})

    torch.manual_seed(1234)
    config = GPT2Config(n_embd=8, n_layer=2, n_head=2, n_positions=32, vocab_size=50257,
                        initializer_range=0.3, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)
    model = GPT2LMHeadModel(config).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "ln_" in name:  # LayerNorm gains around 1, biases around 0, all different
                p.copy_((1.0 if name.endswith("weight") else 0.0) + 0.3 * torch.randn_like(p))
            elif name.endswith("bias"):
                p.copy_(0.2 * torch.randn_like(p))
    os.makedirs(OUT, exist_ok=True)
    model.save_pretrained(os.path.join(OUT, "saved"), safe_serialization=True)

    # the hub's layout: no prefix, the mask buffers present, lm_head absent (tied)
    hub = {k.removeprefix("transformer."): v.contiguous() for k, v in model.state_dict().items()
           if k != "lm_head.weight"}
    p = config.n_positions
    for i in range(config.n_layer):
        hub[f"h.{i}.attn.bias"] = torch.tril(torch.ones(p, p)).view(1, 1, p, p)
    os.makedirs(os.path.join(OUT, "hub"), exist_ok=True)
    save_file(hub, os.path.join(OUT, "hub", "model.safetensors"), metadata={"format": "pt"})
    with open(os.path.join(OUT, "saved", "config.json")) as f:
        config_json = f.read()
    with open(os.path.join(OUT, "hub", "config.json"), "w") as f:
        f.write(config_json)

    ids = enc.encode(PROMPT)
    with torch.no_grad():
        logits = model(torch.tensor([ids])).logits[0]
    save_file({"logits": logits.contiguous()}, os.path.join(OUT, "logits.safetensors"))

    prompt = enc.encode(CONTINUE)
    with torch.no_grad():
        out = model.generate(torch.tensor([prompt]), max_new_tokens=NEW_TOKENS, do_sample=False,
                             pad_token_id=50256, attention_mask=torch.ones(1, len(prompt), dtype=torch.long))
    greedy = out[0, len(prompt):].tolist()

    with open(os.path.join(OUT, "text.txt"), encoding="utf-8") as f:
        tokens = enc.encode(f.read())
    windows = torch.tensor([tokens[o:o + p + 1] for o in range(0, len(tokens) - p, p)])
    with torch.no_grad():
        logits_all = model(windows[:, :-1]).logits
        eval_loss = torch.nn.functional.cross_entropy(logits_all.reshape(-1, config.vocab_size),
                                                      windows[:, 1:].reshape(-1)).item()

    train_losses = train(model, tokens, p)
    expected = {
        "prompt": PROMPT, "ids": ids,
        "continue": CONTINUE, "continue_ids": prompt, "greedy": greedy,
        "eval_windows": len(windows), "eval_loss": eval_loss,
        "train": dict(TRAIN, losses=train_losses),
    }
    with open(os.path.join(OUT, "expected.json"), "w") as f:
        f.write("{\n" + ",\n".join(f" {json.dumps(k)}: {json.dumps(v, ensure_ascii=False)}"
                                    for k, v in expected.items()) + "\n}\n")
    print(f"wrote {OUT}: eval loss {eval_loss:.6f} over {len(windows)} windows, greedy {greedy}, "
          f"training losses {train_losses}")


def train(model, tokens, p):
    """nanoGPT's fine-tuning step: AdamW, decay on the parameters of 2 dimensions or more only,
    the gradients clipped to a global norm; the loss before each step, then after the last."""
    model = model.train()
    decay = [q for q in model.parameters() if q.dim() >= 2]
    no_decay = [q for q in model.parameters() if q.dim() < 2]
    optim = torch.optim.AdamW([{"params": decay, "weight_decay": TRAIN["weight_decay"]},
                               {"params": no_decay, "weight_decay": 0.0}],
                              lr=TRAIN["lr"], betas=(TRAIN["beta1"], TRAIN["beta2"]), eps=TRAIN["eps"])
    batch = torch.tensor([tokens[o:o + p + 1] for o in TRAIN["offsets"]])
    x, y = batch[:, :-1], batch[:, 1:]
    losses = []
    for _ in range(TRAIN["steps"]):
        logits = model(x).logits
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.size(-1)), y.reshape(-1))
        losses.append(loss.item())
        optim.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), TRAIN["grad_clip"])
        optim.step()
    with torch.no_grad():
        logits = model(x).logits
        losses.append(torch.nn.functional.cross_entropy(logits.reshape(-1, logits.size(-1)), y.reshape(-1)).item())
    return losses


if __name__ == "__main__":
    main()
