"""The squeeze module T: pooled generator features -> compact teacher representation h (Sec. 4.1).

Fig. 3 of the paper and ``CompactRepr`` of its reference code: one ``Linear(C_k, hidden)`` (with
bias) per selected generator feature, the results summed, then an MLP of ``depth`` linear layers,
``[Linear(hidden, hidden, bias=False), BatchNorm1d, ReLU] x (depth - 1)`` and
``Linear(hidden, out_dim)`` (with bias). ``depth = 0`` is vanilla distillation (Table 5 rows a/b,
the reference code's ``VanillaCompactRepr``): ``h`` is the concatenation of the pooled features.
"""

from collections.abc import Sequence

import torch
from torch import Tensor, nn


class SqueezeModule(nn.Module):
    """Squeeze pooled generator features ``(N, C_k)``, one per block, into ``h`` ``(N, out_dim)``.

    Args:
        in_dims: width ``C_k`` of each pooled teacher feature, in the order ``forward`` gets them.
        hidden_dim: width of the summed lateral projections and of the MLP's hidden layers.
        out_dim: width of ``h``; must equal the student projector's output width.
        depth: number of linear layers in the MLP after the sum; 0 = no squeeze (concatenation,
            ``out_dim = sum(in_dims)``, ``hidden_dim`` and ``out_dim`` unused).
    """

    def __init__(
        self,
        in_dims: Sequence[int],
        hidden_dim: int = 2048,
        out_dim: int = 2048,
        depth: int = 3,
    ) -> None:
        super().__init__()
        in_dims = [int(c) for c in in_dims]
        if not in_dims:
            raise ValueError("SqueezeModule needs at least one teacher feature; in_dims is empty.")
        if any(c <= 0 for c in in_dims):
            raise ValueError(f"SqueezeModule in_dims must all be positive, got {in_dims}.")
        if depth < 0:
            raise ValueError(f"SqueezeModule depth must be >= 0 (0 = no squeeze), got {depth}.")
        if depth > 0 and (hidden_dim <= 0 or out_dim <= 0):
            raise ValueError(
                f"SqueezeModule hidden_dim and out_dim must be positive, got "
                f"hidden_dim={hidden_dim}, out_dim={out_dim}."
            )
        self.in_dims = in_dims
        self.depth = depth
        self.out_dim = sum(in_dims) if depth == 0 else out_dim
        if depth == 0:
            return
        self.lateral = nn.ModuleList(nn.Linear(c, hidden_dim) for c in in_dims)
        layers: list[nn.Module] = []
        for _ in range(depth - 1):
            layers += [
                nn.Linear(hidden_dim, hidden_dim, bias=False),
                nn.BatchNorm1d(hidden_dim),
                nn.ReLU(inplace=True),
            ]
        layers.append(nn.Linear(hidden_dim, out_dim))
        self.head = nn.Sequential(*layers)

    def forward(self, features: Sequence[Tensor]) -> Tensor:
        self._check_features(features)
        if self.depth == 0:
            return torch.cat(list(features), dim=1)
        summed = sum(lateral(f) for lateral, f in zip(self.lateral, features, strict=True))
        return self.head(summed)

    def _check_features(self, features: Sequence[Tensor]) -> None:
        if len(features) != len(self.in_dims):
            raise ValueError(
                f"SqueezeModule was built for {len(self.in_dims)} teacher features "
                f"(widths {self.in_dims}) but got {len(features)}."
            )
        for k, (f, c) in enumerate(zip(features, self.in_dims, strict=True)):
            if f.dim() != 2 or f.shape[1] != c:
                raise ValueError(
                    f"SqueezeModule feature {k} must be pooled to shape (N, {c}), got "
                    f"{tuple(f.shape)}; global-average-pool feature maps first "
                    f"(GeneratorTeacher.sample returns pooled features)."
                )


def check_student_width(squeeze: SqueezeModule, student_out_dim: int) -> None:
    """Raise if the student projector's output width cannot be compared with ``h``."""
    if student_out_dim == squeeze.out_dim:
        return
    if squeeze.depth == 0:
        raise ValueError(
            f"Without a squeeze module (depth 0) the teacher representation is the concatenation "
            f"of the pooled features, {squeeze.out_dim} wide, but the student projector outputs "
            f"{student_out_dim}: set the projector output dim to {squeeze.out_dim} or use "
            f"depth >= 1."
        )
    raise ValueError(
        f"The squeeze module outputs {squeeze.out_dim} dims but the student projector outputs "
        f"{student_out_dim}: set both to the same width."
    )
