"""Teacher bank vs live teacher: does a finite bank of N samples match the live teacher?

Squeeze-and-Span on the embedded digits (``sqsp_digits``) with the table budget of
``table2.py`` (so its live row is ``table2.py``'s Sq & Sp row, reused from a shared
``--work-dir``), fed either by the live teacher (fresh latents every step) or by a teacher bank
of N samples drawn once (``method_kwargs.synthetic.source=bank``, fresh augmentation each
time). The live runs see about ``epochs * steps * a * batch`` distinct samples (14,784 at the
default budget), so banks of a fraction of that, of about that and of more show from which N a
bank stops costing accuracy. Same probes and output files as the tables. Examples:
    python benchmarks/bank_accuracy.py --threads 2 --out bank.json     # full: about 2 hours
    python benchmarks/bank_accuracy.py --quick --out /tmp/bank.json    # smoke: under a minute
"""

from __future__ import annotations

from table2 import FULL, QUICK
from table_rows import Row, Table, table_main

BANK_SIZES = (1024, 4096, 16384)
ROWS = (
    Row("live teacher", "sqsp_digits", "sqsp", "real+syn"),
    *(
        Row(
            f"bank of {size:,}",
            "sqsp_digits",
            "sqsp",
            "real+syn",
            (
                "++method_kwargs.synthetic.source=bank",
                f"++method_kwargs.synthetic.bank_size={size}",
            ),
        )
        for size in BANK_SIZES
    ),
)


TABLE = Table(
    "Teacher bank (digits): Sq & Sp fed by a bank of N samples vs the live teacher",
    ROWS,
    ("synthetic source",),
    lambda row: row.label,
)


def main() -> None:
    table_main(TABLE, __doc__.split("\n\n")[0], FULL, QUICK)


if __name__ == "__main__":
    main()
