"""Generator teachers (paper Sec. 3.1): a frozen generator whose pooled block outputs the
student distils, and the loaders that bring one in from a file or a Python factory."""

from solo_sqsp.teachers.adapter import (
    DEFAULT_FEATURES,
    MAPPING_FEATURE,
    FeatureInfo,
    FeatureSelectionError,
    GeneratorTeacher,
    TeacherSample,
)
from solo_sqsp.teachers.errors import TeacherFileError, UnsafePickleError
from solo_sqsp.teachers.loading import (
    build_teacher,
    bundled_teachers,
    detect_kind,
    load_generator,
    resolve_teacher_path,
)

__all__ = [
    "DEFAULT_FEATURES",
    "MAPPING_FEATURE",
    "FeatureInfo",
    "FeatureSelectionError",
    "GeneratorTeacher",
    "TeacherFileError",
    "TeacherSample",
    "UnsafePickleError",
    "build_teacher",
    "bundled_teachers",
    "detect_kind",
    "load_generator",
    "resolve_teacher_path",
]
