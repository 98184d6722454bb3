"""Clean-room StyleGAN2 generator: shapes, NVIDIA naming, and independent numerical references."""

import math

import pytest
import torch
import torch.nn.functional as F

from solo_sqsp.teachers.stylegan2 import (
    Generator,
    SynthesisLayer,
    modulated_conv2d,
    setup_fir_filter,
    upsample2d,
)

Z_DIM = W_DIM = 16


def small_generator(
    img_resolution: int = 32,
    c_dim: int = 0,
    seed: int = 0,
    noise_strength: float = 0.3,
    **synthesis_kwargs,
) -> Generator:
    """A narrow generator (channels 32..8) with non-zero noise strengths, in eval mode."""
    torch.manual_seed(seed)
    kwargs = dict(channel_base=256, channel_max=32) | synthesis_kwargs
    generator = Generator(
        z_dim=Z_DIM,
        c_dim=c_dim,
        w_dim=W_DIM,
        img_resolution=img_resolution,
        img_channels=3,
        mapping_kwargs=dict(num_layers=2),
        synthesis_kwargs=kwargs,
    ).eval()
    with torch.no_grad():
        for name, param in generator.named_parameters():
            if name.endswith("noise_strength"):
                param.fill_(noise_strength)
    return generator


def latents(n: int, c_dim: int, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor | None]:
    rng = torch.Generator().manual_seed(seed)
    z = torch.randn(n, Z_DIM, generator=rng)
    c = F.one_hot(torch.arange(n) % c_dim, c_dim).float() if c_dim else None
    return z, c


# ---------------------------------------------------------------------------------------------
# Shapes and structure.


@pytest.mark.parametrize("architecture", ["orig", "skip", "resnet"])
@pytest.mark.parametrize("img_resolution", [32, 64])
@pytest.mark.parametrize("c_dim", [0, 10])
def test_output_shapes(architecture: str, img_resolution: int, c_dim: int) -> None:
    generator = small_generator(img_resolution, c_dim, architecture=architecture)
    z, c = latents(2, c_dim)
    with torch.no_grad():
        img = generator(z, c, noise_mode="const")
        ws = generator.mapping(z, c)
    num_blocks = int(math.log2(img_resolution)) - 1
    assert generator.num_ws == 2 * num_blocks
    assert ws.shape == (2, generator.num_ws, W_DIM)
    assert img.shape == (2, 3, img_resolution, img_resolution)
    assert img.dtype == torch.float32 and torch.isfinite(img).all()


def test_blocks_return_features_and_image_to_forward_hooks() -> None:
    generator = small_generator(32, architecture="orig")
    captured = {}
    for block in generator.synthesis.blocks():
        block.register_forward_hook(
            lambda module, args, out, res=block.resolution: captured.__setitem__(res, out)
        )
    z, _ = latents(2, 0)
    with torch.no_grad():
        img = generator(z, None, noise_mode="const")
    assert sorted(captured) == [4, 8, 16, 32]
    for res, (x, block_img) in captured.items():
        assert x.shape == (2, min(256 // res, 32), res, res)
        # 'orig' has a single ToRGB in the last block: earlier blocks carry no image.
        assert (block_img is None) == (res != 32)
    assert torch.equal(captured[32][1], img)


def test_constant_noise_is_deterministic_and_random_noise_follows_its_generator() -> None:
    generator = small_generator(32, c_dim=10)
    z, c = latents(3, 10)
    with torch.no_grad():
        const_a = generator(z, c, noise_mode="const")
        const_b = generator(z, c, noise_mode="const")
        without = generator(z, c, noise_mode="none")
        seeded = [
            generator(z, c, noise_generator=torch.Generator().manual_seed(seed))
            for seed in (5, 5, 6)
        ]
    assert torch.equal(const_a, const_b)
    assert not torch.allclose(const_a, without, atol=1e-3)
    assert torch.equal(seeded[0], seeded[1])
    assert not torch.allclose(seeded[0], seeded[2], atol=1e-3)


def test_truncation_pulls_toward_w_avg() -> None:
    generator = small_generator(32)
    with torch.no_grad():
        generator.mapping.w_avg.normal_()
    z, _ = latents(2, 0)
    with torch.no_grad():
        collapsed = generator(z, None, truncation_psi=0, noise_mode="const")
        free = generator(z, None, noise_mode="const")
        ws = generator.mapping(z, None, truncation_psi=0, truncation_cutoff=3)
        ws_free = generator.mapping(z, None)
    assert torch.allclose(collapsed[0], collapsed[1], atol=1e-6)
    assert not torch.allclose(free[0], free[1], atol=1e-3)
    w_avg = generator.mapping.w_avg.expand(2, 3, -1)
    assert torch.allclose(ws[:, :3], w_avg)
    assert torch.equal(ws[:, 3:], ws_free[:, 3:])


def test_mapping_tracks_w_avg_in_training_mode_only() -> None:
    generator = small_generator(32)
    z, _ = latents(8, 0)
    before = generator.mapping.w_avg.clone()
    generator.mapping(z, None)
    assert torch.equal(generator.mapping.w_avg, before)
    generator.mapping.train()
    with torch.no_grad():
        w = generator.mapping(z, None)[:, 0]
    assert torch.allclose(generator.mapping.w_avg, before.lerp(w.mean(0), 1 - 0.995), atol=1e-6)


# Key names and shapes of NVIDIA's Generator(z_dim=4, c_dim=2, w_dim=6, img_resolution=8,
# img_channels=3, mapping_kwargs={num_layers: 2}, synthesis_kwargs={channel_base: 32,
# channel_max: 5, architecture: 'resnet'}) state_dict, in NVIDIA's order: per module its
# parameters, then buffers, then children; `synthesis` is built before `mapping`.
def _synthesis_layer_keys(prefix: str, in_ch: int, out_ch: int, res: int) -> list:
    return [
        (f"{prefix}.weight", (out_ch, in_ch, 3, 3)),
        (f"{prefix}.noise_strength", ()),
        (f"{prefix}.bias", (out_ch,)),
        (f"{prefix}.resample_filter", (4, 4)),
        (f"{prefix}.noise_const", (res, res)),
        (f"{prefix}.affine.weight", (in_ch, 6)),
        (f"{prefix}.affine.bias", (in_ch,)),
    ]


NVIDIA_RESNET_KEYS = [
    ("synthesis.b4.const", (5, 4, 4)),
    ("synthesis.b4.resample_filter", (4, 4)),
    *_synthesis_layer_keys("synthesis.b4.conv1", 5, 5, 4),
    ("synthesis.b8.resample_filter", (4, 4)),
    *_synthesis_layer_keys("synthesis.b8.conv0", 5, 4, 8),
    *_synthesis_layer_keys("synthesis.b8.conv1", 4, 4, 8),
    ("synthesis.b8.torgb.weight", (3, 4, 1, 1)),
    ("synthesis.b8.torgb.bias", (3,)),
    ("synthesis.b8.torgb.affine.weight", (4, 6)),
    ("synthesis.b8.torgb.affine.bias", (4,)),
    ("synthesis.b8.skip.weight", (4, 5, 1, 1)),
    ("synthesis.b8.skip.resample_filter", (4, 4)),
    ("mapping.w_avg", (6,)),
    ("mapping.embed.weight", (6, 2)),
    ("mapping.embed.bias", (6,)),
    ("mapping.fc0.weight", (6, 10)),
    ("mapping.fc0.bias", (6,)),
    ("mapping.fc1.weight", (6, 6)),
    ("mapping.fc1.bias", (6,)),
]


def _tiny_nvidia_config(architecture: str) -> Generator:
    return Generator(
        z_dim=4,
        c_dim=2,
        w_dim=6,
        img_resolution=8,
        img_channels=3,
        mapping_kwargs=dict(num_layers=2),
        synthesis_kwargs=dict(channel_base=32, channel_max=5, architecture=architecture),
    )


def test_state_dict_keys_match_nvidia() -> None:
    state = _tiny_nvidia_config("resnet").state_dict()
    assert [(k, tuple(v.shape)) for k, v in state.items()] == NVIDIA_RESNET_KEYS
    # 'skip' adds a ToRGB to every block and has no residual 1x1 path.
    skip_keys = set(_tiny_nvidia_config("skip").state_dict())
    resnet_keys = {k for k, _ in NVIDIA_RESNET_KEYS}
    assert skip_keys - resnet_keys == {
        "synthesis.b4.torgb.weight",
        "synthesis.b4.torgb.bias",
        "synthesis.b4.torgb.affine.weight",
        "synthesis.b4.torgb.affine.bias",
    }
    assert resnet_keys - skip_keys == {
        "synthesis.b8.skip.weight",
        "synthesis.b8.skip.resample_filter",
    }


def test_state_dict_round_trip_and_converted_pickle_kwargs() -> None:
    """Every keyword a converted TF pickle spells out is accepted; weights transfer exactly."""
    spelled_out = dict(
        z_dim=Z_DIM,
        c_dim=0,
        w_dim=W_DIM,
        img_resolution=32,
        img_channels=3,
        mapping_kwargs=dict(
            num_layers=2,
            embed_features=None,
            layer_features=None,
            activation="lrelu",
            lr_multiplier=0.01,
            w_avg_beta=0.995,
        ),
        synthesis_kwargs=dict(
            channel_base=256,
            channel_max=32,
            num_fp16_res=4,
            conv_clamp=256,
            architecture="skip",
            resample_filter=[1, 3, 3, 1],
            use_noise=True,
            activation="lrelu",
            fp16_channels_last=False,
            kernel_size=3,
        ),
    )
    source = small_generator(32, num_fp16_res=4, conv_clamp=256)
    target = Generator(**spelled_out).eval()
    target.load_state_dict(source.state_dict())
    assert target.init_kwargs == spelled_out
    rebuilt = Generator(**target.init_kwargs)
    assert rebuilt.state_dict().keys() == target.state_dict().keys()
    z, _ = latents(2, 0)
    with torch.no_grad():
        assert torch.equal(source(z, None, noise_mode="const"), target(z, None, noise_mode="const"))


# ---------------------------------------------------------------------------------------------
# Numerics against direct formulas.


def _reference_upsample(x, taps, pad_before, pad_after):
    """NVIDIA's up-sampling by 2, spelled out: insert a zero after every pixel, zero-pad, and
    convolve with the normalised FIR filter (outer product of 1-D taps) times 4."""
    channels, height, width = x.shape[1:]
    stuffed = x.new_zeros(x.shape[0], channels, 2 * height, 2 * width)
    stuffed[:, :, ::2, ::2] = x
    padded = F.pad(stuffed, [pad_before, pad_after, pad_before, pad_after])
    f1d = torch.tensor(taps, dtype=x.dtype) / sum(taps)
    fir = 4 * torch.outer(f1d, f1d)
    return F.conv2d(padded, fir.flip(0, 1).expand(channels, 1, *fir.shape), groups=channels)


def _reference_modulated_conv(x, weight, styles, demodulate, up, taps):
    """Per-sample weights w'[n] = weight * styles[n] (StyleGAN2 Eq. 1), optionally normalised
    (Eq. 3), one convolution per sample. With up=2, NVIDIA's definition: FIR up-sampling with
    padding `k // 2 + (len(taps) + 1) // 2` before and `k // 2 + (len(taps) - 2) // 2` after,
    then a true convolution (flipped kernel) with the weight."""
    outputs = []
    k = weight.shape[-1]
    for n in range(x.shape[0]):
        w = weight * styles[n].reshape(1, -1, 1, 1)
        if demodulate:
            w = w / (w.square().sum(dim=(1, 2, 3), keepdim=True) + 1e-8).sqrt()
        xn = x[n : n + 1]
        if up == 1:
            outputs.append(F.conv2d(xn, w, padding=k // 2))
        else:
            before, after = k // 2 + (len(taps) + 1) // 2, k // 2 + (len(taps) - 2) // 2
            outputs.append(F.conv2d(_reference_upsample(xn, taps, before, after), w.flip(2, 3)))
    return torch.cat(outputs)


@pytest.mark.parametrize(
    ("kernel", "demodulate", "up", "taps"),
    [
        (3, True, 1, None),
        (3, True, 2, [1, 3, 3, 1]),
        (3, True, 2, [1, 2, 1]),
        (3, False, 2, [1, 3, 5, 7, 7, 5, 3, 1]),  # 8 taps: stored 1-D, applied separably
        (1, False, 1, None),
        (3, False, 1, None),
    ],
)
def test_fast_modulated_conv_matches_per_sample_weights(kernel, demodulate, up, taps) -> None:
    rng = torch.Generator().manual_seed(0)
    x = torch.randn(3, 6, 5, 5, generator=rng)
    weight = torch.randn(7, 6, kernel, kernel, generator=rng)
    styles = torch.randn(3, 6, generator=rng) + 1
    f = setup_fir_filter(taps) if taps else None
    reference = _reference_modulated_conv(x, weight, styles, demodulate, up, taps)
    assert reference.shape == (3, 7, 5 * up, 5 * up)
    # Also in channels_last, the layout the generator uses on CPU.
    for layout in (torch.contiguous_format, torch.channels_last):
        fast = modulated_conv2d(
            x.contiguous(memory_format=layout),
            weight,
            styles,
            demodulate,
            up=up,
            padding=kernel // 2,
            resample_filter=f,
        )
        assert torch.allclose(fast, reference, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("taps", [[1, 3, 3, 1], [1, 2, 1], [1, 1], [1, 3, 5, 7, 7, 5, 3, 1]])
def test_fir_upsampling_matches_zero_stuffing_formula(taps) -> None:
    x = torch.randn(2, 3, 6, 6, generator=torch.Generator().manual_seed(0))
    reference = _reference_upsample(x, taps, (len(taps) + 1) // 2, (len(taps) - 2) // 2)
    assert torch.allclose(upsample2d(x, setup_fir_filter(taps)), reference, atol=1e-6)


def test_default_fir_upsampling_is_bilinear_away_from_borders() -> None:
    x = torch.randn(2, 3, 6, 6, generator=torch.Generator().manual_seed(0))
    f = setup_fir_filter([1, 3, 3, 1])
    assert torch.allclose(f, torch.outer(*[torch.tensor([1.0, 3, 3, 1]) / 8] * 2))
    up = upsample2d(x, f)
    # [1, 3, 3, 1] up-sampling is bilinear interpolation (half-pixel centres) inside the image.
    bilinear = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
    assert torch.allclose(up[..., 1:-1, 1:-1], bilinear[..., 1:-1, 1:-1], atol=1e-6)


def test_conv_clamp_bounds_activations_and_fp16_settings_are_accepted() -> None:
    bound = 0.05
    clamped = small_generator(32, num_fp16_res=2, conv_clamp=bound, fp16_channels_last=True)
    free = small_generator(32, num_fp16_res=2)
    assert [b.use_fp16 for b in clamped.synthesis.blocks()] == [False, False, True, True]
    peaks = {}
    for name, generator in (("clamped", clamped), ("free", free)):
        for block in generator.synthesis.blocks():
            block.register_forward_hook(
                lambda m, a, out, key=name: peaks.setdefault(key, []).append(out[0].abs().max())
            )
    z, _ = latents(2, 0)
    with torch.no_grad():
        img = clamped(z, None, noise_mode="const")
        img_fp32 = clamped(z, None, noise_mode="const", force_fp32=True)
        free(z, None, noise_mode="const")
    assert img.dtype == torch.float32
    assert torch.equal(img, img_fp32)  # on CPU, fp16 blocks compute in float32
    assert max(peaks["clamped"]) <= bound
    assert max(peaks["free"]) > 4 * bound


def test_layer_clamp_scales_with_gain() -> None:
    torch.manual_seed(0)
    layer = SynthesisLayer(4, 4, w_dim=W_DIM, resolution=8, conv_clamp=0.1)
    x, w = torch.randn(2, 4, 8, 8) * 10, torch.randn(2, W_DIM)
    with torch.no_grad():
        out = layer(x, w, noise_mode="none", gain=0.5)
    assert out.abs().max() == pytest.approx(0.05)


def test_gradients_flow_and_match_inference_values() -> None:
    """With autograd recording, the epilogue runs out of place and gives the same images."""
    generator = small_generator(32, c_dim=10, architecture="resnet")
    z, c = latents(2, 10)
    with torch.no_grad():
        inference = generator(z, c, noise_mode="const")
    z = z.clone().requires_grad_(True)
    img = generator(z, c, noise_mode="const")
    img.square().mean().backward()
    assert torch.allclose(img.detach(), inference, atol=1e-5)
    assert z.grad is not None and torch.isfinite(z.grad).all() and z.grad.abs().sum() > 0
    assert all(p.grad is not None for p in generator.parameters())
    # Only some parameters trainable: the bias needs a gradient although the conv output doesn't.
    generator.requires_grad_(False).zero_grad()
    bias = generator.synthesis.b32.conv1.bias.requires_grad_(True)
    generator(z.detach(), c, noise_mode="const").sum().backward()
    assert bias.grad is not None and bias.grad.abs().sum() > 0


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda g: g(torch.zeros(2, Z_DIM + 1), torch.zeros(2, 10)), "z must have shape"),
        (lambda g: g(torch.zeros(2, Z_DIM), None), "c .one-hot class labels. must be a tensor"),
        (lambda g: g(torch.zeros(2, Z_DIM), torch.zeros(2, 10), noise_mode="fixed"), "noise_mode"),
        (lambda g: g.synthesis(torch.zeros(2, 3, W_DIM)), "ws must have shape"),
        (lambda g: g(torch.zeros(2, Z_DIM), torch.zeros(3, 10)), "same batch size"),
    ],
)
def test_bad_inputs_raise_clear_errors(call, message) -> None:
    generator = small_generator(32, c_dim=10)
    with pytest.raises(ValueError, match=message):
        call(generator)


def test_bad_constructor_arguments_raise_clear_errors() -> None:
    with pytest.raises(ValueError, match="architecture must be one of"):
        small_generator(32, architecture="unet")
    with pytest.raises(ValueError, match="power of two"):
        Generator(Z_DIM, 0, W_DIM, img_resolution=48, img_channels=3)
    with pytest.raises(ValueError, match="unknown activation"):
        small_generator(32, activation="gelu")
