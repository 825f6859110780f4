"""Data parallelism for lmtune's own trainer: one trial as ``world`` processes (``execution.gpus_per_trial``).

Rank 0 is the trainer process the executor started: it alone talks to the driver (events out, decisions
in), evaluates, saves checkpoints and the model. It starts ranks 1..world-1 as children of its own
(``python -m lmtune.training.worker TRIAL_FILE --rank R --port P``; they die with it), and every rank
joins one process group (NCCL on CUDA, one GPU per rank; gloo on CPU).

Every rank draws the same batch (the batch order is seeded) and trains its slice of it
(``index[rank::world]``); each slice's summed loss is divided by the loss terms of the *whole* batch and
the gradients are summed across ranks, so an update is the gradient of the batch mean: the effective
batch is the trial's ``batch_size`` whatever the number of processes, and without dropout the run
equals the one-process run (tested with gloo, 2 processes). Decisions and evaluation metrics are
broadcast from rank 0, so every rank takes the same branch (stop, pause, exploit, early stopping).
An out-of-memory error on any rank halves the micro-batch on every rank and redoes the step (the ranks
agree through one small all-reduce per step; at micro-batch 1 every rank fails the trial with the
reason).

Sharded (``execution.shard_model``, FSDP2 ``fully_shard``): each rank holds 1/world of every weight, its
gradient and its optimizer state; a block's weights are gathered for its forward and backward and freed
after, and gradients are reduce-scattered (summed, as above). Every rank then runs every forward: each
trains the same number of micro-batches (a rank whose slice ran out runs one whose loss counts zero),
every rank evaluates, and checkpoints and the saved model are gathered to full tensors that rank 0 writes
(the same files as an unsharded run's weights).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import torch

from lmtune.procs import die_with_parent

RANK_ENV = "LMTUNE_RANK"


@dataclass
class Group:
    """This process's place in its trial: rank 0 of 1 unless the trial runs data-parallel."""

    rank: int = 0
    world: int = 1
    backend: str = "gloo"
    sharded: bool = False  # FSDP: every rank holds a shard of the model and must join every forward
    children: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @property
    def main(self) -> bool:
        return self.rank == 0

    def device(self, requested: str) -> str:
        """Each rank's own GPU (cuda:RANK among the trial's visible ones); CPU ranks share the CPU."""
        if self.world > 1 and requested.startswith("cuda"):
            return f"cuda:{self.rank}"
        return requested

    def broadcast(self, obj: Any) -> Any:
        """Rank 0's ``obj`` on every rank."""
        if self.world == 1:
            return obj
        box = [obj]
        torch.distributed.broadcast_object_list(box, src=0)
        return box[0]

    def worst(self, status: int) -> int:
        """The largest ``status`` any rank holds (one small all-reduce): how a step's out-of-memory on one
        rank becomes every rank's retry (1) or every rank's failure (2)."""
        if self.world == 1:
            return status
        where = torch.device(f"cuda:{self.rank}") if self.backend == "nccl" else torch.device("cpu")
        flag = torch.tensor([status], dtype=torch.int64, device=where)
        torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MAX)
        return int(flag.item())

    def sum_gradients(self, params: list[torch.nn.Parameter], loss: torch.Tensor) -> torch.Tensor:
        """Sum every trainable parameter's gradient, and the batch loss, over the ranks (one all-reduce of
        one flat buffer). A rank whose slice was empty contributes zeros."""
        if self.world == 1:
            return loss
        if self.sharded:  # FSDP reduce-scattered the gradients in backward; only the loss is left to sum
            total = loss.detach().reshape(1).float().clone()
            torch.distributed.all_reduce(total)
            return total[0].to(loss.dtype)
        parts = [p.grad.reshape(-1) if p.grad is not None else torch.zeros(p.numel(), device=p.device,
                                                                            dtype=p.dtype) for p in params]
        flat = torch.cat([*[t.float() for t in parts], loss.reshape(1).float()])
        torch.distributed.all_reduce(flat)
        offset = 0
        for p in params:
            n = p.numel()
            p.grad = flat[offset:offset + n].view_as(p).to(p.dtype)
            offset += n
        return flat[-1].to(loss.dtype)

    def close(self, *, timeout: float = 60.0) -> None:
        if self.world > 1 and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()
        for child in self.children:
            try:
                child.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                child.kill()


def shard(model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """Shard ``model`` over the group's ranks in place (FSDP2): one unit per transformer block (the blocks
    `lmtune.training.truncate.find_blocks` finds; a model it finds none in is one unit), the rest
    (embeddings, head) in the root unit. Gradients are summed across ranks, not averaged: the loop divides
    each slice's loss by the whole batch's loss terms, as the unsharded ranks do."""
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    from lmtune.training.truncate import find_blocks

    try:
        blocks = list(find_blocks(model)[2])
    except ValueError:
        blocks = []
    mesh = init_device_mesh(device.type, (group().world,))
    units = [fully_shard(block, mesh=mesh) for block in blocks]
    units.append(fully_shard(model, mesh=mesh))
    for unit in units:  # each unit reduces its own gradients: every one sums
        unit.set_gradient_divide_factor(1.0)
        unit.set_force_sum_reduction_for_comms(True)  # plain SUM: gloo has no AVG or pre-multiplied sum
    return model


_GROUP = Group()


def group() -> Group:
    return _GROUP


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start(spec_path: str | Path, world: int, device: str, *, rank: int = 0, port: int | None = None,
          sharded: bool = False) -> Group:
    """Join (rank > 0) or start (rank 0: spawn the other ranks first) the trial's process group."""
    global _GROUP
    if world <= 1:
        _GROUP = Group()
        return _GROUP
    g = Group(rank=rank, world=world, sharded=sharded)
    if rank == 0:
        port = _free_port()
        for r in range(1, world):
            env = {**os.environ, RANK_ENV: str(r)}
            if device == "cpu" and env.get("OMP_NUM_THREADS", "").isdigit():  # the ranks share the cores
                env["OMP_NUM_THREADS"] = str(max(1, int(env["OMP_NUM_THREADS"]) // world))
            g.children.append(subprocess.Popen(  # their output goes to this trial's log; no protocol
                [sys.executable, "-m", "lmtune.training.worker", str(spec_path), "--rank", str(r), "--port",
                 str(port)], stdin=subprocess.DEVNULL, stdout=sys.stderr.fileno(), env=env,
                preexec_fn=die_with_parent if sys.platform == "linux" else None))
    assert port is not None
    backend = "nccl" if device.startswith("cuda") else "gloo"
    g.backend = backend
    if backend == "nccl":
        torch.cuda.set_device(g.rank)
    torch.distributed.init_process_group(backend, init_method=f"tcp://127.0.0.1:{port}", rank=rank,
                                         world_size=world, timeout=timedelta(minutes=30))
    _GROUP = g
    return g
