"""Choose the synthetic-sample source of a run from ``method_kwargs.synthetic``.

Two sources serve the same ``SyntheticBatch`` (views, pooled teacher features, images):

- ``source: live`` (default): ``solo_sqsp.synthetic.stream.SyntheticSource``, fresh latents through
  the generator every step (the paper's setting, Sec. 3.2): infinitely many samples, the generator
  runs once per step.
- ``source: bank``: ``solo_sqsp.synthetic.bank.BankSource``, ``bank_size`` samples drawn once,
  their images (uint8) and pooled features (fp16) stored in memory-mapped files and served like a
  dataset (shuffled passes, fresh per-sample augmentation every time): the generator runs once
  per sample, not once per step.

Keys of ``method_kwargs.synthetic`` (defaults in ``SYNTHETIC_DEFAULTS``):

``source``            ``"live"`` or ``"bank"``.
``bank_size``         samples in the bank (50000, one CIFAR-10 train split's worth).
``bank_path``         the bank directory; ``null``: ``synthetic_banks/<fingerprint>-n<size>-seed
                      <bank_seed>`` under the working directory (a run directory under Hydra).
``bank_seed``         seed of the bank's latents; ``null``: the run's ``seed``.
``bank_build_batch``  generator batch while building (256); fixed by the first build.
``bank_verify``       check every chunk's CRC-32 when the bank is opened (true).
``augment_mode``      ``"per_sample"`` (default: every synthetic sample draws its own crop and
                      jitter parameters) or ``"per_batch"`` (one draw shared by the whole batch,
                      as the paper's reference code); both sources honour it (``BatchAugment``).

A missing bank is built on first use (progress bar, resumable, see ``solo_sqsp.synthetic.bank``);
an existing one must match the teacher's fingerprint. Keys of the mapping that do not start with
``bank_`` (and are not ``source`` or ``augment_mode``) are left to the caller; an unknown
``bank_*`` key is an error.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from solo_sqsp.augment import AUGMENT_MODES, BatchAugment
from solo_sqsp.synthetic.bank import BankSource, ensure_bank, teacher_record
from solo_sqsp.synthetic.stream import StreamOptions, SyntheticBatch, SyntheticSource
from solo_sqsp.teachers import GeneratorTeacher

if TYPE_CHECKING:
    from typing_extensions import Unpack

SOURCES = ("live", "bank")
SYNTHETIC_DEFAULTS: dict[str, Any] = {
    "source": "live",
    "bank_size": 50000,
    "bank_path": None,
    "bank_seed": None,
    "bank_build_batch": 256,
    "bank_verify": True,
    "augment_mode": "per_sample",
}
DEFAULT_BANK_ROOT = "synthetic_banks"


class SyntheticStream(Protocol):
    """What a method needs of a synthetic source."""

    def next_batch(self) -> SyntheticBatch: ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


def synthetic_settings(spec: Mapping[str, Any] | None) -> dict[str, Any]:
    """``SYNTHETIC_DEFAULTS`` updated with ``spec`` (a dict or ``DictConfig``; None = defaults),
    checked: a known ``source`` and ``augment_mode``, no unknown ``bank_*`` key."""
    given = dict(spec.items()) if spec is not None else {}
    unknown = sorted(
        key for key in given if key.startswith("bank_") and key not in SYNTHETIC_DEFAULTS
    )
    if unknown:
        raise ValueError(
            f"method_kwargs.synthetic has unknown keys {unknown}; the bank keys are "
            f"{sorted(k for k in SYNTHETIC_DEFAULTS if k.startswith('bank_'))}"
        )
    settings = {**SYNTHETIC_DEFAULTS, **{k: v for k, v in given.items() if k in SYNTHETIC_DEFAULTS}}
    if settings["source"] not in SOURCES:
        raise ValueError(
            f"method_kwargs.synthetic.source={settings['source']!r} is unknown; use one of "
            f"{SOURCES}"
        )
    if settings["augment_mode"] not in AUGMENT_MODES:
        raise ValueError(
            f"method_kwargs.synthetic.augment_mode={settings['augment_mode']!r} is unknown; use "
            f"one of {AUGMENT_MODES}"
        )
    return settings


def build_synthetic_source(
    spec: Mapping[str, Any] | None,
    teacher: GeneratorTeacher,
    *,
    batch_size: int,
    augment: BatchAugment | None,
    **options: Unpack[StreamOptions],
) -> SyntheticStream:
    """The source ``spec`` asks for (see the module docstring), drawing ``batch_size`` samples
    a step with ``options`` (``num_views`` views each; ``seed``/``rank`` select the per-rank
    random stream; ``crop_size``/``mean``/``std`` apply when ``augment`` is None), on the
    teacher's device."""
    settings = synthetic_settings(spec)
    if settings["source"] == "live":
        return SyntheticSource(teacher, batch_size, augment, **options)

    run_seed = options.get("seed", 0)
    bank_seed = run_seed if settings["bank_seed"] is None else int(settings["bank_seed"])
    record = teacher_record(teacher)
    path = settings["bank_path"]
    if path is None:
        name = f"{record['fingerprint'][:16]}-n{settings['bank_size']}-seed{bank_seed}"
        path = Path(DEFAULT_BANK_ROOT) / name
    bank = ensure_bank(
        Path(path),
        teacher,
        size=int(settings["bank_size"]),
        seed=bank_seed,
        build_batch=int(settings["bank_build_batch"]),
        verify=bool(settings["bank_verify"]),
        record=record,
    )
    return BankSource(bank, teacher.device, batch_size, augment, **options)
