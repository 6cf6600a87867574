"""The plateau rule: a flat metric is not a reason to prune a trial that still learns.

Some tasks generalise late (common with strong weight decay): the validation metric
stays flat for a long stretch while the training loss falls, then jumps. A pruner
that compares trials at their early evaluations keeps exactly the trials that stay
on the plateau. Until ``pruner.plateau_share`` of its steps are done, a trial whose
judged metric has not improved (flat, or worse: a trial about to generalise often dips
below the plateau first) while it still learns is kept. Still learning: its training
loss falls (memorising), or its validation loss falls (on modular addition with strong
weight decay the validation loss falls for hundreds of steps before the accuracy moves,
while the training loss, already near zero, creeps up). At its first evaluation there is
no earlier value to compare with: a training loss below the first steps' one is enough.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import optuna
from omegaconf import DictConfig

from tuner.errors import UserError


@dataclass(frozen=True)
class PlateauRule:
    """Args:
    until: Step from which the rule spares nothing (the share of the budget spent).
    flat: A metric that gained at most this (relative, at least absolute) has not improved.
    falling: The training loss falls when an interval's mean is this share below the last.
    maximize: The judged metric's direction (val_acc: true, val_loss: false).
    """

    until: int
    flat: float = 0.01
    falling: float = 0.01
    maximize: bool = True

    def spares(
        self, step: int, judged: Sequence[float], losses: Sequence[float], val_losses: Sequence[float] = ()
    ) -> bool:
        """Whether a trial the pruner would stop at ``step`` is kept.

        ``losses``: the training loss of the first steps, then the mean of each interval
        between evaluations; ``val_losses``: the validation loss at each evaluation.
        """
        if step >= self.until or not judged:
            return False
        learning = self._falls(losses) or self._falls(val_losses)
        if len(judged) < 2:
            return learning
        previous = judged[-2]
        gain = (judged[-1] - previous) * (1 if self.maximize else -1)
        return gain <= self.flat * max(1.0, abs(previous)) and learning

    def _falls(self, series: Sequence[float]) -> bool:
        return len(series) >= 2 and series[-1] < series[-2] * (1 - self.falling)


@dataclass(frozen=True)
class NoiseRule:
    """A trial within the metric's sampling noise of the typical trial is not pruned.

    An accuracy over n validation examples has a standard error of sqrt(p(1-p)/n); a trial
    that sits less than ``standard_errors`` of them below the median of the complete trials
    at the same step is no worse by any evidence. On a plateau where many trials tie (0.467 on
    modular addition, 122 validation examples: one standard error is 0.045), the trials about
    to generalise often sit a validation example or two below it.

    Args:
        samples: Validation examples the accuracy is measured on.
        standard_errors: The margin, in standard errors.
        maximize: The study's direction.
    """

    samples: int
    standard_errors: float = 1.0
    maximize: bool = True

    def margin(self, p: float) -> float:
        return self.standard_errors * math.sqrt(max(p * (1.0 - p), 0.0) / self.samples)

    def spares(self, trial: optuna.Trial, step: int, value: float) -> bool:
        """Whether a trial the pruner would stop at ``step`` with ``value`` is kept."""
        complete = trial.study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
        others = [t.intermediate_values[step] for t in complete if step in t.intermediate_values]
        if not others:
            return False
        median = statistics.median(others)
        if not 0.0 <= median <= 1.0:
            return False
        gap = median - value if self.maximize else value - median
        return gap <= self.margin(median)


def noise_rule(cfg: DictConfig, validation_examples: int | None) -> NoiseRule | None:
    """``pruner.noise_margin`` as a rule (None: off, no pruner, not an accuracy, or the size
    of the validation set unknown)."""
    margin = float(cfg.pruner.get("noise_margin") or 0.0)
    if not margin or cfg.pruner.get("name") == "none" or "acc" not in str(cfg.study.metric):
        return None
    if not validation_examples:
        return None
    return NoiseRule(validation_examples, margin, maximize=cfg.study.direction == "maximize")


def validation_examples(loader: Any) -> int | None:
    """Examples a validation loader holds, where it says (the built-in data's loaders, or a
    torch ``DataLoader`` over a dataset with a length)."""
    if isinstance(getattr(loader, "examples", None), int):
        return int(loader.examples)
    try:
        return len(loader.dataset)
    except (AttributeError, TypeError):
        return None


def plateau_rule(cfg: DictConfig) -> PlateauRule | None:
    """``pruner.plateau_share`` as a rule for a trial of this config (None: off)."""
    share = cfg.pruner.get("plateau_share")
    if share is None or cfg.pruner.get("name") == "none":
        return None
    return PlateauRule(
        until=int(float(share) * int(cfg.trainer.max_steps)), maximize=cfg.study.direction == "maximize"
    )


def check_plateau(cfg: DictConfig) -> None:
    """Validates ``pruner.plateau_share`` and ``pruner.noise_margin`` (bad input: one line naming the key)."""
    margin = cfg.pruner.get("noise_margin")
    if margin is not None and (isinstance(margin, bool) or not isinstance(margin, (int, float)) or not margin >= 0):
        raise UserError("pruner.noise_margin", margin, "give a number of standard errors >= 0 (0: off)")
    share = cfg.pruner.get("plateau_share")
    if share is not None and (
        isinstance(share, bool) or not isinstance(share, (int, float)) or not 0 <= share <= 1
    ):
        raise UserError("pruner.plateau_share", share, "give a share of trainer.max_steps in [0, 1], or null")
