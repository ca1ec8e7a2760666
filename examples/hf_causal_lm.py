"""A tiny Hugging Face Llama fine-tuned with and without crossent's fused loss.

    python examples/hf_causal_lm.py                      # 40 steps, memory at V=128256, 4 x 512
    python examples/hf_causal_lm.py --steps 5 --memory-vocab 32000 --memory-batch 2 --memory-length 256

Training: a randomly initialised ``LlamaForCausalLM`` (built from a config, no download;
vocabulary 4096, hidden 64, 2 layers) learns synthetic text in which each token is followed
by its own "successor" 90% of the time, in batches with a masked-out prompt and left padding.
Two copies start from the same weights and see the same batches: the stock model, and the
model after ``crossent.torch.transformers.fuse_loss``. Their loss curves are printed side by
side; they agree to float32 rounding.

Memory: one training step (forward with ``labels``, backward) of a Llama with the vocabulary
``--memory-vocab`` (Llama 3's 128256 by default), hidden 64, on ``--memory-batch`` x
``--memory-length`` tokens, each model in a fresh process (Linux): the resident set's
high-water mark is reset after the model, the batch and a small warm-up step exist, and the
figure is the peak (``VmHWM``) minus the resident set at that moment. The stock step holds the
N x V float32 logits (and their log-softmax and gradient); the fused step never forms them.
"""

from __future__ import annotations

import argparse
import copy
import json
import re
import subprocess
import sys

import torch
from transformers import LlamaConfig, LlamaForCausalLM

from crossent.torch.transformers import fuse_loss

MIB = 1 << 20


def build(vocab, seed=0):
    config = LlamaConfig(vocab_size=vocab, hidden_size=64, intermediate_size=128,
                         num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                         pad_token_id=0)
    torch.manual_seed(seed)
    return LlamaForCausalLM(config)


def synthetic_batches(vocab, steps, rows=8, length=64, seed=1):
    """Successor-chain text, left-padded, with a prompt of 4 tokens not trained on."""
    g = torch.Generator().manual_seed(seed)
    successor = torch.randperm(vocab - 1, generator=g) + 1  # token 0 is the padding
    for _ in range(steps):
        ids = torch.empty(rows, length, dtype=torch.long)
        ids[:, 0] = torch.randint(1, vocab, (rows,), generator=g)
        for t in range(1, length):
            noise = torch.randint(1, vocab, (rows,), generator=g)
            keep = torch.rand(rows, generator=g) < 0.9
            ids[:, t] = torch.where(keep, successor[ids[:, t - 1] - 1], noise)
        mask = torch.ones_like(ids)
        pads = torch.randint(0, length // 4, (rows,), generator=g)
        for r, p in enumerate(pads.tolist()):
            ids[r, :p], mask[r, :p] = 0, 0
        labels = ids.masked_fill(mask == 0, -100)
        labels[:, : length // 4 + 4] = -100
        yield dict(input_ids=ids, attention_mask=mask, labels=labels)


def train(steps, vocab=4096):
    stock = build(vocab)
    fused = fuse_loss(copy.deepcopy(stock))
    optimizers = [torch.optim.AdamW(m.parameters(), lr=3e-3) for m in (stock, fused)]
    curves = ([], [])
    for inputs in synthetic_batches(vocab, steps):
        for model, optimizer, curve in zip((stock, fused), optimizers, curves):
            loss = model(**inputs).loss
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            curve.append(loss.item())
    return curves


def _status_mib(field):
    with open("/proc/self/status") as f:
        return int(re.search(rf"{field}:\s+(\d+) kB", f.read()).group(1)) / 1024


def step_peak(kind, vocab, rows, length):
    """Peak extra resident memory (MiB) of one training step, measured in this process."""
    model = build(vocab)
    if kind == "fused":
        fuse_loss(model)
    inputs = next(synthetic_batches(vocab, 1, rows=rows, length=length))
    model(**next(synthetic_batches(vocab, 1, rows=1, length=8))).loss.backward()  # warm-up
    model.zero_grad(set_to_none=True)
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # reset the peak resident set (VmHWM) to the current one
    base = _status_mib("VmRSS")
    loss = model(**inputs).loss
    loss.backward()
    return _status_mib("VmHWM") - base, loss.item()


def step_peak_in_subprocess(kind, vocab, rows, length):
    out = subprocess.run([sys.executable, __file__, "--worker", kind, "--memory-vocab", str(vocab),
                          "--memory-batch", str(rows), "--memory-length", str(length)],
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--memory-vocab", type=int, default=128256)
    parser.add_argument("--memory-batch", type=int, default=4)
    parser.add_argument("--memory-length", type=int, default=512)
    parser.add_argument("--worker", choices=["stock", "fused"], help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    shape = (args.memory_vocab, args.memory_batch, args.memory_length)
    if args.worker:
        peak, loss = step_peak(args.worker, *shape)
        print(json.dumps({"peak_mib": peak, "loss": loss}))
        return

    stock, fused = train(args.steps)
    print("step   stock loss   fused loss")
    for step, (a, b) in enumerate(zip(stock, fused)):
        print(f"step {step:3d}  loss {a:.6f}  loss {b:.6f}")
    print(f"largest difference between the curves: {max(abs(a - b) for a, b in zip(stock, fused)):.2e}")

    vocab, rows, length = shape
    logits_mib = rows * length * vocab * 4 / MIB
    peaks = {kind: step_peak_in_subprocess(kind, *shape) for kind in ("stock", "fused")}
    print(f"one training step at vocabulary {vocab}, hidden 64, {rows} x {length} tokens "
          f"(fresh processes; float32 logits would take {logits_mib:.1f} MiB):")
    for kind, result in peaks.items():
        print(f"  {kind:5s} peak {result['peak_mib']:9.1f} MiB  loss {result['loss']:.6f}")
    saved = peaks["stock"]["peak_mib"] - peaks["fused"]["peak_mib"]
    print(f"  saved {saved:.1f} MiB = {saved / logits_mib:.2f} x the logits' size; "
          f"fused / stock peak = {peaks['fused']['peak_mib'] / peaks['stock']['peak_mib']:.3f}")


if __name__ == "__main__":
    main()
