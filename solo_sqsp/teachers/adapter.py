"""The generator teacher of Squeeze-and-Span (paper Sec. 3.1 and Fig. 2).

Selected generator modules' outputs (StyleGAN2's synthesis blocks, or ``w``, Table 5),
global-average-pooled into one vector per module. Why the generator is a plain attribute, not a
submodule: docs/architecture.md.
"""

from __future__ import annotations

import inspect
import itertools
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.hooks import RemovableHandle

DEFAULT_FEATURES = r"synthesis\.b\d+$"
"""StyleGAN2's synthesis blocks ``synthesis.b4``, ``synthesis.b8``, ... (the paper's default)."""

MAPPING_FEATURE = "mapping"
"""The mapping network; its output ``w`` (one broadcast row) is the "latent variable" feature."""

CLASS_SAMPLING_MODES = ("uniform", "none")
DRY_RUN_BATCH = 2
DRY_RUN_SEED = 0


class FeatureSelectionError(ValueError):
    """A feature selection that names no module, or a module whose output cannot be pooled."""


@dataclass(frozen=True)
class TeacherSample:
    """One batch from the teacher: images in the generator's range (StyleGAN2: about [-1, 1]),
    one pooled ``(N, C_k)`` fp32 feature per selected module, and the latents that made them."""

    images: Tensor
    features: list[Tensor]
    z: Tensor
    c: Tensor


@dataclass(frozen=True)
class FeatureInfo:
    """A module output as the teacher sees it: per-sample shape before pooling, pooled width."""

    name: str
    shape: tuple[int, ...]
    dim: int


def feature_tensor(output: Any) -> Tensor | None:
    """The tensor a module output contributes: itself, or for a tuple the first element (a
    StyleGAN2 synthesis block returns ``(x, img)``; the feature is ``x``). None if unusable."""
    if isinstance(output, (tuple, list)) and output:
        output = output[0]
    if isinstance(output, Tensor) and output.is_floating_point() and output.ndim in (2, 3, 4):
        return output
    return None


def pool_feature(feature: Tensor) -> Tensor:
    """``(N, C)`` fp32 from a captured tensor: global average pool of a ``(N, C, H, W)`` map,
    row 0 of a ``(N, num_ws, w_dim)`` broadcast latent, a ``(N, C)`` vector as it is."""
    if feature.ndim == 4:
        return feature.mean(dim=(2, 3), dtype=torch.float32)
    if feature.ndim == 3:
        return feature[:, 0].float()
    return feature.float()


class _PooledCapture:
    """Forward hooks, in place while the context is open, that pool each watched module's output
    as it is produced, so no feature map outlives its module's forward. ``strict``: an output
    that cannot be pooled, or a module that runs twice, is an error rather than left out."""

    def __init__(self, modules: Mapping[str, nn.Module], strict: bool) -> None:
        self.modules = modules
        self.strict = strict
        self.pooled: dict[str, Tensor] = {}
        self.shapes: dict[str, tuple[int, ...]] = {}
        self._repeated: set[str] = set()
        self._handles: list[RemovableHandle] = []

    def __enter__(self) -> _PooledCapture:
        self._handles = [
            module.register_forward_hook(self._hook_for(name))
            for name, module in self.modules.items()
        ]
        return self

    def __exit__(self, *exc_info: object) -> None:
        for handle in self._handles:
            handle.remove()

    def _hook_for(self, name: str):
        def hook(module: nn.Module, inputs: Any, output: Any) -> None:
            feature = feature_tensor(output)
            if name in self.pooled:
                self._repeated.add(name)
                if self.strict:
                    raise FeatureSelectionError(
                        f"module {name!r} ran more than once in one generator call; select a "
                        "module that runs once per forward"
                    )
            elif feature is not None:
                self.shapes[name] = tuple(feature.shape[1:])
                self.pooled[name] = pool_feature(feature)
            elif self.strict:
                raise FeatureSelectionError(
                    f"module {name!r} returned {_describe(output)}; a feature module must return "
                    "a float tensor of 2, 3 or 4 dims, or a tuple whose first element is one"
                )

        return hook

    def usable(self) -> list[str]:
        return [name for name in self.pooled if name not in self._repeated]


def _describe(output: Any) -> str:
    if isinstance(output, Tensor):
        return f"a {output.dtype} tensor of shape {tuple(output.shape)}"
    return f"a {type(output).__name__}"


def select_feature_modules(generator: nn.Module, features: str | Sequence[str]) -> list[str]:
    """Names of the feature modules: every module whose name matches the regex ``features``
    in full (in ``named_modules()`` order), or the exact names listed (in the given order)."""
    names = [name for name, _ in generator.named_modules() if name]
    owner = type(generator).__name__
    known = f"module names of {owner}: {', '.join(names) or '(none)'}"
    if isinstance(features, str):
        try:
            pattern = re.compile(features)
        except re.error as err:
            raise FeatureSelectionError(f"feature regex {features!r} is invalid: {err}") from err
        selected = [name for name in names if pattern.fullmatch(name)]
        if not selected:
            raise FeatureSelectionError(f"feature regex {features!r} matches no module; {known}")
        return selected
    selected = list(features)
    if not selected:
        raise FeatureSelectionError(f"empty feature list; name at least one module; {known}")
    missing = [name for name in selected if name not in names]
    if missing:
        raise FeatureSelectionError(f"feature modules {missing} not found; {known}")
    if len(set(selected)) != len(selected):
        raise FeatureSelectionError(f"feature modules listed more than once: {selected}")
    return selected


def _generator_dim(generator: nn.Module, attribute: str, explicit: int | None) -> int | None:
    found = getattr(generator, attribute, None)
    if explicit is not None and found is not None and int(found) != explicit:
        raise ValueError(
            f"{attribute}={explicit} was passed but the generator's {attribute} is {found}; "
            f"drop the argument or fix it"
        )
    return explicit if explicit is not None else (None if found is None else int(found))


def _accepted_kwargs(
    generator: nn.Module, noise_mode: str | None, truncation_psi: float
) -> dict[str, Any]:
    """StyleGAN2-style call options, passed only where ``generator.forward`` takes them."""
    parameters = inspect.signature(generator.forward).parameters
    any_keyword = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values())
    kwargs: dict[str, Any] = {}
    if noise_mode is not None and ("noise_mode" in parameters or any_keyword):
        kwargs["noise_mode"] = noise_mode
    if truncation_psi != 1:
        if not ("truncation_psi" in parameters or any_keyword):
            raise ValueError(
                f"truncation_psi={truncation_psi} was asked for but "
                f"{type(generator).__name__}.forward takes no truncation_psi; use 1.0"
            )
        kwargs["truncation_psi"] = truncation_psi
    return kwargs


def _checked_class_sampling(class_sampling: str | Sequence[int], c_dim: int) -> str | list[int]:
    if isinstance(class_sampling, str):
        if class_sampling not in CLASS_SAMPLING_MODES:
            raise ValueError(
                f"class_sampling={class_sampling!r} is unknown; use one of "
                f"{CLASS_SAMPLING_MODES} or a list of class indices"
            )
        return class_sampling
    classes = [int(k) for k in class_sampling]
    if c_dim == 0:
        raise ValueError(f"class_sampling={classes} needs a conditional generator; c_dim is 0")
    bad = [k for k in classes if not 0 <= k < c_dim]
    if not classes or bad:
        raise ValueError(f"class_sampling must list class indices in [0, {c_dim}); got {classes}")
    return classes


class GeneratorTeacher(nn.Module):
    """A frozen generator and the pooled outputs of its feature modules (paper Fig. 2, left).

    ``generator`` is any ``nn.Module`` callable as ``G(z, c)`` returning ``(N, C, H, W)``
    images; ``noise_mode`` and ``truncation_psi`` are passed only if its forward takes them
    (``noise_mode=None``: never). ``features`` is a regex matched in full against module names
    (default: StyleGAN2's synthesis blocks; ``"mapping"``: the latent ``w``) or a list of exact
    names. ``class_sampling`` for conditional generators: ``"uniform"`` one-hot over all
    classes, a list of class indices drawn uniformly, or ``"none"`` (all-zero ``c``).
    ``z_dim`` / ``c_dim`` are read from the generator; pass them for generators without those
    attributes (a missing ``c_dim`` means unconditional).

    A dry run of batch 2 at construction fixes ``feature_names``, ``feature_dims``,
    ``feature_shapes``, ``image_shape``, ``resolution`` and ``img_channels`` before training.
    Sampling is deterministic given ``rng``: a generator whose forward takes
    ``noise_generator`` (ours) draws its ``noise_mode="random"`` noise from it too; one that
    does not (NVIDIA's own) draws random noise from the global RNG.
    """

    def __init__(
        self,
        generator: nn.Module,
        features: str | Sequence[str] = DEFAULT_FEATURES,
        class_sampling: str | Sequence[int] = "uniform",
        noise_mode: str | None = "const",
        truncation_psi: float = 1.0,
        z_dim: int | None = None,
        c_dim: int | None = None,
    ) -> None:
        super().__init__()
        generator.eval().requires_grad_(False)
        object.__setattr__(self, "_generator", generator)  # hidden from owners, see module doc
        self.z_dim = _generator_dim(generator, "z_dim", z_dim)
        if self.z_dim is None:
            raise ValueError(
                f"{type(generator).__name__} has no z_dim attribute; pass z_dim= to "
                "GeneratorTeacher"
            )
        self.c_dim = _generator_dim(generator, "c_dim", c_dim) or 0
        self.class_sampling = _checked_class_sampling(class_sampling, self.c_dim)
        self.feature_names = select_feature_modules(generator, features)
        self._call_kwargs = _accepted_kwargs(generator, noise_mode, truncation_psi)
        self._takes_noise_generator = (
            "noise_generator" in inspect.signature(generator.forward).parameters
        )
        self.training = False

        images, capture = self._dry_run(self.feature_names)
        self.image_shape: tuple[int, ...] = tuple(images.shape[1:])
        self.img_channels, self.resolution = self.image_shape[0], self.image_shape[1]
        self.feature_shapes = {name: capture.shapes[name] for name in self.feature_names}
        self.feature_dims = [int(capture.pooled[name].shape[1]) for name in self.feature_names]

    @property
    def generator(self) -> nn.Module:
        """The wrapped generator (frozen, eval mode, not a registered submodule)."""
        return self._generator

    @property
    def call_options(self) -> dict[str, Any]:
        """The keyword arguments every generator call gets (noise mode, truncation), as far as
        the generator accepts them."""
        return dict(self._call_kwargs)

    @property
    def device(self) -> torch.device:
        for tensor in itertools.chain(self._generator.parameters(), self._generator.buffers()):
            return tensor.device
        return torch.device("cpu")

    @property
    def _latent_dtype(self) -> torch.dtype:
        for parameter in self._generator.parameters():
            if parameter.is_floating_point():
                return parameter.dtype
        return torch.float32

    def train(self, mode: bool = True) -> GeneratorTeacher:
        """The teacher never trains: any ``train(mode)`` keeps it and its generator in eval."""
        super().train(False)
        self._generator.eval()
        return self

    def _apply(self, fn, recurse: bool = True):
        if recurse:
            self._generator._apply(fn, recurse)
        return super()._apply(fn, recurse)

    def extra_repr(self) -> str:
        return (
            f"generator={type(self._generator).__name__}, z_dim={self.z_dim}, "
            f"c_dim={self.c_dim}, features={self.feature_names}, dims={self.feature_dims}"
        )

    @torch.no_grad()
    def forward(
        self, z: Tensor, c: Tensor, noise_generator: torch.Generator | None = None
    ) -> tuple[Tensor, list[Tensor]]:
        """Images ``G(z, c)`` and the pooled ``(N, C_k)`` fp32 features, without gradients;
        ``noise_generator`` goes to generators whose forward takes it."""
        images, capture = self._generate(z, c, self.feature_names, True, noise_generator)
        return images, [capture.pooled[name] for name in self.feature_names]

    @torch.no_grad()
    def sample(self, n: int, rng: torch.Generator) -> TeacherSample:
        """Draw ``z ~ N(0, I)`` then ``c`` (see ``class_sampling``) from ``rng`` on the
        teacher's device, and run the generator."""
        if n < 1:
            raise ValueError(f"sample size must be at least 1, got {n}")
        if rng.device.type != self.device.type:
            raise ValueError(
                f"rng is on {rng.device} but the teacher is on {self.device}; create it with "
                f"torch.Generator(device=teacher.device)"
            )
        z = torch.randn(n, self.z_dim, generator=rng, device=self.device, dtype=self._latent_dtype)
        c = self._draw_classes(n, rng)
        images, features = self(z, c, rng)
        return TeacherSample(images=images, features=features, z=z, c=c)

    def candidate_features(self) -> list[FeatureInfo]:
        """Every generator module whose output could be a feature, with its shapes (one dry
        run; modules that run more than once per forward are left out)."""
        names = [name for name, _ in self._generator.named_modules() if name]
        _, capture = self._dry_run(names, strict=False)
        return [
            FeatureInfo(name, capture.shapes[name], int(capture.pooled[name].shape[1]))
            for name in names
            if name in capture.usable()
        ]

    def _draw_classes(self, n: int, rng: torch.Generator) -> Tensor:
        if self.c_dim == 0 or self.class_sampling == "none":
            return torch.zeros(n, self.c_dim, device=self.device, dtype=self._latent_dtype)
        if self.class_sampling == "uniform":
            labels = torch.randint(self.c_dim, (n,), generator=rng, device=self.device)
        else:
            choices = torch.tensor(self.class_sampling, device=self.device)
            labels = choices[torch.randint(len(choices), (n,), generator=rng, device=self.device)]
        return F.one_hot(labels, self.c_dim).to(self._latent_dtype)

    def _generate(
        self,
        z: Tensor,
        c: Tensor,
        names: Sequence[str],
        strict: bool,
        noise_generator: torch.Generator | None,
    ) -> tuple[Tensor, _PooledCapture]:
        kwargs = dict(self._call_kwargs)
        if noise_generator is not None and self._takes_noise_generator:
            kwargs["noise_generator"] = noise_generator
        modules = dict(self._generator.named_modules())
        with _PooledCapture({name: modules[name] for name in names}, strict) as capture:
            images = self._generator(z, c, **kwargs)
        if not (isinstance(images, Tensor) and images.ndim == 4):
            raise ValueError(
                f"{type(self._generator).__name__}(z, c) returned {_describe(images)}; a "
                "teacher generator must return images of shape (N, C, H, W)"
            )
        missing = [name for name in names if name not in capture.pooled]
        if strict and missing:
            raise FeatureSelectionError(
                f"feature modules {missing} did not run during G(z, c); select modules on "
                "the generator's forward path"
            )
        return images, capture

    @torch.no_grad()
    def _dry_run(self, names: Sequence[str], strict: bool = True) -> tuple[Tensor, _PooledCapture]:
        """One batch of 2 from a fixed seed, leaving the global RNG streams untouched."""
        device = self.device
        devices = [] if device.type == "cpu" else [device]
        with torch.random.fork_rng(devices=devices, device_type=device.type):
            rng = torch.Generator(device=device).manual_seed(DRY_RUN_SEED)
            z = torch.randn(
                DRY_RUN_BATCH, self.z_dim, generator=rng, device=device, dtype=self._latent_dtype
            )
            c = self._draw_classes(DRY_RUN_BATCH, rng)
            try:
                return self._generate(z, c, names, strict, rng)
            except FeatureSelectionError:
                raise
            except (RuntimeError, TypeError, ValueError) as err:
                raise ValueError(
                    f"dry run G(z, c) of {type(self._generator).__name__} with "
                    f"z_dim={self.z_dim}, c_dim={self.c_dim} failed: {err} (pass z_dim=/c_dim= "
                    "if the generator's attributes are missing or wrong)"
                ) from err
