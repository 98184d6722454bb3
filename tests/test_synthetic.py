"""The synthetic-sample source (solo_sqsp.synthetic.stream) on a real, small StyleGAN2 teacher."""

from __future__ import annotations

import pytest
import torch
from small_generator import small_generator
from torchvision.transforms.v2 import functional as tvf

from solo_sqsp.augment import BatchAugment
from solo_sqsp.synthetic.stream import SyntheticSource, stream_seed
from solo_sqsp.teachers import GeneratorTeacher

AUGMENTATION = {
    "rrc": {"enabled": True, "crop_min_scale": 0.2, "crop_max_scale": 1.0},
    "color_jitter": {
        "prob": 0.8,
        "brightness": 0.4,
        "contrast": 0.4,
        "saturation": 0.4,
        "hue": 0.1,
    },
    "grayscale": {"prob": 0.2},
    "horizontal_flip": {"prob": 0.5},
    "crop_size": 12,
}


CPU = torch.device("cpu")
CIFAR10_MEAN_STD = ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616))


def small_teacher(device: torch.device = CPU) -> GeneratorTeacher:
    generator = small_generator(resolution=16)
    return GeneratorTeacher(generator.to(device), noise_mode="const")


@pytest.fixture(scope="module")
def teacher() -> GeneratorTeacher:
    return small_teacher()


@pytest.fixture(scope="module")
def augment() -> BatchAugment:
    mean, std = CIFAR10_MEAN_STD
    return BatchAugment.from_cfg(AUGMENTATION, mean=mean, std=std)


def test_batch_holds_views_features_and_images_of_the_same_samples(teacher, augment):
    source = SyntheticSource(teacher, batch_size=6, augment=augment, num_views=2, seed=5)
    batch = source.next_batch()
    assert [view.shape for view in batch.views] == [(6, 3, 12, 12)] * 2
    assert not torch.allclose(batch.views[0], batch.views[1])
    assert [f.shape for f in batch.features] == [(6, d) for d in teacher.feature_dims]
    assert all(f.dtype == torch.float32 for f in batch.features)
    assert batch.images.shape == (6, 3, 16, 16)
    assert batch.images.min() >= 0 and batch.images.max() <= 1

    rng = torch.Generator().manual_seed(stream_seed(5, 0, 0, 0))
    sample = teacher.sample(6, rng)  # the same draws, replayed by hand
    torch.testing.assert_close(batch.images, (sample.images.clamp(-1, 1) + 1) / 2)
    for ours, theirs in zip(batch.features, sample.features, strict=True):
        torch.testing.assert_close(ours, theirs)


def test_without_augmentation_views_are_resized_and_normalized(teacher):
    mean, std = CIFAR10_MEAN_STD
    source = SyntheticSource(teacher, 4, augment=None, crop_size=8, mean=mean, std=std, seed=1)
    batch = source.next_batch()
    expected = tvf.normalize(tvf.resize(batch.images, [8, 8], antialias=True), mean, std)
    torch.testing.assert_close(batch.views[0], expected, atol=1e-5, rtol=0)
    full_size = SyntheticSource(teacher, 2, augment=None, mean=(0.5,) * 3, std=(0.5,) * 3)
    batch = full_size.next_batch()
    torch.testing.assert_close(batch.views[0], batch.images * 2 - 1, atol=1e-6, rtol=0)


def test_resumed_source_draws_the_same_next_batches(teacher, augment):
    source = SyntheticSource(teacher, 4, augment, seed=7, rank=1)
    for _ in range(2):
        next(iter(source))
    state = source.state_dict()
    expected = [source.next_batch() for _ in range(2)]

    resumed = SyntheticSource(teacher, 4, augment, seed=7, rank=1)
    resumed.load_state_dict(state)
    for want in expected:
        got = resumed.next_batch()
        assert torch.equal(got.views[0], want.views[0])
        assert torch.equal(got.images, want.images)
    assert resumed.state_dict() == source.state_dict()


def test_rank_zero_state_resumes_every_rank_on_its_own_stream(teacher, augment):
    rank0, rank1 = (SyntheticSource(teacher, 3, augment, seed=2, rank=r) for r in (0, 1))
    for source in (rank0, rank1):
        source.next_batch()
    uninterrupted = rank1.next_batch()
    resumed = SyntheticSource(teacher, 3, augment, seed=2, rank=1)
    resumed.load_state_dict(rank0.state_dict())  # Lightning saves rank 0's state only
    assert torch.equal(resumed.next_batch().images, uninterrupted.images)


def test_seed_reproduces_and_ranks_workers_differ(teacher, augment):
    def first_images(**stream):
        return SyntheticSource(teacher, 4, augment, **stream).next_batch().images

    base = first_images(seed=3, rank=0, worker=0)
    assert torch.equal(base, first_images(seed=3, rank=0, worker=0))
    for other in ({"seed": 4}, {"seed": 3, "rank": 1}, {"seed": 3, "worker": 1}):
        assert not torch.allclose(base, first_images(**{"rank": 0, "worker": 0, **other}))
    seeds = {
        stream_seed(s, r, w, t)
        for s in range(3)
        for r in range(3)
        for w in range(2)
        for t in range(3)
    }
    assert len(seeds) == 54


def test_bad_arguments_and_states_raise_clear_errors(teacher, augment):
    with pytest.raises(ValueError, match="batch_size"):
        SyntheticSource(teacher, 0, augment)
    with pytest.raises(ValueError, match="num_views"):
        SyntheticSource(teacher, 2, augment, num_views=0)
    source = SyntheticSource(teacher, 2, augment, seed=1)
    with pytest.raises(ValueError, match="seed=9"):
        source.load_state_dict({"seed": 9, "step": 3})
    with pytest.raises(ValueError, match=r"lacks \['step'\]"):
        source.load_state_dict({"seed": 1})


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_step_stays_on_device_without_synchronizing(augment):
    source = SyntheticSource(small_teacher(torch.device("cuda")), 8, augment, seed=0)
    source.next_batch()  # warm-up: per-device constants
    torch.cuda.set_sync_debug_mode("error")
    try:
        batch = source.next_batch()
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert all(view.is_cuda for view in batch.views) and batch.images.is_cuda
