"""The teacher bank: an optional synthetic source that runs the generator once per sample.

``bank_size`` latents are drawn once; each sample's image (uint8) and pooled teacher features
(fp16) are stored in memory-mapped files (``storage``), validated against the teacher they were
made from (``fingerprint``), and served like a dataset with fresh per-sample augmentation each
time (``source``). Chosen with ``method_kwargs.synthetic.source: bank``
(``solo_sqsp.synthetic.sources``).
"""

from solo_sqsp.synthetic.bank.fingerprint import record_mismatch, teacher_record
from solo_sqsp.synthetic.bank.source import BankSource
from solo_sqsp.synthetic.bank.storage import (
    BankError,
    TeacherBank,
    build_bank,
    ensure_bank,
    images_to_uint8,
    open_bank,
    tagged_seed,
    verify_checksums,
)

__all__ = [
    "BankError",
    "BankSource",
    "TeacherBank",
    "build_bank",
    "ensure_bank",
    "images_to_uint8",
    "open_bank",
    "record_mismatch",
    "tagged_seed",
    "teacher_record",
    "verify_checksums",
]
