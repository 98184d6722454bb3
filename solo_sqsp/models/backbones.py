"""Student backbones: torchvision ResNet18/ResNet50 without the classification head.

Feature width 512 (ResNet18) or 2048 (ResNet50), as in solo-learn. Small images (32x32 CIFAR, the
embedded 16-32 px digits) use the CIFAR stem of the paper's reference student: a 3x3 stride-1
first convolution (padding 1, initialised like torchvision's other convolutions) and no
max-pooling, so the last stage of a 32x32 input still sees a 4x4 map.
solo-learn's own CIFAR stem pads by 2; parameter names and shapes are the same either way.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from omegaconf import DictConfig, OmegaConf
from torch import nn
from torchvision import models

BACKBONES: dict[str, Callable[..., models.ResNet]] = {
    "resnet18": models.resnet18,
    "resnet50": models.resnet50,
}
SMALL_IMAGE_DATASETS = ("cifar10", "cifar100", "digits")


def uses_cifar_stem(cfg: DictConfig) -> bool:
    """``backbone.cifar_stem`` when set, else whether ``data.dataset`` holds small images.

    solo-learn decides by dataset name (cifar10/cifar100); ``digits`` is added, and the explicit
    key overrides both ways (e.g. a ``custom`` dataset of 32x32 images).
    """
    explicit = OmegaConf.select(cfg, "backbone.cifar_stem", default=None)
    if explicit is not None:
        return bool(explicit)
    return OmegaConf.select(cfg, "data.dataset", default=None) in SMALL_IMAGE_DATASETS


def build_backbone(name: str, cifar_stem: bool = False, **kwargs: Any) -> tuple[nn.Module, int]:
    """``(backbone, features_dim)``: a randomly initialised ResNet whose ``fc`` is the identity.

    ``kwargs`` go to the torchvision constructor (e.g. ``zero_init_residual=True``); the
    module's parameter names match solo-learn's (``conv1``, ``layer1``, ...).
    """
    if name not in BACKBONES:
        raise ValueError(f"backbone {name!r} is not available; choose one of {sorted(BACKBONES)}")
    backbone = BACKBONES[name](weights=None, **kwargs)
    features_dim = backbone.fc.in_features
    backbone.fc = nn.Identity()
    if cifar_stem:
        backbone.conv1 = nn.Conv2d(3, 64, kernel_size=3, stride=1, padding=1, bias=False)
        nn.init.kaiming_normal_(backbone.conv1.weight, mode="fan_out", nonlinearity="relu")
        backbone.maxpool = nn.Identity()
    return backbone, features_dim
