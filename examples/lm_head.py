"""A tiny language-model head trained on the CPU with crossent's fused linear cross-entropy.

    python examples/lm_head.py

The data: a token stream over a vocabulary of 4096 in which each token is followed by its own
"successor" 90% of the time. The model: an embedding and a small trunk give hidden states;
the output head (a 4096 x 64 weight and a bias) scores the next token. The loss of
``hidden @ head.weight.T + head.bias`` comes from ``crossent.torch.linear_cross_entropy``,
which never holds the batch x vocabulary logits; at the end it is checked against the naive
``F.cross_entropy(head(hidden), target)``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from crossent.torch import linear_cross_entropy

VOCAB, DIM, BATCH, STEPS = 4096, 64, 512, 40


def make_stream(length=20_000, seed=0):
    """Tokens where each one is followed by its successor 90% of the time."""
    g = torch.Generator().manual_seed(seed)
    successor = torch.randperm(VOCAB, generator=g).tolist()
    noise = torch.randint(0, VOCAB, (length,), generator=g).tolist()
    keep = (torch.rand(length, generator=g) < 0.9).tolist()
    tokens = [0]
    for i in range(1, length):
        tokens.append(successor[tokens[-1]] if keep[i] else noise[i])
    return torch.tensor(tokens)


class Trunk(torch.nn.Module):
    """Embedding and one hidden layer: the part of the model before the output head."""

    def __init__(self):
        super().__init__()
        self.embed = torch.nn.Embedding(VOCAB, DIM)
        self.mix = torch.nn.Linear(DIM, DIM)

    def forward(self, tokens):
        return torch.tanh(self.mix(self.embed(tokens)))


def build(seed=0):
    """The trunk and the full output head, initialised from ``seed``."""
    torch.manual_seed(seed)
    return Trunk(), torch.nn.Linear(DIM, VOCAB)


def batches(stream, steps=STEPS, seed=1):
    g = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        start = torch.randint(0, len(stream) - 1, (BATCH,), generator=g)
        yield stream[start], stream[start + 1]  # (current token, next token)


def main():
    stream = make_stream()
    trunk, head = build()
    params = list(trunk.parameters()) + list(head.parameters())
    optimizer = torch.optim.Adam(params, lr=1e-2)
    for step, (tokens, target) in enumerate(batches(stream)):
        loss = linear_cross_entropy(trunk(tokens), head.weight, target, head.bias, z_loss=1e-4)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if step % 10 == 0 or step == STEPS - 1:
            print(f"step {step:3d}  loss {loss.item():.4f}")
    tokens, target = next(batches(stream, steps=1, seed=2))
    with torch.no_grad():
        hidden = trunk(tokens)
        fused = linear_cross_entropy(hidden, head.weight, target, head.bias)
        naive = F.cross_entropy(head(hidden), target)
    print(f"held-out batch: fused {fused.item():.6f}  naive {naive.item():.6f}")


if __name__ == "__main__":
    main()
