"""A pretrained student as the analyses see it: its frozen backbone (as linear and k-NN
evaluation load it) and what its pretraining run recorded in ``args.json``: the dataset, the
crop size and the normalisation of its input views, and the teacher it distilled."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf
from PIL import Image
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, Subset
from torchvision import transforms

from solo_sqsp.config import omegaconf_select
from solo_sqsp.data import Normalization, pretrain_normalization
from solo_sqsp.data.datasets import Split, dataset_builder
from solo_sqsp.data.transforms import eval_grayscale
from solo_sqsp.evaluation import CheckpointError, PretrainedBackbone, load_frozen_backbone
from solo_sqsp.evaluation.checkpoint import ARGS_FILE
from solo_sqsp.evaluation.knn import extract_features


@dataclass
class Student:
    """The frozen backbone with its pretraining config ``cfg``, input ``crop_size`` and
    ``normalization`` (the statistics its real and synthetic views were normalised with)."""

    backbone: PretrainedBackbone
    cfg: DictConfig
    crop_size: int
    normalization: Normalization
    device: torch.device

    @torch.no_grad()
    def features(self, views: Tensor, batch_size: int = 256) -> Tensor:
        """Backbone features ``(N, D)`` fp32 of normalised views, on the CPU."""
        module = self.backbone.module.eval()
        return torch.cat(
            [module(batch.to(self.device)).float().cpu() for batch in views.split(batch_size)]
        )

    @property
    def grayscale(self) -> bool:
        """Whether the run read its clean views in grayscale (``data.eval_grayscale``)."""
        return eval_grayscale(self.cfg)

    def teacher_path(self) -> str | None:
        """``method_kwargs.teacher.path`` of the pretraining run (None for teacher-free runs)."""
        return omegaconf_select(self.cfg, "method_kwargs.teacher.path")

    def real_view_transform(self) -> transforms.Compose:
        """A real image as the student's pretraining view without the random augmentation:
        resized (bicubic, shorter side) and centre-cropped to the crop size, in grayscale with
        ``data.eval_grayscale``, normalised."""
        gray = [transforms.Grayscale(num_output_channels=3)] if self.grayscale else []
        return transforms.Compose(
            [
                *gray,
                transforms.Resize(self.crop_size, interpolation=Image.Resampling.BICUBIC),
                transforms.CenterCrop(self.crop_size),
                transforms.ToTensor(),
                transforms.Normalize(self.normalization.mean, self.normalization.std),
            ]
        )

    def labelled_split(
        self, split: Split = "train", train_path: str | None = None
    ) -> Dataset | None:
        """The labelled ``train`` or ``val`` split of the pretraining dataset as real views
        (None for a ``val`` split the dataset lacks); ``train_path`` overrides
        ``data.train_path`` of ``args.json``."""
        cfg = self.cfg
        if train_path is not None:
            cfg = OmegaConf.merge(cfg, {"data": {"train_path": train_path}})
        builder = dataset_builder(cfg)
        if split == "val" and not builder.has_online_val(cfg):
            return None
        builder.check(cfg, split)
        return builder.open(cfg, split, self.real_view_transform())

    def split_features(
        self, dataset: Dataset, indices: Tensor | None = None, batch_size: int = 256
    ) -> tuple[Tensor, Tensor]:
        """``(features, targets)`` on the CPU of ``dataset`` (or of its ``indices``)."""
        if indices is not None:
            dataset = Subset(dataset, indices.tolist())
        loader = DataLoader(dataset, batch_size=batch_size, shuffle=False)
        features, targets = extract_features(self.backbone.module, loader, self.device)
        return features.cpu(), targets.cpu()


def load_student(checkpoint: str | Path, device: torch.device | str = "cpu") -> Student:
    """The student of a pretraining checkpoint (or run folder) that has its ``args.json``."""
    device = torch.device(device)
    backbone = load_frozen_backbone(
        OmegaConf.create({"pretrained_feature_extractor": str(checkpoint)})
    )
    if backbone.pretrain_args is None:
        raise CheckpointError(
            f"{backbone.checkpoint}: no {ARGS_FILE} beside it; the analyses read the dataset, "
            "crop size and teacher of the pretraining run from it. Pass a checkpoint written by "
            "main_pretrain.py, in its run folder"
        )
    cfg = OmegaConf.create(backbone.pretrain_args)
    augmentations = omegaconf_select(cfg, "augmentations")
    if not augmentations:
        raise CheckpointError(
            f"{backbone.checkpoint.parent / ARGS_FILE} lists no augmentations; the crop size and "
            "normalisation of the student's views come from augmentations[0]"
        )
    backbone.module.to(device)
    return Student(
        backbone=backbone,
        cfg=cfg,
        crop_size=int(augmentations[0].crop_size),
        normalization=pretrain_normalization(cfg, augmentations[0]),
        device=device,
    )
