"""A narrow StyleGAN2 generator for tests: real architecture, CPU-fast widths."""

import torch

from solo_sqsp.teachers.stylegan2 import Generator


def small_generator(
    resolution: int = 32,
    c_dim: int = 0,
    channel_base: int = 256,
    channel_max: int = 32,
    seed: int = 0,
) -> Generator:
    """z/w dims 16, 2 mapping layers, channels ``min(channel_base / res, channel_max)``."""
    torch.manual_seed(seed)
    return Generator(
        z_dim=16,
        c_dim=c_dim,
        w_dim=16,
        img_resolution=resolution,
        img_channels=3,
        mapping_kwargs={"num_layers": 2},
        synthesis_kwargs={"channel_base": channel_base, "channel_max": channel_max},
    )
