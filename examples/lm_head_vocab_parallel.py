"""The tiny language-model head of lm_head.py, its vocabulary split over two gloo processes.

    python examples/lm_head_vocab_parallel.py

Two processes on this machine (gloo, 127.0.0.1) each hold the same trunk and half of the
output head: rank r keeps rows [r * V/2, (r + 1) * V/2) of the weight and bias, the default
layout of ``crossent.torch.vocab_parallel_linear_cross_entropy``. Only a few numbers per token
cross between them for the loss; the gradient of the hidden states is summed across the two,
so the trunks stay identical without any other synchronisation. The losses printed by rank 0
match those of the one-process lm_head.py (same data, same initial weights).
"""

from __future__ import annotations

import os
import socket

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from crossent.torch import vocab_parallel_linear_cross_entropy
from lm_head import STEPS, VOCAB, batches, build, make_stream

WORLD = 2


def run(rank, port):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), GLOO_SOCKET_IFNAME="lo")
    dist.init_process_group("gloo", rank=rank, world_size=WORLD)
    torch.set_num_threads(1)
    stream = make_stream()
    trunk, full_head = build()  # same seed on every rank: same trunk, same full head
    local = VOCAB // WORLD
    rows = slice(rank * local, (rank + 1) * local)
    weight = torch.nn.Parameter(full_head.weight.detach()[rows].clone())
    bias = torch.nn.Parameter(full_head.bias.detach()[rows].clone())
    optimizer = torch.optim.Adam(list(trunk.parameters()) + [weight, bias], lr=1e-2)
    for step, (tokens, target) in enumerate(batches(stream)):
        loss = vocab_parallel_linear_cross_entropy(trunk(tokens), weight, target, bias, z_loss=1e-4)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if rank == 0 and (step % 10 == 0 or step == STEPS - 1):
            print(f"step {step:3d}  loss {loss.item():.4f}  (vocabulary split over {WORLD} ranks)")
    dist.barrier()  # no rank tears the group down while a peer still talks to it
    dist.destroy_process_group()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


if __name__ == "__main__":
    mp.spawn(run, args=(free_port(),), nprocs=WORLD, join=True)
