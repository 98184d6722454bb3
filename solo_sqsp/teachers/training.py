"""Training a small StyleGAN2 teacher from scratch (the embedded demo's teacher, or any images).

StyleGAN2's recipe (Karras et al., CVPR 2020; discriminator of Fig. 7c) at small scale; one seeded
``torch.Generator`` saved with the state makes a resumed run exact. The recipe in detail:
docs/architecture.md.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor, nn

from solo_sqsp.teachers.errors import TeacherFileError
from solo_sqsp.teachers.stylegan2 import Conv2dLayer, FullyConnectedLayer, Generator

STATE_FORMAT = "solo-sqsp-teacher-training"
STATE_VERSION = 1
AUGMENTATIONS = ("translation", "color")
TRANSLATION_RATIO = 0.125  # DiffAugment's default shift: up to 1/8 of the image side


@dataclass(frozen=True)
class TeacherTrainingConfig:
    """Architecture and optimisation settings; the generator's widths follow NVIDIA's
    ``channels(res) = min(channel_base // res, channel_max)``, the discriminator's too."""

    resolution: int = 16
    z_dim: int = 64
    w_dim: int = 64
    mapping_layers: int = 2
    channel_base: int = 1024
    channel_max: int = 128
    batch_size: int = 32
    lr: float = 0.0025
    betas: tuple[float, float] = (0.0, 0.99)
    r1_gamma: float = 0.01
    r1_interval: int = 16
    ema_kimg: float = 10.0
    ema_rampup: float = 0.05
    mbstd_group: int = 4
    augment: tuple[str, ...] = ("translation",)

    def __post_init__(self) -> None:
        unknown = sorted(set(self.augment) - set(AUGMENTATIONS))
        if unknown:
            raise ValueError(f"unknown augmentation(s) {unknown}; choose from {AUGMENTATIONS}")
        if self.resolution < 8 or self.resolution & (self.resolution - 1):
            raise ValueError(f"resolution must be a power of two >= 8, got {self.resolution}")
        if self.batch_size < 2:
            raise ValueError(f"batch_size must be at least 2, got {self.batch_size}")

    def channels(self, resolution: int) -> int:
        """Feature maps at ``resolution`` (NVIDIA's rule)."""
        return min(self.channel_base // resolution, self.channel_max)


def build_generator(config: TeacherTrainingConfig) -> Generator:
    """An unconditional RGB StyleGAN2 generator of ``config``'s size, randomly initialised."""
    return Generator(
        z_dim=config.z_dim,
        c_dim=0,
        w_dim=config.w_dim,
        img_resolution=config.resolution,
        img_channels=3,
        mapping_kwargs=dict(num_layers=config.mapping_layers),
        synthesis_kwargs=dict(channel_base=config.channel_base, channel_max=config.channel_max),
    )


class DiscriminatorBlock(nn.Module):
    """Residual down-sampling block (StyleGAN2 Fig. 7c): a 3x3 convolution, a 2x average pool and
    a 3x3 convolution at the halved size (NVIDIA filters and strides the second convolution; at
    the same cost), plus a pooled 1x1 skip; both branches scaled by sqrt(1/2)."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv0 = Conv2dLayer(in_channels, in_channels, 3, activation="lrelu")
        self.conv1 = Conv2dLayer(in_channels, out_channels, 3, activation="lrelu")
        self.skip = Conv2dLayer(in_channels, out_channels, 1, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        skip = self.skip(F.avg_pool2d(x, 2), gain=math.sqrt(0.5))
        x = self.conv1(F.avg_pool2d(self.conv0(x), 2), gain=math.sqrt(0.5))
        return skip + x


def minibatch_stddev(x: Tensor, group_size: int) -> Tensor:
    """Append one channel: the mean over features of the per-group standard deviation across
    samples (Karras et al. 2018, Sec. 3), so the discriminator sees sample diversity."""
    batch, channels, height, width = x.shape
    group = min(group_size, batch)
    if batch % group:
        raise ValueError(f"batch {batch} is not divisible by the mbstd group size {group}")
    y = x.reshape(group, batch // group, channels, height, width)
    y = (y.var(dim=0, unbiased=False) + 1e-8).sqrt().mean(dim=(1, 2, 3))
    y = y.reshape(-1, 1, 1, 1).repeat(group, 1, height, width)
    return torch.cat([x, y], dim=1)


class Discriminator(nn.Module):
    """Residual StyleGAN2 discriminator: RGB -> logit ``(N,)``, blocks from the image resolution
    down to 4x4, then minibatch stddev, a 3x3 convolution and two dense layers."""

    def __init__(self, config: TeacherTrainingConfig) -> None:
        super().__init__()
        self.mbstd_group = config.mbstd_group
        resolutions = [config.resolution // 2**i for i in range(int(math.log2(config.resolution)))]
        resolutions = [res for res in resolutions if res > 4]
        self.from_rgb = Conv2dLayer(3, config.channels(config.resolution), 1, activation="lrelu")
        self.blocks = nn.Sequential(
            *(
                DiscriminatorBlock(config.channels(res), config.channels(res // 2))
                for res in resolutions
            )
        )
        channels = config.channels(4)
        self.conv = Conv2dLayer(channels + 1, channels, 3, activation="lrelu")
        self.fc = FullyConnectedLayer(channels * 16, channels, activation="lrelu")
        self.out = FullyConnectedLayer(channels, 1)

    def forward(self, images: Tensor) -> Tensor:
        x = self.blocks(self.from_rgb(images))
        x = self.conv(minibatch_stddev(x, self.mbstd_group))
        return self.out(self.fc(x.flatten(1))).squeeze(1)


def diff_augment(images: Tensor, policy: tuple[str, ...], rng: torch.Generator) -> Tensor:
    """DiffAugment (Zhao et al. 2020) on images in [-1, 1], parameters drawn per sample:
    ``color``: brightness shift in [-0.5, 0.5), saturation and contrast factors in [0, 2) and
    [0.5, 1.5); ``translation``: integer shift up to 1/8 of the side, zero-filled."""
    batch, _, height, width = images.shape
    device = images.device

    def uniform(*shape: int) -> Tensor:
        return torch.rand(batch, *shape, generator=rng, device=device)

    if "color" in policy:
        images = images + (uniform(1, 1, 1) - 0.5)
        mean = images.mean(dim=1, keepdim=True)
        images = (images - mean) * (uniform(1, 1, 1) * 2) + mean
        mean = images.mean(dim=(1, 2, 3), keepdim=True)
        images = (images - mean) * (uniform(1, 1, 1) + 0.5) + mean
    if "translation" in policy:
        pad_y, pad_x = round(height * TRANSLATION_RATIO), round(width * TRANSLATION_RATIO)
        shift_y = torch.randint(-pad_y, pad_y + 1, (batch, 1, 1), generator=rng, device=device)
        shift_x = torch.randint(-pad_x, pad_x + 1, (batch, 1, 1), generator=rng, device=device)
        rows = torch.arange(height, device=device).reshape(1, -1, 1) + pad_y - shift_y
        cols = torch.arange(width, device=device).reshape(1, 1, -1) + pad_x - shift_x
        padded = F.pad(images, [pad_x, pad_x, pad_y, pad_y])
        samples = torch.arange(batch, device=device).reshape(-1, 1, 1)
        images = padded.permute(0, 2, 3, 1)[samples, rows, cols].permute(0, 3, 1, 2)
    return images.contiguous()


def images_to_training_tensor(images: np.ndarray, resolution: int) -> Tensor:
    """uint8 ``(N, H, W, 3)`` images -> float ``(N, 3, R, R)`` in [-1, 1] (antialiased bilinear
    resize when ``H, W`` differ from ``resolution``)."""
    if images.ndim != 4 or images.shape[3] != 3 or images.dtype != np.uint8:
        raise ValueError(
            f"training images must be uint8 (N, H, W, 3), got {images.dtype} {images.shape}"
        )
    tensor = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 127.5 - 1
    if tensor.shape[2:] != (resolution, resolution):
        tensor = F.interpolate(
            tensor, size=(resolution, resolution), mode="bilinear", antialias=True
        )
    return tensor.clamp(-1, 1).contiguous()


class TeacherTrainer:
    """Generator, discriminator, ``G_ema``, their optimisers and the random stream of one run.

    ``images``: the training set as float ``(N, 3, R, R)`` in [-1, 1]. ``step()`` runs one
    discriminator and one generator update; ``state_dict``/``load_state_dict`` cover everything
    a resumed run needs.
    """

    def __init__(
        self, images: Tensor, config: TeacherTrainingConfig = TeacherTrainingConfig(), seed: int = 0
    ) -> None:
        expected = (3, config.resolution, config.resolution)
        if images.ndim != 4 or tuple(images.shape[1:]) != expected:
            raise ValueError(f"images must have shape (N, *{expected}), got {tuple(images.shape)}")
        self.images = images
        self.config = config
        self.seed = seed
        torch.manual_seed(seed)  # parameter initialisation
        self.G = build_generator(config).train()
        self.D = Discriminator(config).train()
        self.G_ema = copy.deepcopy(self.G).eval().requires_grad_(False)
        self.rng = torch.Generator().manual_seed(seed)
        self.opt_g = torch.optim.Adam(self.G.parameters(), lr=config.lr, betas=config.betas)
        # Lazy regularisation: NVIDIA scales lr and betas by interval / (interval + 1).
        ratio = config.r1_interval / (config.r1_interval + 1)
        self.opt_d = torch.optim.Adam(
            self.D.parameters(),
            lr=config.lr * ratio,
            betas=(config.betas[0] ** ratio, config.betas[1] ** ratio),
        )
        self.iteration = 0

    @property
    def images_seen(self) -> int:
        """Real images shown to the discriminator so far."""
        return self.iteration * self.config.batch_size

    def _latents(self) -> Tensor:
        return torch.randn(self.config.batch_size, self.config.z_dim, generator=self.rng)

    def _generate(self) -> Tensor:
        return self.G(self._latents(), None, noise_generator=self.rng)

    def _discriminate(self, images: Tensor) -> Tensor:
        return self.D(diff_augment(images, self.config.augment, self.rng))

    def _real_batch(self) -> Tensor:
        index = torch.randint(len(self.images), (self.config.batch_size,), generator=self.rng)
        return self.images[index]

    def _discriminator_step(self) -> dict[str, float]:
        self.D.requires_grad_(True)
        with torch.no_grad():
            fake = self._generate()
        real = self._real_batch()
        logits_fake, logits_real = self._discriminate(fake), self._discriminate(real)
        loss = F.softplus(logits_fake).mean() + F.softplus(-logits_real).mean()
        self.opt_d.zero_grad(set_to_none=True)
        loss.backward()
        stats = {
            "loss_d": loss.item(),
            "d_real": logits_real.mean().item(),
            "d_fake": logits_fake.mean().item(),
        }
        if self.iteration % self.config.r1_interval == 0:
            real = self._real_batch().requires_grad_(True)
            (gradient,) = torch.autograd.grad(
                self._discriminate(real).sum(), real, create_graph=True
            )
            penalty = gradient.square().sum(dim=(1, 2, 3)).mean()
            (penalty * (self.config.r1_gamma / 2) * self.config.r1_interval).backward()
            stats["r1"] = penalty.item()
        self.opt_d.step()
        return stats

    def _generator_step(self) -> dict[str, float]:
        self.D.requires_grad_(False)
        loss = F.softplus(-self._discriminate(self._generate())).mean()
        self.opt_g.zero_grad(set_to_none=True)
        loss.backward()
        self.opt_g.step()
        return {"loss_g": loss.item()}

    @torch.no_grad()
    def _update_ema(self) -> None:
        config = self.config
        half_life = min(config.ema_kimg * 1000, self.images_seen * config.ema_rampup)
        beta = 0.5 ** (config.batch_size / max(half_life, 1e-8))
        for ema, live in zip(self.G_ema.parameters(), self.G.parameters(), strict=True):
            ema.lerp_(live, 1 - beta)
        for ema, live in zip(self.G_ema.buffers(), self.G.buffers(), strict=True):
            ema.copy_(live)

    def step(self) -> dict[str, float]:
        """One discriminator update, one generator update, the EMA; returns the losses (and the
        R1 penalty on its steps)."""
        stats = self._discriminator_step()
        stats |= self._generator_step()
        self.iteration += 1
        self._update_ema()
        if not all(math.isfinite(value) for value in stats.values()):
            raise FloatingPointError(
                f"teacher training diverged at iteration {self.iteration}: {stats}; lower --lr "
                "or raise --r1-gamma"
            )
        return stats

    def state_dict(self) -> dict[str, Any]:
        """Everything to resume: config, counters, networks, optimisers, random stream; tensors
        and plain data only (``torch.load(weights_only=True)`` reads it)."""
        return {
            "format": STATE_FORMAT,
            "version": STATE_VERSION,
            "config": dataclasses.asdict(self.config),
            "seed": self.seed,
            "num_images": len(self.images),
            "iteration": self.iteration,
            "G": self.G.state_dict(),
            "D": self.D.state_dict(),
            "G_ema": self.G_ema.state_dict(),
            "opt_g": self.opt_g.state_dict(),
            "opt_d": self.opt_d.state_dict(),
            "rng": self.rng.get_state(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a :meth:`state_dict`; ValueError when it belongs to another setup."""
        mine = self.state_dict()
        for key in ("format", "version", "config", "seed", "num_images"):
            found = _as_plain(state.get(key))
            if found != _as_plain(mine[key]):
                raise ValueError(
                    f"training state has {key}={found!r} but this run has {mine[key]!r}; resume "
                    "with the same settings and data, or start afresh without --resume"
                )
        self.iteration = state["iteration"]
        for name in ("G", "D", "G_ema", "opt_g", "opt_d"):
            getattr(self, name).load_state_dict(state[name])
        self.rng.set_state(state["rng"])


def _as_plain(value: Any) -> Any:
    """Tuples as lists, recursively, so a config compares equal after a save/load round trip."""
    if isinstance(value, (list, tuple)):
        return [_as_plain(item) for item in value]
    if isinstance(value, dict):
        return {key: _as_plain(item) for key, item in value.items()}
    return value


def save_training_state(trainer: TeacherTrainer, path: str | os.PathLike[str]) -> None:
    """``trainer.state_dict()`` to ``path``, atomically (temporary file, then ``os.replace``)."""
    target = Path(path)
    temporary = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        with open(temporary, "wb") as stream:
            torch.save(trainer.state_dict(), stream)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, target)
    finally:
        temporary.unlink(missing_ok=True)


def load_training_state(path: str | os.PathLike[str]) -> dict[str, Any]:
    """A state written by :func:`save_training_state` (read with ``weights_only=True``)."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise TeacherFileError(
            f"{path} is not a readable teacher training state ({type(error).__name__}: {error}); "
            "delete it to start afresh"
        ) from error
    if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
        raise TeacherFileError(f"{path} is not a {STATE_FORMAT} file; delete it to start afresh")
    return state


@torch.no_grad()
def sample_grid(
    generator: Generator, path: str | os.PathLike[str], rows: int = 8, cols: int = 8, seed: int = 0
) -> None:
    """A PNG of ``rows x cols`` samples (fixed latents from ``seed``, constant noise), each tile
    enlarged to at least 64 px with nearest-neighbour pixels."""
    z = torch.randn(rows * cols, generator.z_dim, generator=torch.Generator().manual_seed(seed))
    images = generator(z, None, noise_mode="const").clamp(-1, 1)
    images = ((images + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    size = generator.img_resolution
    grid = images.reshape(rows, cols, size, size, 3).transpose(0, 2, 1, 3, 4)
    grid = grid.reshape(rows * size, cols * size, 3)
    scale = max(1, 64 // size)
    picture = Image.fromarray(grid).resize((grid.shape[1] * scale, grid.shape[0] * scale), 0)
    picture.save(path)
