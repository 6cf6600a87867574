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

from collections.abc import Sequence
from dataclasses import dataclass

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


def plateau_rule(cfg: DictConfig) -> PlateauRule | None:
    """``pruner.plateau_share`` as a rule for a trial of this config (None: off)."""
    share = cfg.pruner.get("plateau_share")
    if share is None or cfg.pruner.get("name") == "none":
        return None
    return PlateauRule(
        until=int(float(share) * int(cfg.trainer.max_steps)), maximize=cfg.study.direction == "maximize"
    )


def check_plateau(cfg: DictConfig) -> None:
    """Validates ``pruner.plateau_share`` (bad input: one line naming the key)."""
    share = cfg.pruner.get("plateau_share")
    if share is not None and (
        isinstance(share, bool) or not isinstance(share, (int, float)) or not 0 <= share <= 1
    ):
        raise UserError("pruner.plateau_share", share, "give a share of trainer.max_steps in [0, 1], or null")
