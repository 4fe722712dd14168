"""ckd_tune: search and benchmark knowledge-distillation schedules."""

__version__ = "0.1.0"
