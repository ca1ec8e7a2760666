"""A tiny teacher's language-model head distilled into a smaller student on the CPU.

    python examples/distill_lm_head.py

The data: a token stream over a vocabulary of 2048 in which each token is followed by its
own "successor" 90% of the time. The teacher (64-dimensional embeddings, a 2048 x 64 head)
knows the successor table: its head row for token j is its embedding of j's predecessor, so
its next-token distribution peaks on the successor. The student (16 dimensions, its own
trunk and head) is trained only by ``crossent.torch.linear_distillation_loss``: the
generalised Jensen-Shannon divergence (beta = 0.5) between the two heads' distributions at
temperature 2, mixed with 20% of the hard cross-entropy of the stream's next tokens. Neither
model's batch x vocabulary logits are ever held. At the end the loss is checked against the
naive computation on materialised logits.
"""

from __future__ import annotations

import math

import torch

from crossent.torch import linear_distillation_loss

VOCAB, TEACHER_DIM, STUDENT_DIM, BATCH, STEPS = 2048, 64, 16, 256, 40
BETA, TEMPERATURE, HARD_WEIGHT = 0.5, 2.0, 0.2


def make_stream(length=20_000, seed=0):
    """Tokens where each one is followed by its successor 90% of the time; and the table."""
    g = torch.Generator().manual_seed(seed)
    successor = torch.randperm(VOCAB, generator=g)
    table = successor.tolist()
    noise = torch.randint(0, VOCAB, (length,), generator=g).tolist()
    keep = (torch.rand(length, generator=g) < 0.9).tolist()
    tokens = [0]
    for i in range(1, length):
        tokens.append(table[tokens[-1]] if keep[i] else noise[i])
    return torch.tensor(tokens), successor


def build_teacher(successor, seed=0):
    """Embeddings on the unit sphere; head row j = 6 x the embedding of j's predecessor."""
    g = torch.Generator().manual_seed(seed)
    embed = torch.nn.functional.normalize(torch.randn(VOCAB, TEACHER_DIM, generator=g), dim=1)
    predecessor = torch.argsort(successor)
    return embed, 6.0 * embed[predecessor]


class Student(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = torch.nn.Embedding(VOCAB, STUDENT_DIM)
        self.mix = torch.nn.Linear(STUDENT_DIM, STUDENT_DIM)
        self.head = torch.nn.Linear(STUDENT_DIM, VOCAB)

    def forward(self, tokens):  # hidden states, before the head
        return torch.tanh(self.mix(self.embed(tokens)))


def batches(stream, steps=STEPS, seed=1):
    g = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        start = torch.randint(0, len(stream) - 1, (BATCH,), generator=g)
        yield stream[start], stream[start + 1]


def naive_loss(student_logits, teacher_logits, target):
    """The same loss from materialised logits: 0.2 CE + 0.8 JSD_0.5 at T = 2 (TRL's mixture)."""
    log_q = torch.log_softmax(student_logits / TEMPERATURE, dim=-1)
    log_p = torch.log_softmax(teacher_logits / TEMPERATURE, dim=-1)
    log_m = torch.logaddexp(log_p + math.log(BETA), log_q + math.log(1 - BETA))
    jsd = BETA * (log_p.exp() * (log_p - log_m)).sum(-1) + (1 - BETA) * (log_q.exp() * (log_q - log_m)).sum(-1)
    ce = torch.nn.functional.cross_entropy(student_logits, target, reduction="none")
    return (HARD_WEIGHT * ce + (1 - HARD_WEIGHT) * jsd).mean()


def main():
    torch.manual_seed(0)
    stream, successor = make_stream()
    teacher_embed, teacher_head = build_teacher(successor)
    student = Student()
    optimizer = torch.optim.Adam(student.parameters(), lr=2e-2)
    for step, (tokens, target) in enumerate(batches(stream)):
        loss = linear_distillation_loss(student(tokens), student.head.weight, teacher_embed[tokens],
                                        teacher_head, target, student_bias=student.head.bias,
                                        beta=BETA, temperature=TEMPERATURE, hard_weight=HARD_WEIGHT)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if step % 10 == 0 or step == STEPS - 1:
            print(f"step {step:3d}  loss {loss.item():.4f}")
    tokens, target = next(batches(stream, steps=1, seed=2))
    with torch.no_grad():
        hidden = student(tokens)
        fused = linear_distillation_loss(hidden, student.head.weight, teacher_embed[tokens], teacher_head,
                                         target, student_bias=student.head.bias, beta=BETA,
                                         temperature=TEMPERATURE, hard_weight=HARD_WEIGHT)
        naive = naive_loss(student.head(hidden), teacher_embed[tokens] @ teacher_head.T, target)
        agree = (student.head(hidden).argmax(1) == successor[tokens]).float().mean()
    print(f"held-out batch: fused {fused.item():.6f}  naive {naive.item():.6f}")
    print(f"student's top token is the successor for {agree.item():.0%} of the batch")


if __name__ == "__main__":
    main()
