"""Data parallelism under torchrun: gloo on CPU, nccl on GPU.

Gradients are summed with one flat all-reduce per optimizer step rather than through DDP's
reducer hooks: the accumulation path runs several backward passes per step (features first,
then each micro-batch), which DDP's one-forward-one-backward bookkeeping does not fit.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed(device: torch.device) -> DistInfo:
    """Join the torchrun process group when WORLD_SIZE > 1 (env:// rendezvous)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    if not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend=backend)
        log.info("joined process group: rank %d/%d (%s)", dist.get_rank(), world, backend)
    return DistInfo(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", 0)))


def local_device(requested: torch.device) -> torch.device:
    """Under torchrun each process takes the GPU named by LOCAL_RANK."""
    if requested.type == "cuda" and "LOCAL_RANK" in os.environ and requested.index is None:
        dev = torch.device("cuda", int(os.environ["LOCAL_RANK"]))
        torch.cuda.set_device(dev)
        return dev
    return requested


class _GatherWithGrad(torch.autograd.Function):
    """all_gather whose backward sums every rank's gradient and hands each rank its slice."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, rank: int, world: int) -> torch.Tensor:
        x = x.contiguous()
        parts = [torch.empty_like(x) for _ in range(world)]
        dist.all_gather(parts, x)
        ctx.rank, ctx.rows = rank, x.shape[0]
        return torch.cat(parts, dim=0)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        grad = grad.contiguous().clone()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        return grad[ctx.rank * ctx.rows : (ctx.rank + 1) * ctx.rows], None, None


def gather_with_grad(x: torch.Tensor, info: DistInfo) -> torch.Tensor:
    """(B, D) per rank → (W·B, D) in rank order; the backward sums every rank's gradient into
    the owner's slice, so the loss over the global batch trains every rank's features."""
    if not info.enabled:
        return x
    return _GatherWithGrad.apply(x, info.rank, info.world)


def all_reduce_sum_(t: torch.Tensor, info: DistInfo) -> torch.Tensor:
    if info.enabled:
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


def sum_gradients(params: list[nn.Parameter], info: DistInfo) -> None:
    """Sum .grad over ranks (one flat buffer per dtype). The loss on each rank is already its
    share of the global mean, so the sum is the single-process gradient of the global batch."""
    if not info.enabled:
        return
    grads = [p.grad for p in params if p.grad is not None]
    by_dtype: dict[torch.dtype, list[torch.Tensor]] = {}
    for g in grads:
        by_dtype.setdefault(g.dtype, []).append(g)
    for group in by_dtype.values():
        flat = torch.cat([g.reshape(-1) for g in group])
        dist.all_reduce(flat, op=dist.ReduceOp.SUM)
        offset = 0
        for g in group:
            g.copy_(flat[offset : offset + g.numel()].view_as(g))
            offset += g.numel()


def broadcast_module(module: nn.Module, info: DistInfo) -> None:
    """Rank 0's parameters and buffers on every rank (the same starting point)."""
    if not info.enabled:
        return
    with torch.no_grad():
        for t in list(module.parameters()) + list(module.buffers()):
            dist.broadcast(t.data, src=0)


def all_gather_objects(obj: object, info: DistInfo) -> list:
    if not info.enabled:
        return [obj]
    out: list = [None] * info.world
    dist.all_gather_object(out, obj)
    return out


def barrier(info: DistInfo) -> None:
    if info.enabled:
        dist.barrier()


def shutdown(info: DistInfo) -> None:
    if info.enabled and dist.is_initialized():
        dist.destroy_process_group()
