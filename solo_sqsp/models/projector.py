"""The student's projector: the 5-layer MLP of the paper's student (Sec. 4, Table 6)."""

from torch import nn


def build_projector(in_dim: int, out_dim: int = 2048, num_layers: int = 5) -> nn.Sequential:
    """``(num_layers - 1) x [Linear(d, d, bias=False), BN, ReLU]`` then ``Linear(d, out_dim)``.

    ``d = in_dim`` is the backbone's feature width (512 for ResNet18, 2048 for ResNet50), as in
    the paper's reference student; the last layer has no bias either.
    """
    if num_layers < 1:
        raise ValueError(f"projector num_layers must be >= 1, got {num_layers}")
    layers: list[nn.Module] = []
    for _ in range(num_layers - 1):
        layers += [nn.Linear(in_dim, in_dim, bias=False), nn.BatchNorm1d(in_dim), nn.ReLU()]
    layers.append(nn.Linear(in_dim, out_dim, bias=False))
    return nn.Sequential(*layers)
