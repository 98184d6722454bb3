"""Table 5 (ablation) of the paper in miniature, on the embedded digits.

Rows a-f (``scripts/pretrain/digits/ablation_<row>_digits.yaml``): (a) vanilla distillation of
the concatenated generator features without augmentation, (b) with augmentation, (c) with the
squeeze module and the MSE alone, which collapses (the paper: chance accuracy; here the
projector outputs' per-dimension std goes to ~0), (d) plus the variance term, (e) plus the
covariance term (Squeeze), (f) plus span on real data (Squeeze and Span). Same budget, seeds and
evaluation as ``table2.py``; the "output std" column (mean per-dimension std of the projector
outputs on validation images) is the collapse check. Examples:
    python benchmarks/table5.py --threads 2 --out table5.json      # full: about 3 hours, 2 cores
    python benchmarks/table5.py --quick --out /tmp/table5.json     # smoke: under a minute
"""

from __future__ import annotations

from table2 import FULL, QUICK
from table_rows import Row, Table, table_main

ROWS = (
    Row("a: vanilla distillation, no aug", "ablation_a_digits", "sqsp", "syn"),
    Row("b: + augmentation", "ablation_b_digits", "sqsp", "syn"),
    Row("c: + squeeze, MSE only", "ablation_c_digits", "sqsp", "syn"),
    Row("d: + variance", "ablation_d_digits", "sqsp", "syn"),
    # e and f are Table 2's Squeeze and Sq & Sp rows (their yamls differ only in the name), so a
    # shared --work-dir trains them once for both tables
    Row("e: + covariance (Squeeze)", "squeeze_digits", "sqsp", "syn"),
    Row("f: + span (Sq & Sp)", "sqsp_digits", "sqsp", "real+syn"),
)


TABLE = Table(
    "Table 5 (digits): ablation of squeeze and span", ROWS, ("row",), lambda row: row.label
)


def main() -> None:
    table_main(TABLE, __doc__.split("\n\n")[0], FULL, QUICK)


if __name__ == "__main__":
    main()
