"""Clean-room StyleGAN2 generator, layout-compatible with NVIDIA's StyleGAN2-ADA.

Karras et al., CVPR 2020 (Fig. 2b, Eqs. 1-3, Fig. 7): a ``G_ema.state_dict()`` from a NVIDIA
pickle loads unchanged. How the computation differs from NVIDIA's in form, not in result, and
mixed precision: docs/architecture.md.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

NoiseMode = Literal["random", "const", "none"]
NOISE_MODES = ("random", "const", "none")
ARCHITECTURES = ("orig", "skip", "resnet")
FilterSpec = Sequence[float] | Sequence[Sequence[float]] | Tensor | float | None


@dataclass(frozen=True)
class Activation:
    """An activation with its default gain (NVIDIA's `bias_act.activation_funcs`)."""

    apply: Callable[[Tensor, bool], Tensor]  # (x, inplace) -> activated x
    gain: float
    positively_homogeneous: bool  # act(g * x) == g * act(x) for g > 0


def _swish(x: Tensor, inplace: bool) -> Tensor:
    return x * torch.sigmoid(x)


ACTIVATIONS: dict[str, Activation] = {
    "linear": Activation(lambda x, inplace: x, 1.0, True),
    "relu": Activation(lambda x, inplace: F.relu(x, inplace=inplace), math.sqrt(2), True),
    "lrelu": Activation(lambda x, inplace: F.leaky_relu(x, 0.2, inplace), math.sqrt(2), True),
    "tanh": Activation(lambda x, inplace: x.tanh_() if inplace else x.tanh(), 1.0, False),
    "sigmoid": Activation(lambda x, inplace: x.sigmoid_() if inplace else x.sigmoid(), 1.0, False),
    "elu": Activation(lambda x, inplace: F.elu(x, inplace=inplace), 1.0, False),
    "selu": Activation(lambda x, inplace: F.selu(x, inplace=inplace), 1.0, False),
    "softplus": Activation(lambda x, inplace: F.softplus(x), 1.0, False),
    "swish": Activation(_swish, math.sqrt(2), False),
}


def _activation(name: str) -> Activation:
    if name not in ACTIVATIONS:
        raise ValueError(f"unknown activation {name!r}; expected one of {sorted(ACTIVATIONS)}")
    return ACTIVATIONS[name]


# ----------------------------------------------------------------------------------------------
# Functional building blocks.


def setup_fir_filter(taps: FilterSpec) -> Tensor:
    """FIR filter buffer as NVIDIA's `upfirdn2d.setup_filter` stores it.

    The taps are normalised to sum 1. A 1-D list of fewer than 8 taps becomes its outer
    product (a 2-D `[f, f]` filter, e.g. `[4, 4]` for the default `[1, 3, 3, 1]`); longer 1-D
    filters stay 1-D, meaning the separable filter `f x f`; `None` is the identity.
    """
    f = torch.as_tensor(1.0 if taps is None else taps, dtype=torch.float32)
    if f.ndim == 0:
        f = f.reshape(1)
    if f.ndim > 2 or f.numel() == 0:
        raise ValueError(
            f"resample_filter must be a non-empty 1-D or 2-D list of taps, got shape "
            f"{tuple(f.shape)}"
        )
    if f.ndim == 1 and f.numel() < 8:
        f = torch.outer(f, f)
    return f / f.sum()


def _filter_as_2d(f: Tensor) -> Tensor:
    return torch.outer(f, f) if f.ndim == 1 else f


def upfirdn2d(
    x: Tensor, f: Tensor, up: int = 1, padding: Sequence[int] = (0, 0, 0, 0), gain: float = 1.0
) -> Tensor:
    """Up-sample, pad and FIR-filter each channel (NVIDIA's `upfirdn2d` with `down=1`).

    Inserts `up - 1` zeros after every pixel, pads by `padding = (x0, x1, y0, y1)` (negative
    values crop), convolves (true convolution) with `f * gain` and keeps the valid part.
    Computed as one depthwise transposed convolution (`up > 1`) or convolution (`up == 1`).
    """
    x0, x1, y0, y1 = padding
    channels = x.shape[1]
    kernel = (_filter_as_2d(f) * gain).to(dtype=x.dtype, device=x.device)
    fh, fw = kernel.shape
    if up == 1:
        weight = kernel.flip(0, 1).expand(channels, 1, fh, fw).contiguous()
        if x0 == x1 == y0 == y1 >= 0:
            return F.conv2d(x, weight, padding=x0, groups=channels)
        return F.conv2d(F.pad(x, [x0, x1, y0, y1]), weight, groups=channels)
    # The transposed convolution gives the full convolution of the zero-stuffed input
    # (length up * (H - 1) + 1) with the filter; shift its borders to the requested padding.
    weight = kernel.expand(channels, 1, fh, fw).contiguous()
    left_x, right_x = x0 - (fw - 1), x1 - (fw - up)
    left_y, right_y = y0 - (fh - 1), y1 - (fh - up)
    if left_x == right_x <= 0 and left_y == right_y <= 0:
        return F.conv_transpose2d(x, weight, stride=up, padding=(-left_y, -left_x), groups=channels)
    y = F.conv_transpose2d(x, weight, stride=up, groups=channels)
    return F.pad(y, [left_x, right_x, left_y, right_y])


def upsample2d(x: Tensor, f: Tensor, up: int = 2) -> Tensor:
    """FIR up-sampling by `up` (NVIDIA's `upfirdn2d.upsample2d` with default padding)."""
    fh, fw = _filter_as_2d(f).shape
    padding = ((fw + up - 1) // 2, (fw - up) // 2, (fh + up - 1) // 2, (fh - up) // 2)
    return upfirdn2d(x, f, up=up, padding=padding, gain=up**2)


def conv2d_upsampled(x: Tensor, weight: Tensor, f: Tensor, up: int = 2, padding: int = 1) -> Tensor:
    """Convolution of the `up`-times FIR-up-sampled input (NVIDIA's `conv2d_resample`, `up>1`).

    Matches NVIDIA's definition: zero-stuff the input, pad it by `padding + (fw + up - 1) // 2`
    before and `padding + (fw - up) // 2` after, filter with `f * up**2` and convolve (true
    convolution, not correlation) with `weight` (`[O, I, kh, kw]`). Computed at the input
    resolution as a stride-`up` transposed convolution (the full convolution of the zero-stuffed
    input with `weight`) followed by the FIR filter on the result, so the dense work costs
    `H * W * kh * kw * I * O` multiply-adds, a quarter of a convolution at the output size.
    """
    kh, kw = weight.shape[2:]
    fh, fw = _filter_as_2d(f).shape
    # Padding the FIR stage needs so that the output covers the same window as NVIDIA's.
    x0 = padding + (fw + up - 1) // 2 - (kw - 1)
    x1 = padding + (fw - up) // 2 - (kw - up)
    y0 = padding + (fh + up - 1) // 2 - (kh - 1)
    y1 = padding + (fh - up) // 2 - (kh - up)
    # Crop that both sides share is done by the transposed convolution itself.
    crop_x = max(min(-x0, -x1), 0)
    crop_y = max(min(-y0, -y1), 0)
    y = F.conv_transpose2d(x, weight.transpose(0, 1), stride=up, padding=(crop_y, crop_x))
    fir_padding = (x0 + crop_x, x1 + crop_x, y0 + crop_y, y1 + crop_y)
    return upfirdn2d(y, f, padding=fir_padding, gain=up**2)


def normalize_2nd_moment(x: Tensor, dim: int = 1, eps: float = 1e-8) -> Tensor:
    """Pixel-norm of latents: x / sqrt(mean(x**2) + eps) (StyleGAN mapping input)."""
    return x * (x.square().mean(dim=dim, keepdim=True) + eps).rsqrt()


def demodulation_coefficients(weight: Tensor, styles: Tensor, eps: float = 1e-8) -> Tensor:
    """Per-sample output scales of weight demodulation (StyleGAN2, Eq. 3), shape [N, O].

    `1 / sqrt(sum_{i,k} (styles[n, i] * weight[o, i, k])**2 + eps)`, computed without the
    per-sample weights as `styles**2 @ sum_k(weight**2).T`.
    """
    weight_energy = weight.square().sum(dim=(2, 3))  # [O, I]
    return (styles.square() @ weight_energy.t() + eps).rsqrt()


def _reduced_conv_precision(x: Tensor) -> bool:
    """Whether the convolution of `x` runs in float16 (input dtype or autocast)."""
    if x.dtype == torch.float16:
        return True
    device = x.device.type
    return torch.is_autocast_enabled(device) and torch.get_autocast_dtype(device) == torch.float16


def _prenormalize_for_fp16(weight: Tensor, styles: Tensor) -> tuple[Tensor, Tensor]:
    """Rescale weight rows and styles to max-abs 1 before float16 work (NVIDIA's overflow guard).

    Demodulation divides the scales out again, so the result is unchanged.
    """
    fan_in = weight[0].numel()
    weight = weight / (math.sqrt(fan_in) * weight.abs().amax(dim=(1, 2, 3), keepdim=True))
    styles = styles / styles.abs().amax(dim=1, keepdim=True)
    return weight, styles


def _modulated_conv2d_parts(
    x: Tensor,
    weight: Tensor,
    styles: Tensor,
    demodulate: bool = True,
    up: int = 1,
    padding: int = 0,
    resample_filter: Tensor | None = None,
) -> tuple[Tensor, Tensor | None]:
    """`modulated_conv2d` before its last step: (undemodulated output, coefficients [N, O]).

    The caller multiplies the output by the coefficients (None without demodulation), e.g.
    fused with noise and bias in `_scale_shift_activate`. 1x1 kernels (ToRGB) use a batched
    matmul with the small per-sample weights `weight * styles[n]`; larger kernels modulate the
    activations and share one dense (or up-sampling) convolution across the batch.
    """
    if demodulate and _reduced_conv_precision(x):
        weight, styles = _prenormalize_for_fp16(weight, styles)
    coefficients = demodulation_coefficients(weight, styles) if demodulate else None
    batch, in_channels = styles.shape
    out_channels, _, kh, kw = weight.shape
    if kh == kw == 1 and up == 1:
        per_sample = weight.reshape(1, out_channels, in_channels) * styles.unsqueeze(1)
        y = torch.matmul(per_sample.to(x.dtype), x.flatten(2))
        return y.reshape(batch, out_channels, *x.shape[2:]), coefficients
    x = x * styles.to(x.dtype).reshape(batch, in_channels, 1, 1)
    weight = weight.to(x.dtype)
    if up == 1:
        return F.conv2d(x, weight, padding=padding), coefficients
    if resample_filter is None:
        raise ValueError("an up-sampling modulated convolution needs a resample_filter")
    return conv2d_upsampled(x, weight, resample_filter, up=up, padding=padding), coefficients


def modulated_conv2d(
    x: Tensor,
    weight: Tensor,
    styles: Tensor,
    demodulate: bool = True,
    up: int = 1,
    padding: int = 0,
    resample_filter: Tensor | None = None,
) -> Tensor:
    """Modulated (and optionally demodulated) convolution, StyleGAN2 Eqs. 1-3.

    Equals, for each sample n, `conv(x[n], w'[n])` with `w'[n] = weight * styles[n]` along the
    input channels and, if `demodulate`, each output filter of `w'[n]` scaled to unit norm.
    `up > 1` convolves the FIR-up-sampled input (see `conv2d_upsampled`).
    """
    y, coefficients = _modulated_conv2d_parts(
        x, weight, styles, demodulate, up, padding, resample_filter
    )
    if coefficients is None:
        return y
    return y * coefficients.to(y.dtype).reshape(*coefficients.shape, 1, 1)


def _scale_shift_activate(
    y: Tensor,
    scale: Tensor | None = None,
    shift: Tensor | None = None,
    activation: str = "linear",
    gain: float | None = None,
    clamp: float | None = None,
) -> Tensor:
    """`clamp(act(y * scale + shift) * gain, -clamp, clamp)` (NVIDIA's fma + `bias_act`).

    `gain=None` uses the activation's default gain. Works in place on `y` (a temporary owned by
    the caller) when autograd records nothing here, otherwise out of place. For positively
    homogeneous activations the gain is folded into the scale and shift, so inference costs one
    fused multiply-add, the activation and the clamp.
    """
    spec = _activation(activation)
    gain = spec.gain if gain is None else gain
    inplace = not (
        torch.is_grad_enabled()
        and any(isinstance(t, Tensor) and t.requires_grad for t in (y, scale, shift))
    )
    if spec.positively_homogeneous and gain > 0 and gain != 1:
        scale = gain if scale is None else scale * gain
        shift = None if shift is None else shift * gain
        gain = 1.0
    if isinstance(scale, Tensor) and shift is not None:
        y = torch.addcmul(shift, y, scale, out=y) if inplace else torch.addcmul(shift, y, scale)
    else:
        if scale is not None:
            y = y.mul_(scale) if inplace else y * scale
        if shift is not None:
            y = y.add_(shift) if inplace else y + shift
    y = spec.apply(y, inplace)
    if gain != 1:
        y = y.mul_(gain) if inplace else y * gain
    if clamp is not None:
        y = y.clamp_(-clamp, clamp) if inplace else y.clamp(-clamp, clamp)
    return y


# ----------------------------------------------------------------------------------------------
# Layers (NVIDIA names and constructor arguments).


class FullyConnectedLayer(nn.Module):
    """Dense layer with equalized learning rate (StyleGAN, Sec. 4.1 of Karras et al. 2018)."""

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        activation: str = "linear",
        lr_multiplier: float = 1,
        bias_init: float = 0,
    ) -> None:
        super().__init__()
        _activation(activation)
        self.activation = activation
        self.weight = nn.Parameter(torch.randn([out_features, in_features]) / lr_multiplier)
        self.bias = nn.Parameter(torch.full([out_features], float(bias_init))) if bias else None
        self.weight_gain = lr_multiplier / math.sqrt(in_features)
        self.bias_gain = lr_multiplier

    def forward(self, x: Tensor) -> Tensor:
        weight = self.weight.to(x.dtype) * self.weight_gain
        bias = None if self.bias is None else self.bias.to(x.dtype) * self.bias_gain
        if self.activation == "linear" and bias is not None:
            return torch.addmm(bias.unsqueeze(0), x, weight.t())
        return _scale_shift_activate(x.matmul(weight.t()), shift=bias, activation=self.activation)


class Conv2dLayer(nn.Module):
    """Equalized-learning-rate convolution with optional FIR up-sampling (resnet skip path).

    Down-sampling (`down > 1`) belongs to NVIDIA's discriminator and is not implemented.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        bias: bool = True,
        activation: str = "linear",
        up: int = 1,
        down: int = 1,
        resample_filter: FilterSpec = (1, 3, 3, 1),
        conv_clamp: float | None = None,
        channels_last: bool = False,
        trainable: bool = True,
    ) -> None:
        super().__init__()
        if down != 1:
            raise ValueError(
                f"Conv2dLayer(down={down}) is a discriminator layer; this generator-only "
                "implementation supports down=1"
            )
        _activation(activation)
        self.activation = activation
        self.up = up
        self.conv_clamp = conv_clamp
        self.register_buffer("resample_filter", setup_fir_filter(resample_filter))
        self.padding = kernel_size // 2
        self.weight_gain = 1 / math.sqrt(in_channels * kernel_size**2)
        self.act_gain = ACTIVATIONS[activation].gain
        memory_format = torch.channels_last if channels_last else torch.contiguous_format
        weight = torch.randn([out_channels, in_channels, kernel_size, kernel_size])
        weight = weight.to(memory_format=memory_format)
        bias_tensor = torch.zeros([out_channels]) if bias else None
        if trainable:
            self.weight = nn.Parameter(weight)
            self.bias = nn.Parameter(bias_tensor) if bias_tensor is not None else None
        else:
            self.register_buffer("weight", weight)
            self.register_buffer("bias", bias_tensor)

    def forward(self, x: Tensor, gain: float = 1) -> Tensor:
        weight = (self.weight * self.weight_gain).to(x.dtype)
        if self.up == 1:
            y = F.conv2d(x, weight, padding=self.padding)
        else:
            y = conv2d_upsampled(x, weight, self.resample_filter, up=self.up, padding=self.padding)
        bias = None if self.bias is None else self.bias.to(y.dtype).reshape(-1, 1, 1)
        clamp = None if self.conv_clamp is None else self.conv_clamp * gain
        return _scale_shift_activate(
            y, shift=bias, activation=self.activation, gain=self.act_gain * gain, clamp=clamp
        )


class MappingNetwork(nn.Module):
    """z (and label c) -> w, broadcast to `num_ws` copies, with truncation (StyleGAN Fig. 1)."""

    def __init__(
        self,
        z_dim: int,
        c_dim: int,
        w_dim: int,
        num_ws: int | None,
        num_layers: int = 8,
        embed_features: int | None = None,
        layer_features: int | None = None,
        activation: str = "lrelu",
        lr_multiplier: float = 0.01,
        w_avg_beta: float | None = 0.995,
    ) -> None:
        super().__init__()
        self.z_dim = z_dim
        self.c_dim = c_dim
        self.w_dim = w_dim
        self.num_ws = num_ws
        self.num_layers = num_layers
        self.w_avg_beta = w_avg_beta
        if c_dim == 0:
            embed_features = 0
        elif embed_features is None:
            embed_features = w_dim
        if layer_features is None:
            layer_features = w_dim
        features = [z_dim + embed_features] + [layer_features] * (num_layers - 1) + [w_dim]
        if c_dim > 0:
            self.embed = FullyConnectedLayer(c_dim, embed_features)
        for idx in range(num_layers):
            layer = FullyConnectedLayer(
                features[idx], features[idx + 1], activation=activation, lr_multiplier=lr_multiplier
            )
            setattr(self, f"fc{idx}", layer)
        if num_ws is not None and w_avg_beta is not None:
            self.register_buffer("w_avg", torch.zeros([w_dim]))

    def forward(
        self,
        z: Tensor | None,
        c: Tensor | None,
        truncation_psi: float = 1,
        truncation_cutoff: int | None = None,
        skip_w_avg_update: bool = False,
    ) -> Tensor:
        parts = []
        if self.z_dim > 0:
            _check_shape(z, (None, self.z_dim), "z")
            parts.append(normalize_2nd_moment(z.to(torch.float32)))
        if self.c_dim > 0:
            _check_shape(c, (None, self.c_dim), "c (one-hot class labels)")
            parts.append(normalize_2nd_moment(self.embed(c.to(torch.float32))))
        if not parts:
            raise ValueError("MappingNetwork with z_dim=0 and c_dim=0 has no input")
        if len({part.shape[0] for part in parts}) > 1:
            raise ValueError(
                f"z and c must have the same batch size, got {z.shape[0]} and {c.shape[0]}"
            )
        x = torch.cat(parts, dim=1) if len(parts) > 1 else parts[0]
        for idx in range(self.num_layers):
            x = getattr(self, f"fc{idx}")(x)
        if self.w_avg_beta is not None and self.training and not skip_w_avg_update:
            self.w_avg.copy_(x.detach().mean(dim=0).lerp(self.w_avg, self.w_avg_beta))
        if self.num_ws is not None:
            x = x.unsqueeze(1).repeat([1, self.num_ws, 1])
        if truncation_psi != 1:
            if self.w_avg_beta is None:
                raise ValueError("truncation needs w_avg, but this mapping has w_avg_beta=None")
            if self.num_ws is None or truncation_cutoff is None:
                x = self.w_avg.lerp(x, truncation_psi)
            else:
                head = x[:, :truncation_cutoff]
                x[:, :truncation_cutoff] = self.w_avg.lerp(head, truncation_psi)
        return x


class SynthesisLayer(nn.Module):
    """Modulated 3x3 convolution + noise + bias + activation (StyleGAN2 Fig. 2c/d, one "conv")."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        w_dim: int,
        resolution: int,
        kernel_size: int = 3,
        up: int = 1,
        use_noise: bool = True,
        activation: str = "lrelu",
        resample_filter: FilterSpec = (1, 3, 3, 1),
        conv_clamp: float | None = None,
        channels_last: bool = False,
    ) -> None:
        super().__init__()
        _activation(activation)
        self.resolution = resolution
        self.up = up
        self.use_noise = use_noise
        self.activation = activation
        self.conv_clamp = conv_clamp
        self.register_buffer("resample_filter", setup_fir_filter(resample_filter))
        self.padding = kernel_size // 2
        self.act_gain = ACTIVATIONS[activation].gain
        self.affine = FullyConnectedLayer(w_dim, in_channels, bias_init=1)
        memory_format = torch.channels_last if channels_last else torch.contiguous_format
        weight = torch.randn([out_channels, in_channels, kernel_size, kernel_size])
        self.weight = nn.Parameter(weight.to(memory_format=memory_format))
        if use_noise:
            self.register_buffer("noise_const", torch.randn([resolution, resolution]))
            self.noise_strength = nn.Parameter(torch.zeros([]))
        self.bias = nn.Parameter(torch.zeros([out_channels]))

    def _noise(
        self,
        batch: int,
        device: torch.device,
        noise_mode: NoiseMode,
        generator: torch.Generator | None,
    ) -> Tensor | None:
        if not self.use_noise or noise_mode == "none":
            return None
        if noise_mode == "const":
            return self.noise_const * self.noise_strength
        shape = [batch, 1, self.resolution, self.resolution]
        return torch.randn(shape, device=device, generator=generator) * self.noise_strength

    def forward(
        self,
        x: Tensor,
        w: Tensor,
        noise_mode: NoiseMode = "random",
        gain: float = 1,
        noise_generator: torch.Generator | None = None,
    ) -> Tensor:
        in_resolution = self.resolution // self.up
        _check_shape(x, (None, self.weight.shape[1], in_resolution, in_resolution), "x")
        _check_noise_mode(noise_mode)
        y, scale = _modulated_conv2d_parts(
            x, self.weight, self.affine(w), True, self.up, self.padding, self.resample_filter
        )
        shift = self.bias.to(y.dtype).reshape(-1, 1, 1)
        noise = self._noise(x.shape[0], x.device, noise_mode, noise_generator)
        if noise is not None:
            shift = shift + noise.to(y.dtype)
        clamp = None if self.conv_clamp is None else self.conv_clamp * gain
        return _scale_shift_activate(
            y,
            scale.to(y.dtype).reshape(*scale.shape, 1, 1),
            shift,
            activation=self.activation,
            gain=self.act_gain * gain,
            clamp=clamp,
        )


class ToRGBLayer(nn.Module):
    """Modulated 1x1 convolution to image channels, no demodulation (StyleGAN2 Fig. 7 tRGB)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        w_dim: int,
        kernel_size: int = 1,
        conv_clamp: float | None = None,
        channels_last: bool = False,
    ) -> None:
        super().__init__()
        self.conv_clamp = conv_clamp
        self.affine = FullyConnectedLayer(w_dim, in_channels, bias_init=1)
        memory_format = torch.channels_last if channels_last else torch.contiguous_format
        weight = torch.randn([out_channels, in_channels, kernel_size, kernel_size])
        self.weight = nn.Parameter(weight.to(memory_format=memory_format))
        self.bias = nn.Parameter(torch.zeros([out_channels]))
        self.weight_gain = 1 / math.sqrt(in_channels * kernel_size**2)

    def forward(self, x: Tensor, w: Tensor) -> Tensor:
        styles = self.affine(w) * self.weight_gain
        y = modulated_conv2d(x, self.weight, styles, demodulate=False)
        bias = self.bias.to(y.dtype).reshape(-1, 1, 1)
        return _scale_shift_activate(y, shift=bias, clamp=self.conv_clamp)


class SynthesisBlock(nn.Module):
    """One resolution of the synthesis network; returns `(x, img)` (StyleGAN2 Fig. 7).

    `x` is the block's feature map (the Squeeze-and-Span teacher feature, captured with a
    forward hook on the block); `img` the running RGB image (`None` before the first ToRGB in
    the `orig` architecture).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        w_dim: int,
        resolution: int,
        img_channels: int,
        is_last: bool,
        architecture: str = "skip",
        resample_filter: FilterSpec = (1, 3, 3, 1),
        conv_clamp: float | None = None,
        use_fp16: bool = False,
        fp16_channels_last: bool = False,
        kernel_size: int = 3,
        use_noise: bool = True,
        activation: str = "lrelu",
    ) -> None:
        if architecture not in ARCHITECTURES:
            raise ValueError(f"architecture must be one of {ARCHITECTURES}, got {architecture!r}")
        super().__init__()
        self.in_channels = in_channels
        self.w_dim = w_dim
        self.resolution = resolution
        self.img_channels = img_channels
        self.is_last = is_last
        self.architecture = architecture
        self.use_fp16 = use_fp16
        self.channels_last = use_fp16 and fp16_channels_last
        self.register_buffer("resample_filter", setup_fir_filter(resample_filter))
        self.num_conv = 0
        self.num_torgb = 0
        layer_kwargs = dict(
            w_dim=w_dim,
            resolution=resolution,
            kernel_size=kernel_size,
            use_noise=use_noise,
            activation=activation,
            conv_clamp=conv_clamp,
            channels_last=self.channels_last,
        )
        if in_channels == 0:
            self.const = nn.Parameter(torch.randn([out_channels, resolution, resolution]))
        else:
            self.conv0 = SynthesisLayer(
                in_channels, out_channels, up=2, resample_filter=resample_filter, **layer_kwargs
            )
            self.num_conv += 1
        self.conv1 = SynthesisLayer(out_channels, out_channels, **layer_kwargs)
        self.num_conv += 1
        if is_last or architecture == "skip":
            self.torgb = ToRGBLayer(
                out_channels,
                img_channels,
                w_dim=w_dim,
                conv_clamp=conv_clamp,
                channels_last=self.channels_last,
            )
            self.num_torgb += 1
        if in_channels != 0 and architecture == "resnet":
            self.skip = Conv2dLayer(
                in_channels,
                out_channels,
                kernel_size=1,
                bias=False,
                up=2,
                resample_filter=resample_filter,
                channels_last=self.channels_last,
            )

    def activation_format(
        self, device: torch.device, force_fp32: bool
    ) -> tuple[torch.dtype, torch.memory_format]:
        """Activation dtype and memory format of this block on `device`.

        float16 only on CUDA in `use_fp16` blocks (NVIDIA's mixed precision); channels_last on
        CPU (faster oneDNN kernels) and in NVIDIA's `fp16_channels_last` blocks on CUDA.
        """
        reduced = self.use_fp16 and not force_fp32 and device.type == "cuda"
        dtype = torch.float16 if reduced else torch.float32
        channels_last = device.type == "cpu" or (self.channels_last and reduced)
        return dtype, torch.channels_last if channels_last else torch.contiguous_format

    def forward(
        self,
        x: Tensor | None,
        img: Tensor | None,
        ws: Tensor,
        force_fp32: bool = False,
        noise_mode: NoiseMode = "random",
        noise_generator: torch.Generator | None = None,
    ) -> tuple[Tensor, Tensor | None]:
        _check_shape(ws, (None, self.num_conv + self.num_torgb, self.w_dim), "ws")
        w_iter = iter(ws.unbind(dim=1))
        dtype, memory_format = self.activation_format(ws.device, force_fp32)
        layer_kwargs = dict(noise_mode=noise_mode, noise_generator=noise_generator)

        if self.in_channels == 0:
            x = self.const.to(dtype).unsqueeze(0).expand(ws.shape[0], -1, -1, -1)
            x = x.contiguous(memory_format=memory_format)
            x = self.conv1(x, next(w_iter), **layer_kwargs)
        else:
            half = self.resolution // 2
            _check_shape(x, (None, self.in_channels, half, half), "x")
            x = x.to(dtype=dtype, memory_format=memory_format)
            if self.architecture == "resnet":
                skip = self.skip(x, gain=math.sqrt(0.5))
                x = self.conv0(x, next(w_iter), **layer_kwargs)
                x = self.conv1(x, next(w_iter), gain=math.sqrt(0.5), **layer_kwargs)
                x = skip.add_(x)
            else:
                x = self.conv0(x, next(w_iter), **layer_kwargs)
                x = self.conv1(x, next(w_iter), **layer_kwargs)

        if img is not None:
            half = self.resolution // 2
            _check_shape(img, (None, self.img_channels, half, half), "img")
            img = upsample2d(img, self.resample_filter)
        if self.is_last or self.architecture == "skip":
            rgb = self.torgb(x, next(w_iter))
            rgb = rgb.to(dtype=torch.float32, memory_format=torch.contiguous_format)
            img = rgb if img is None else img + rgb
        return x, img


class SynthesisNetwork(nn.Module):
    """ws -> image: blocks `b4`, `b8`, ..., `b{img_resolution}` (StyleGAN2 Fig. 7)."""

    def __init__(
        self,
        w_dim: int,
        img_resolution: int,
        img_channels: int,
        channel_base: int = 32768,
        channel_max: int = 512,
        num_fp16_res: int = 0,
        **block_kwargs,
    ) -> None:
        if img_resolution < 4 or img_resolution & (img_resolution - 1):
            raise ValueError(f"img_resolution must be a power of two >= 4, got {img_resolution}")
        super().__init__()
        self.w_dim = w_dim
        self.img_resolution = img_resolution
        self.img_resolution_log2 = int(math.log2(img_resolution))
        self.img_channels = img_channels
        self.block_resolutions = [2**i for i in range(2, self.img_resolution_log2 + 1)]
        channels = {res: min(channel_base // res, channel_max) for res in self.block_resolutions}
        fp16_resolution = max(2 ** (self.img_resolution_log2 + 1 - num_fp16_res), 8)
        self.num_ws = 0
        for res in self.block_resolutions:
            is_last = res == img_resolution
            block = SynthesisBlock(
                channels[res // 2] if res > 4 else 0,
                channels[res],
                w_dim=w_dim,
                resolution=res,
                img_channels=img_channels,
                is_last=is_last,
                use_fp16=res >= fp16_resolution,
                **block_kwargs,
            )
            # A block's ToRGB shares its w with the next block's first conv.
            self.num_ws += block.num_conv + (block.num_torgb if is_last else 0)
            setattr(self, f"b{res}", block)

    def blocks(self) -> list[SynthesisBlock]:
        """The synthesis blocks from 4x4 up to the output resolution."""
        return [getattr(self, f"b{res}") for res in self.block_resolutions]

    def forward(
        self,
        ws: Tensor,
        force_fp32: bool = False,
        noise_mode: NoiseMode = "random",
        noise_generator: torch.Generator | None = None,
    ) -> Tensor:
        _check_shape(ws, (None, self.num_ws, self.w_dim), "ws")
        _check_noise_mode(noise_mode)
        ws = ws.to(torch.float32)
        x = img = None
        w_idx = 0
        for block in self.blocks():
            block_ws = ws.narrow(1, w_idx, block.num_conv + block.num_torgb)
            w_idx += block.num_conv
            x, img = block(
                x,
                img,
                block_ws,
                force_fp32=force_fp32,
                noise_mode=noise_mode,
                noise_generator=noise_generator,
            )
        return img


class Generator(nn.Module):
    """StyleGAN2 generator `G(z, c) -> img` in [-1, 1] (roughly), NVIDIA-compatible.

    `mapping_kwargs` go to `MappingNetwork`, `synthesis_kwargs` to `SynthesisNetwork` (and from
    there to each `SynthesisBlock`/`SynthesisLayer`), exactly as in NVIDIA's pickles'
    `init_kwargs`. `self.init_kwargs` records the arguments (as NVIDIA's persistent classes
    do), so `Generator(**G.init_kwargs)` rebuilds the same architecture.
    """

    def __init__(
        self,
        z_dim: int,
        c_dim: int,
        w_dim: int,
        img_resolution: int,
        img_channels: int,
        mapping_kwargs: dict | None = None,
        synthesis_kwargs: dict | None = None,
    ) -> None:
        super().__init__()
        self.init_kwargs = copy.deepcopy(
            dict(
                z_dim=z_dim,
                c_dim=c_dim,
                w_dim=w_dim,
                img_resolution=img_resolution,
                img_channels=img_channels,
                mapping_kwargs=dict(mapping_kwargs or {}),
                synthesis_kwargs=dict(synthesis_kwargs or {}),
            )
        )
        self.z_dim = z_dim
        self.c_dim = c_dim
        self.w_dim = w_dim
        self.img_resolution = img_resolution
        self.img_channels = img_channels
        self.synthesis = SynthesisNetwork(
            w_dim=w_dim,
            img_resolution=img_resolution,
            img_channels=img_channels,
            **(synthesis_kwargs or {}),
        )
        self.num_ws = self.synthesis.num_ws
        self.mapping = MappingNetwork(
            z_dim=z_dim, c_dim=c_dim, w_dim=w_dim, num_ws=self.num_ws, **(mapping_kwargs or {})
        )

    def forward(
        self,
        z: Tensor,
        c: Tensor | None,
        truncation_psi: float = 1,
        truncation_cutoff: int | None = None,
        noise_mode: NoiseMode = "random",
        force_fp32: bool = False,
        noise_generator: torch.Generator | None = None,
    ) -> Tensor:
        """Images `(N, img_channels, R, R)`; `c` is `(N, c_dim)` (ignored when `c_dim == 0`).

        `noise_mode='random'` draws per-layer noise from `noise_generator` (a `torch.Generator`
        on the generator's device; default: torch's global generator, as NVIDIA), so a seeded
        generator makes the images reproducible; `'const'` uses the stored `noise_const`
        buffers; `'none'` disables noise. `force_fp32` keeps `num_fp16_res` blocks in float32
        on CUDA (they always compute in float32 on CPU).
        """
        ws = self.mapping(z, c, truncation_psi=truncation_psi, truncation_cutoff=truncation_cutoff)
        return self.synthesis(
            ws, force_fp32=force_fp32, noise_mode=noise_mode, noise_generator=noise_generator
        )


# ----------------------------------------------------------------------------------------------
# Input checks.


def _check_shape(t: Tensor | None, expected: Sequence[int | None], name: str) -> None:
    shape_text = "(" + ", ".join("N" if s is None else str(s) for s in expected) + ")"
    if not isinstance(t, Tensor):
        raise ValueError(f"{name} must be a tensor of shape {shape_text}, got {type(t).__name__}")
    ok = t.ndim == len(expected) and all(
        s is None or s == actual for s, actual in zip(expected, t.shape, strict=False)
    )
    if not ok:
        raise ValueError(f"{name} must have shape {shape_text}, got {tuple(t.shape)}")


def _check_noise_mode(noise_mode: str) -> None:
    if noise_mode not in NOISE_MODES:
        raise ValueError(f"noise_mode must be one of {NOISE_MODES}, got {noise_mode!r}")
