"""Training one trial with PyTorch Lightning: the module, its callbacks, the trainer."""

from __future__ import annotations

from tuner._quiet import quiet_lightning
from tuner.training.callbacks import DivergenceGuard, PruningCallback, StepTrace
from tuner.training.module import TrialModule

quiet_lightning()

__all__ = ["DivergenceGuard", "PruningCallback", "StepTrace", "TrialModule"]
