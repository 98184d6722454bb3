"""All-gather with gradients, so batch statistics are taken over the global batch under DDP.

VICReg's variance and covariance terms are statistics of the whole batch. Computed per rank they
would change with the number of GPUs; computed on the gathered batch they do not (VICReg's
official code, solo-learn's ``vicreg_loss_func`` and lightly's ``gather_distributed`` all do this).
"""

import torch
import torch.distributed as dist
from torch import Tensor


def is_distributed() -> bool:
    """True when a ``torch.distributed`` process group is initialised."""
    return dist.is_available() and dist.is_initialized()


class AllGatherWithGradient(torch.autograd.Function):
    """All-gather whose backward hands every rank the gradient of its own slice.

    Every rank computes the same loss on the gathered batch, so the gradient reaching rank ``r``'s
    slice is the sum over ranks of what each rank's loss puts on that slice (an all-reduce of the
    incoming gradients). After DDP averages parameter gradients over ranks, the parameters receive
    exactly the gradient of the loss on the global batch.
    """

    @staticmethod
    def forward(ctx, x: Tensor) -> tuple[Tensor, ...]:
        slices = [torch.empty_like(x) for _ in range(dist.get_world_size())]
        dist.all_gather(slices, x.contiguous())
        return tuple(slices)

    @staticmethod
    def backward(ctx, *slice_grads: Tensor) -> Tensor:
        grads = torch.stack(slice_grads)
        dist.all_reduce(grads, op=dist.ReduceOp.SUM)
        return grads[dist.get_rank()]


def gather(x: Tensor) -> Tensor:
    """Concatenate ``x`` from all ranks along dim 0, keeping gradients; identity without DDP.

    Every rank must pass a tensor of the same shape (equal per-rank batch sizes, as with
    ``drop_last=True`` loaders and fixed synthetic batch sizes).
    """
    if not is_distributed() or dist.get_world_size() == 1:
        return x
    return torch.cat(AllGatherWithGradient.apply(x), dim=0)
