"""The fault-injection suite: plain PyTorch training loops with injected faults, healthy
twins, scoring of the diagnoses and same-suite baselines (see ``docs/validation.md``)."""

from gradtracer.fault_suite.faults import FAMILIES, FAULTS, FaultSpec, fault_spec
from gradtracer.fault_suite.loop import VARIANTS, RunResult, RunSpec, train_run
from gradtracer.fault_suite.runner import SuiteConfig, run_suite, wilson

__all__ = [
    "FAMILIES",
    "FAULTS",
    "VARIANTS",
    "FaultSpec",
    "RunResult",
    "RunSpec",
    "SuiteConfig",
    "fault_spec",
    "run_suite",
    "train_run",
    "wilson",
]
