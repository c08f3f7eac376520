"""Running under ``torchrun``: the process group, this process's place in it, and the collectives
the training loop needs. Plain torch.distributed; nothing here is home-made communication.

Outside torchrun (or before ``session`` starts the group) every function answers as a single
process would: rank 0 of 1, reductions are no-ops. That is what keeps a one-process run
exactly what it was.
"""

from __future__ import annotations

import contextlib
import datetime
import os
from collections.abc import Iterator

import torch
import torch.distributed as dist

from .._common import launched

# Every collective gives up after this long instead of waiting forever for a rank that is stuck
# (a dead rank is noticed sooner: torchrun's agent stops the others when one exits non-zero).
# Generous, because the others wait at the next collective while rank 0 evaluates, writes the
# checkpoint and plots, or while the first process on a machine downloads the data.
TIMEOUT = datetime.timedelta(minutes=10)


def active() -> bool:
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    return dist.get_rank() if active() else 0


def world_size() -> int:
    return dist.get_world_size() if active() else 1


def is_main() -> bool:
    """Rank 0: the one process that reports, prints and writes files."""
    return rank() == 0


def local_rank() -> int | None:
    """This process's index on its machine (its GPU), or None when not distributed."""
    return int(os.environ["LOCAL_RANK"]) if active() else None


@contextlib.contextmanager
def session() -> Iterator[None]:
    """Under torchrun: join the process group for the duration (NCCL for CUDA tensors, gloo for
    CPU ones), pinned to this machine's GPU LOCAL_RANK when there is one. Otherwise: nothing."""
    if not launched() or active():
        yield
        return
    local = int(os.environ["LOCAL_RANK"])
    if torch.cuda.is_available() and local < torch.cuda.device_count():
        torch.cuda.set_device(local)  # NCCL and broadcast_object_list use the current device
    backend = "cpu:gloo,cuda:nccl" if torch.cuda.is_available() else "gloo"
    dist.init_process_group(backend, timeout=TIMEOUT)
    try:
        yield
    finally:
        dist.destroy_process_group()


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """The sum over ranks, in place (and returned); unchanged in a single process."""
    if active():
        dist.all_reduce(tensor)
    return tensor


def barrier() -> None:
    if active():
        dist.barrier()


def broadcast_from_main(value):
    """Rank 0's ``value`` (any picklable object) on every rank."""
    if not active():
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def broadcast_buffers(model: torch.nn.Module) -> None:
    """Give every rank rank 0's buffers (BatchNorm running statistics), so all ranks evaluate
    the model rank 0 saves."""
    if active():
        for buffer in model.buffers():
            dist.broadcast(buffer, src=0)


@contextlib.contextmanager
def local_main_first() -> Iterator[None]:
    """The first process on each machine runs the block before the others on that machine (a
    download into a shared cache must not happen eight times at once)."""
    first = local_rank() in (None, 0)
    if not first:
        barrier()
    yield
    if first and active():
        barrier()
