"""Learning-rate schedules of solo-learn's config: ``warmup_cosine``, ``step`` and ``none``.

``warmup_cosine`` at scheduler step ``t`` for a parameter group with base rate ``lr``:
    ``t < W``:  ``warmup_start_lr + (lr - warmup_start_lr) * t / W``   (linear warm-up)
    ``t >= W``: ``min_lr + (lr - min_lr) * (1 + cos(pi * (t - W) / (T - W))) / 2``
reaching ``min_lr`` at ``t = T``. ``W = 0`` is plain cosine decay from ``lr``, the paper's schedule.
``warmup_start_lr`` and ``min_lr`` are absolute rates shared by all groups, as in solo-learn.
``step`` multiplies by 0.1 at each of ``lr_decay_steps`` (torch's MultiStepLR). Groups listed as
static keep their base rate (solo-learn's ``static_lr``, e.g. SimSiam's predictor).
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Callable, Sequence

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR

SCHEDULERS = ("warmup_cosine", "step", "none")
DEFAULT_WARMUP_EPOCHS = 10  # solo-learn's BaseMethod default


def warmup_cosine_lr(
    step: float,
    base_lr: float,
    warmup_steps: float,
    total_steps: float,
    warmup_start_lr: float,
    min_lr: float,
) -> float:
    """The ``warmup_cosine`` rate at ``step`` (formula in the module docstring)."""
    if step < warmup_steps:
        return warmup_start_lr + (base_lr - warmup_start_lr) * step / warmup_steps
    progress = min(1.0, (step - warmup_steps) / max(total_steps - warmup_steps, 1e-12))
    return min_lr + (base_lr - min_lr) * (1.0 + math.cos(math.pi * progress)) / 2.0


def _relative(rate_at: Callable[[int, float], float], base_lr: float) -> Callable[[int], float]:
    """A LambdaLR factor: the absolute rate divided by the group's base rate."""
    if base_lr == 0.0:
        return lambda step: 1.0
    return lambda step: rate_at(step, base_lr) / base_lr


def build_lr_scheduler(
    optimizer: Optimizer,
    name: str,
    warmup_steps: float = 0.0,
    total_steps: float = 1.0,
    warmup_start_lr: float = 0.0,
    min_lr: float = 0.0,
    lr_decay_steps: Sequence[int] | None = None,
    static_groups: Sequence[int] = (),
) -> LambdaLR | None:
    """The scheduler ``name`` over ``optimizer``'s groups; None for ``none``.

    Steps are whatever the caller steps the scheduler by (optimizer steps or epochs).
    """
    if name == "none":
        return None
    if name == "warmup_cosine":
        if total_steps <= warmup_steps:
            raise ValueError(
                f"warmup_cosine needs more total steps ({total_steps}) than warm-up steps "
                f"({warmup_steps}): lower scheduler.warmup_epochs or train longer"
            )

        def rate_at(step: int, base_lr: float) -> float:
            return warmup_cosine_lr(
                step, base_lr, warmup_steps, total_steps, warmup_start_lr, min_lr
            )

    elif name == "step":
        if not lr_decay_steps:
            raise ValueError("scheduler 'step' needs scheduler.lr_decay_steps, e.g. [60, 80]")
        milestones = sorted(lr_decay_steps)

        def rate_at(step: int, base_lr: float) -> float:
            return base_lr * 0.1 ** bisect.bisect_right(milestones, step)

    else:
        raise ValueError(f"scheduler.name must be one of {SCHEDULERS}, got {name!r}")

    factors = [
        (lambda step: 1.0) if index in static_groups else _relative(rate_at, group["lr"])
        for index, group in enumerate(optimizer.param_groups)
    ]
    return LambdaLR(optimizer, factors)
