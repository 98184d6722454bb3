"""Analyses of a pretrained student and its teacher: the synthetic-real domain gap as squared
MMD (paper Table 5, right) and 2-D embeddings of teacher samples (paper Fig. 2).

``python -m solo_sqsp.analysis mmd --checkpoint RUN`` and
``python -m solo_sqsp.analysis embed --teacher PATH --out FILE.png``.
"""

from solo_sqsp.analysis.domain_gap import measure_domain_gap
from solo_sqsp.analysis.embedding import embed_2d, run_embedding
from solo_sqsp.analysis.mmd import kernel_matrix, median_bandwidth, squared_mmd
from solo_sqsp.analysis.samples import TeacherSamples, analysis_teacher, draw_samples
from solo_sqsp.analysis.student import Student, load_student

__all__ = [
    "Student",
    "TeacherSamples",
    "analysis_teacher",
    "draw_samples",
    "embed_2d",
    "kernel_matrix",
    "load_student",
    "measure_domain_gap",
    "median_bandwidth",
    "run_embedding",
    "squared_mmd",
]
