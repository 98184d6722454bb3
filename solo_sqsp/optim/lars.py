"""LARS: SGD with layer-wise adaptive rate scaling (You et al., 2017, Eq. 6), solo-learn's variant.

For a parameter ``p`` with gradient ``g`` (both norms non-zero, and ``p`` not excluded):
    ``trust = eta * ||p|| / (||g|| + wd * ||p|| + eps)``;  with ``clip_lr``: ``min(trust / lr, 1)``
    ``d = trust * (g + wd * p)``
An excluded parameter (1-D, i.e. bias or norm weight, when ``exclude_bias_n_norm``) or one with a
zero norm takes ``d = g``: no scaling and no weight decay. Then heavy-ball momentum, as torch SGD:
``v = momentum * v + (1 - dampening) * d`` (``v = d`` on the first step), ``p -= lr * v``
(Nesterov: ``p -= lr * (d + momentum * v)``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import Tensor


class LARS(torch.optim.Optimizer):
    """LARS with solo-learn's options: ``eta``, ``clip_lr``, ``exclude_bias_n_norm``."""

    def __init__(
        self,
        params: Iterable[Tensor] | Iterable[dict[str, Any]],
        lr: float,
        momentum: float = 0.0,
        dampening: float = 0.0,
        weight_decay: float = 0.0,
        nesterov: bool = False,
        eta: float = 1e-3,
        eps: float = 1e-8,
        clip_lr: bool = False,
        exclude_bias_n_norm: bool = False,
    ) -> None:
        if lr < 0.0 or momentum < 0.0 or weight_decay < 0.0:
            raise ValueError(
                f"LARS needs lr, momentum and weight_decay >= 0, got {lr}, {momentum}, "
                f"{weight_decay}"
            )
        if nesterov and (momentum <= 0.0 or dampening != 0.0):
            raise ValueError("LARS with nesterov=True needs momentum > 0 and dampening = 0")
        defaults = {
            "lr": lr,
            "momentum": momentum,
            "dampening": dampening,
            "weight_decay": weight_decay,
            "nesterov": nesterov,
            "eta": eta,
            "eps": eps,
            "clip_lr": clip_lr,
            "exclude_bias_n_norm": exclude_bias_n_norm,
        }
        super().__init__(params, defaults)

    @staticmethod
    def _direction(p: Tensor, group: dict[str, Any]) -> Tensor:
        """The gradient after trust-ratio scaling and weight decay (see the module docstring)."""
        grad = p.grad
        if p.ndim == 1 and group["exclude_bias_n_norm"]:
            return grad
        p_norm = torch.linalg.vector_norm(p)
        g_norm = torch.linalg.vector_norm(grad)
        if p_norm == 0 or g_norm == 0:
            return grad
        wd = group["weight_decay"]
        trust = group["eta"] * p_norm / (g_norm + wd * p_norm + group["eps"])
        if group["clip_lr"]:
            trust = torch.clamp(trust / group["lr"], max=1.0)
        return (grad + wd * p) * trust

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:
        """One update of every parameter that has a gradient."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            momentum = group["momentum"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                direction = self._direction(p, group)
                if momentum != 0.0:
                    state = self.state[p]
                    if "momentum_buffer" not in state:
                        state["momentum_buffer"] = direction.clone()
                    else:
                        state["momentum_buffer"].mul_(momentum).add_(
                            direction, alpha=1.0 - group["dampening"]
                        )
                    buffer = state["momentum_buffer"]
                    direction = direction + momentum * buffer if group["nesterov"] else buffer
                p.add_(direction, alpha=-group["lr"])
        return loss
