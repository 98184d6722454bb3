"""GeneratorTeacher: feature hooks, pooling, frozen ownership, class sampling, determinism."""

import pytest
import torch
import torch.nn.functional as F
from small_generator import small_generator
from torch import nn

from solo_sqsp.teachers.adapter import (
    FeatureSelectionError,
    GeneratorTeacher,
    TeacherSample,
)
from solo_sqsp.teachers.stylegan2 import Generator

Z_DIM, W_DIM, NUM_WS = 6, 8, 2


class TinyMapping(nn.Module):
    """StyleGAN2-shaped mapping: ``(z, c) -> ws`` of shape (N, num_ws, w_dim). Its rows differ
    (row k is scaled by k + 1) so that tests can tell row 0 from any mix of rows."""

    def __init__(self, c_dim: int) -> None:
        super().__init__()
        self.num_layers = 1
        self.fc0 = nn.Linear(Z_DIM + c_dim, W_DIM)

    def forward(self, z, c, truncation_psi=1):
        w = torch.tanh(self.fc0(torch.cat([z, c], dim=1))) * truncation_psi
        return w.unsqueeze(1) * torch.arange(1, NUM_WS + 1).view(1, -1, 1)


class TinyBlock(nn.Module):
    """StyleGAN2-shaped synthesis block returning ``(x, img)`` (x has more channels than img)."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.const = nn.Parameter(torch.randn(out_channels, 4, 4)) if in_channels == 0 else None
        self.affine = nn.Linear(W_DIM, out_channels)
        self.conv = nn.Conv2d(in_channels or out_channels, out_channels, 3, padding=1)
        self.torgb = nn.Conv2d(out_channels, 3, 1)

    def forward(self, x, img, w):
        x = self.const.expand(len(w), -1, -1, -1) if x is None else F.interpolate(x, scale_factor=2)
        x = F.leaky_relu(self.conv(x) * self.affine(w)[:, :, None, None], 0.2)
        rgb = self.torgb(x)
        return x, rgb if img is None else F.interpolate(img, scale_factor=2) + rgb


class TinySynthesis(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.b4 = TinyBlock(0, 8)
        self.b8 = TinyBlock(8, 5)

    def forward(self, ws, noise_mode="random"):
        x, img = self.b4(None, None, ws[:, 0])
        return self.b8(x, img, ws[:, 1])[1]


class TinyGenerator(nn.Module):
    """Submodules named like StyleGAN2's (mapping, synthesis.b4, synthesis.b8); 8x8 RGB."""

    def __init__(self, c_dim: int = 0) -> None:
        super().__init__()
        self.z_dim, self.c_dim, self.w_dim, self.num_ws = Z_DIM, c_dim, W_DIM, NUM_WS
        self.mapping = TinyMapping(c_dim)
        self.synthesis = TinySynthesis()
        self.calls: list[dict] = []

    def forward(self, z, c, truncation_psi=1, noise_mode="random"):
        self.calls.append({"truncation_psi": truncation_psi, "noise_mode": noise_mode})
        return self.synthesis(self.mapping(z, c, truncation_psi), noise_mode=noise_mode)


class PlainGenerator(nn.Module):
    """A user generator: no z_dim/c_dim attributes, ``forward(z, c)`` only, tensor outputs."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(Z_DIM, 16 * 4 * 4)
        self.body = nn.Conv2d(16, 1, 3, padding=1)
        self.spare = nn.Linear(2, 2)

    def forward(self, z, c):
        return torch.tanh(self.body(self.fc(z).view(-1, 16, 4, 4)))


class TwiceGenerator(nn.Module):
    """Runs its ``act`` module twice per forward: not a well-defined feature."""

    z_dim = 4

    def __init__(self) -> None:
        super().__init__()
        self.act = nn.Tanh()
        self.out = nn.Identity()

    def forward(self, z, c):
        return self.out(self.act(self.act(z)).view(-1, 1, 2, 2))


def make_tiny_generator(c_dim: int = 0) -> TinyGenerator:
    torch.manual_seed(0)
    return TinyGenerator(c_dim)


def small_stylegan2(c_dim: int = 0) -> Generator:
    return small_generator(c_dim=c_dim)


def latents(n: int, z_dim: int, c_dim: int, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    rng = torch.Generator().manual_seed(seed)
    z = torch.randn(n, z_dim, generator=rng)
    c = F.one_hot(torch.arange(n) % max(c_dim, 1), c_dim).float() if c_dim else torch.zeros(n, 0)
    return z, c


def test_shapes_known_at_construction_before_any_sample():
    generator = make_tiny_generator()
    teacher = GeneratorTeacher(generator)
    assert teacher.feature_names == ["synthesis.b4", "synthesis.b8"]
    assert teacher.feature_dims == [8, 5]
    assert teacher.feature_shapes == {"synthesis.b4": (8, 4, 4), "synthesis.b8": (5, 8, 8)}
    assert (teacher.z_dim, teacher.c_dim, teacher.resolution, teacher.img_channels) == (6, 0, 8, 3)
    assert teacher.image_shape == (3, 8, 8)
    assert len(generator.calls) == 1  # the dry run, nothing else


def test_pooled_block_features_equal_block_x_computed_by_hand():
    generator = make_tiny_generator(c_dim=3)
    teacher = GeneratorTeacher(generator, features=["synthesis.b8", "synthesis.b4"])
    z, c = latents(4, Z_DIM, 3)
    images, features = teacher(z, c)
    with torch.no_grad():
        ws = generator.mapping(z, c)
        x4, img4 = generator.synthesis.b4(None, None, ws[:, 0])
        x8, img8 = generator.synthesis.b8(x4, img4, ws[:, 1])
    assert teacher.feature_names == ["synthesis.b8", "synthesis.b4"]
    torch.testing.assert_close(images, img8)
    torch.testing.assert_close(features[0], x8.mean(dim=(2, 3)))
    torch.testing.assert_close(features[1], x4.mean(dim=(2, 3)))
    assert all(f.dtype == torch.float32 and not f.requires_grad for f in features)


def test_mapping_feature_is_one_broadcast_row_of_w():
    generator = make_tiny_generator(c_dim=3)
    teacher = GeneratorTeacher(generator, features="mapping", truncation_psi=0.5)
    assert teacher.feature_dims == [W_DIM]
    assert teacher.feature_shapes == {"mapping": (NUM_WS, W_DIM)}
    z, c = latents(4, Z_DIM, 3)
    _, (w,) = teacher(z, c)
    with torch.no_grad():
        expected = generator.mapping(z, c, truncation_psi=0.5)[:, 0]
    torch.testing.assert_close(w, expected)


def test_regex_matches_full_names_in_module_order():
    teacher = GeneratorTeacher(make_tiny_generator(), features=r"synthesis\.b\d+\.(conv|torgb)")
    assert teacher.feature_names == [
        "synthesis.b4.conv",
        "synthesis.b4.torgb",
        "synthesis.b8.conv",
        "synthesis.b8.torgb",
    ]
    assert teacher.feature_dims == [8, 3, 5, 3]


@pytest.mark.parametrize(
    ("features", "message"),
    [
        (r"synthesis\.block\d+", "matches no module"),
        (["synthesis.b4", "synthesis.b16"], r"\['synthesis.b16'\] not found"),
        ("synthesis.b(4", "invalid"),
        ([], "empty feature list"),
    ],
)
def test_bad_selection_names_the_candidates(features, message):
    with pytest.raises(FeatureSelectionError, match=message) as caught:
        GeneratorTeacher(make_tiny_generator(), features=features)
    if "invalid" not in message:
        assert "synthesis.b4, synthesis.b4.affine" in str(caught.value)


def test_selected_module_off_the_forward_path_is_an_error():
    with pytest.raises(FeatureSelectionError, match=r"\['spare'\] did not run"):
        GeneratorTeacher(PlainGenerator(), features=["spare"], z_dim=Z_DIM)


def test_module_running_twice_is_an_error_and_no_candidate():
    with pytest.raises(FeatureSelectionError, match="'act' ran more than once"):
        GeneratorTeacher(TwiceGenerator(), features="act")
    with pytest.raises(FeatureSelectionError, match="matches no module; module names of "):
        GeneratorTeacher(TwiceGenerator())
    teacher = GeneratorTeacher(TwiceGenerator(), features=["out"])
    assert [info.name for info in teacher.candidate_features()] == ["out"]


def test_user_generator_without_attributes_or_stylegan_kwargs():
    teacher = GeneratorTeacher(PlainGenerator(), features="fc|body", z_dim=Z_DIM)
    assert teacher.feature_dims == [256, 1]
    assert (teacher.c_dim, teacher.resolution, teacher.img_channels) == (0, 4, 1)
    sample = teacher.sample(3, torch.Generator().manual_seed(0))
    assert sample.images.shape == (3, 1, 4, 4) and sample.c.shape == (3, 0)
    with pytest.raises(ValueError, match="pass z_dim="):
        GeneratorTeacher(PlainGenerator(), features="body")
    with pytest.raises(ValueError, match="takes no truncation_psi"):
        GeneratorTeacher(PlainGenerator(), features="body", z_dim=Z_DIM, truncation_psi=0.7)
    with pytest.raises(ValueError, match="z_dim=5 was passed but the generator's z_dim is 6"):
        GeneratorTeacher(make_tiny_generator(), z_dim=5)


def test_stylegan_kwargs_are_passed_when_accepted():
    generator = make_tiny_generator()
    GeneratorTeacher(generator, truncation_psi=0.7)
    GeneratorTeacher(generator, noise_mode=None)
    assert generator.calls == [
        {"truncation_psi": 0.7, "noise_mode": "const"},
        {"truncation_psi": 1, "noise_mode": "random"},
    ]


def test_teacher_is_frozen_and_invisible_to_its_owner_optimizer():
    teacher = GeneratorTeacher(make_tiny_generator())
    owner = nn.Module()
    owner.teacher = teacher
    owner.student = nn.Linear(3 * 8 * 8, 6)
    owner.squeeze = nn.Linear(sum(teacher.feature_dims), 6)
    assert {name for name, _ in owner.named_parameters()} == {
        "student.weight",
        "student.bias",
        "squeeze.weight",
        "squeeze.bias",
    }
    assert all(key.startswith(("student.", "squeeze.")) for key in owner.state_dict())
    assert not list(teacher.parameters()) and not teacher.state_dict()
    before = {k: v.clone() for k, v in teacher.generator.state_dict().items()}
    student_before = owner.student.weight.clone()

    optimizer = torch.optim.SGD(owner.parameters(), lr=0.5, momentum=0.9, weight_decay=0.1)
    for _ in range(2):
        sample = teacher.sample(8, torch.Generator().manual_seed(3))
        h = owner.squeeze(torch.cat(sample.features, dim=1))
        z = owner.student(sample.images.flatten(1))
        loss = F.mse_loss(h, z) + F.mse_loss(z, sample.features[0][:, :6])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    assert owner.squeeze.weight.grad is not None
    assert not torch.equal(owner.student.weight, student_before)
    assert all(p.grad is None and not p.requires_grad for p in teacher.generator.parameters())
    for key, value in teacher.generator.state_dict().items():
        assert torch.equal(value, before[key]), key


def test_train_keeps_generator_in_eval_and_to_reaches_it():
    teacher = GeneratorTeacher(make_tiny_generator())
    owner = nn.Sequential(teacher)
    owner.train()
    assert not teacher.training
    assert not any(module.training for module in teacher.generator.modules())
    owner.to(torch.float64)
    assert teacher.generator.mapping.fc0.weight.dtype == torch.float64
    sample = teacher.sample(2, torch.Generator().manual_seed(0))
    assert sample.images.dtype == torch.float64 and sample.features[0].dtype == torch.float32


def test_uniform_class_sampling_is_one_hot_and_balanced():
    teacher = GeneratorTeacher(make_tiny_generator(c_dim=5))
    sample = teacher.sample(2000, torch.Generator().manual_seed(0))
    assert isinstance(sample, TeacherSample)
    assert torch.equal(sample.c.sum(dim=1), torch.ones(2000))
    assert set(sample.c.unique().tolist()) == {0.0, 1.0}
    counts = sample.c.sum(dim=0)
    chi_square = ((counts - 400) ** 2 / 400).sum().item()
    assert chi_square < 18.47  # 99.9% quantile of chi-square with 4 degrees of freedom


def test_class_list_and_none_sampling():
    generator = make_tiny_generator(c_dim=5)
    listed = GeneratorTeacher(generator, class_sampling=[1, 3]).sample(200, torch.Generator())
    assert set(listed.c.argmax(dim=1).tolist()) == {1, 3}
    empty = GeneratorTeacher(generator, class_sampling="none").sample(4, torch.Generator())
    assert torch.equal(empty.c, torch.zeros(4, 5))
    with pytest.raises(ValueError, match=r"in \[0, 5\)"):
        GeneratorTeacher(generator, class_sampling=[5])
    with pytest.raises(ValueError, match="unknown"):
        GeneratorTeacher(generator, class_sampling="balanced")


def test_class_vector_reaches_the_generator():
    teacher = GeneratorTeacher(make_tiny_generator(c_dim=5))
    z = torch.randn(1, Z_DIM, generator=torch.Generator().manual_seed(0)).repeat(2, 1)
    images, _ = teacher(z, torch.eye(5)[:2])
    assert not torch.allclose(images[0], images[1])


def test_stylegan2_blocks_match_a_hand_run_of_the_synthesis_network():
    generator = small_stylegan2(c_dim=4)
    teacher = GeneratorTeacher(generator)
    assert teacher.feature_names == [f"synthesis.b{r}" for r in (4, 8, 16, 32)]
    assert teacher.feature_dims == [32, 32, 16, 8]
    assert teacher.feature_shapes["synthesis.b16"] == (16, 16, 16)
    assert (teacher.resolution, teacher.img_channels, teacher.c_dim) == (32, 3, 4)

    z, c = latents(3, 16, 4)
    images, features = teacher(z, c)
    with torch.no_grad():
        ws = generator.mapping(z, c)
        x = img = None
        expected, w_index = [], 0
        for resolution in (4, 8, 16, 32):
            block = getattr(generator.synthesis, f"b{resolution}")
            block_ws = ws.narrow(1, w_index, block.num_conv + block.num_torgb)
            x, img = block(x, img, block_ws, noise_mode="const")
            w_index += block.num_conv
            expected.append(x.float().mean(dim=(2, 3)))
    torch.testing.assert_close(images, img)
    for got, want in zip(features, expected, strict=True):
        torch.testing.assert_close(got, want)


def test_sampling_is_deterministic_under_a_seed_and_leaves_global_rng_alone():
    state = torch.get_rng_state()
    teacher = GeneratorTeacher(small_stylegan2(c_dim=4))
    assert torch.equal(torch.get_rng_state(), state)
    first = teacher.sample(4, torch.Generator().manual_seed(7))
    again = teacher.sample(4, torch.Generator().manual_seed(7))
    other = teacher.sample(4, torch.Generator().manual_seed(8))
    for a, b in zip(
        (first.images, first.z, first.c, *first.features),
        (again.images, again.z, again.c, *again.features),
        strict=True,
    ):
        assert torch.equal(a, b)
    assert not torch.equal(first.z, other.z) and not torch.equal(first.images, other.images)


def test_candidate_features_cover_blocks_and_mapping():
    teacher = GeneratorTeacher(make_tiny_generator())
    candidates = {info.name: (info.shape, info.dim) for info in teacher.candidate_features()}
    assert candidates["mapping"] == ((NUM_WS, W_DIM), W_DIM)
    assert candidates["synthesis.b8"] == ((5, 8, 8), 5)
    assert candidates["synthesis"] == ((3, 8, 8), 3)
    assert "synthesis.b8.affine" in candidates


def test_random_noise_is_drawn_from_the_sample_rng():
    generator = small_stylegan2()
    with torch.no_grad():
        for name, parameter in generator.named_parameters():
            if name.endswith("noise_strength"):
                parameter.fill_(0.5)  # trained generators have nonzero noise strengths
    noisy = GeneratorTeacher(generator, noise_mode="random")
    state = torch.get_rng_state()
    first = noisy.sample(2, torch.Generator().manual_seed(4))
    again = noisy.sample(2, torch.Generator().manual_seed(4))
    assert torch.equal(torch.get_rng_state(), state)
    assert torch.equal(first.images, again.images)
    const = GeneratorTeacher(generator).sample(2, torch.Generator().manual_seed(4))
    assert torch.equal(first.z, const.z) and not torch.allclose(first.images, const.images)
