"""Table 2 of the paper in miniature: SSL baselines vs Squeeze and Squeeze-and-Span on digits.

Rows (one yaml each in ``scripts/pretrain/digits/``): SimSiam and VICReg on Real, Syn and
Real & Syn (``method_kwargs.synthetic.domain``), Squeeze on Syn (``syn_ratio`` 1) and
Squeeze-and-Span on Real & Syn, all with the same backbone, augmentations, epochs, batch and
projector width, for 3 seeds; evaluation of the frozen backbones: linear top-1 with all labels
and with 10 labels per class, k-NN top-1 (see ``table_rows.py``). Writes a markdown table, a bar
plot and JSON (``--out``). Examples:
    python benchmarks/table2.py --threads 2 --out table2.json      # full: about 4 hours, 2 cores
    python benchmarks/table2.py --quick --out /tmp/table2.json     # smoke: under a minute
"""

from __future__ import annotations

from table_rows import Budget, Row, Table, table_main

DOMAIN_LABELS = {"real": "Real", "syn": "Syn", "real+syn": "Real & Syn"}
ROWS = (
    Row("SimSiam", "simsiam_real_digits", "simsiam", "real"),
    Row("VICReg", "vicreg_real_digits", "vicreg", "real"),
    Row("SimSiam", "simsiam_syn_digits", "simsiam", "syn"),
    Row("VICReg", "vicreg_syn_digits", "vicreg", "syn"),
    Row("Squeeze", "squeeze_digits", "sqsp", "syn"),
    Row("SimSiam", "simsiam_mix_digits", "simsiam", "real+syn"),
    Row("VICReg", "vicreg_mix_digits", "vicreg", "real+syn"),
    Row("Sq & Sp", "sqsp_digits", "sqsp", "real+syn"),
)
FULL = Budget(epochs=7, batch_size=128, seeds=(0, 1, 2), warmup_fraction=0.1)
QUICK = Budget(
    epochs=1,
    batch_size=8,
    seeds=(0,),
    width=16,
    max_steps=1,
    eval_images=100,
    warmup_fraction=0,
    extra=("data.num_workers=0", "++limit_val_batches=2"),
)


TABLE = Table(
    "Table 2 (digits): linear and k-NN top-1 of frozen features by pretraining domain",
    ROWS,
    ("pretrain data", "method"),
    lambda row: DOMAIN_LABELS[row.domain],
)


def main() -> None:
    table_main(TABLE, __doc__.split("\n\n")[0], FULL, QUICK)


if __name__ == "__main__":
    main()
