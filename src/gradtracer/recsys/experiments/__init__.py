"""Reproducible studies: the Auto-Fix validation study (``gradtracer validate autofix``)."""

from gradtracer.recsys.experiments.autofix_report import study_verdicts, to_markdown, write_study
from gradtracer.recsys.experiments.autofix_study import (
    ArmResult,
    AutoFixStudyConfig,
    LrResult,
    StudyResult,
    notebook_leave_one_out,
    run_autofix_study,
)

__all__ = [
    "ArmResult",
    "AutoFixStudyConfig",
    "LrResult",
    "StudyResult",
    "notebook_leave_one_out",
    "run_autofix_study",
    "study_verdicts",
    "to_markdown",
    "write_study",
]
