"""Stopping a trial that cannot end well, whatever the pruner says.

Two rules look at the training loss, window by window:

* **diverged**: a non-finite loss, or a window whose mean loss is far above where the
  run started (``trainer.divergence_factor``);
* **not learning**: after a share of the run (``trainer.not_learning_after``), a window
  whose mean loss has not fallen below the starting level. An LR far too high can
  leave a network at chance for the whole run (the loss flat near ``ln(classes)``)
  without ever rising enough to count as diverged, and a median pruner never sees it
  while it is one of the startup trials.

Both work on training losses only: delayed generalisation (a flat validation metric
while the training loss falls) never trips them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from omegaconf import DictConfig

from tuner.config.nodes import plain
from tuner.errors import UserError
from tuner.schedule.functions import warmup_length

NOT_LEARNING = "not learning"
#: No run is judged "not learning" before this many steps: the first dozens of steps of
#: many runs sit near chance (a small LR, an initialisation that takes a while to move),
#: and a window of a few losses is noise.
MIN_JUDGED_STEPS = 100


class DivergenceGuard:
    """Decides that a run diverged, or that it is not learning.

    Args:
        factor: Diverged once a window's mean loss exceeds ``factor`` times the initial loss.
        initial_steps: Steps whose mean loss is the reference.
        not_learning_after: Steps after which a window must sit below the starting level
            (None: never checked).
        tolerance: Share of the starting level a window must fall by to count as learning.
    """

    def __init__(
        self,
        *,
        factor: float = 4.0,
        initial_steps: int = 5,
        not_learning_after: int | None = None,
        tolerance: float = 0.02,
    ) -> None:
        self.factor = factor
        self.initial_steps = initial_steps
        self.not_learning_after = not_learning_after
        self.tolerance = tolerance
        self.reference: float | None = None
        #: Loss of a prediction that knows nothing (``ln(classes)``), when the model says.
        self.chance: float | None = None
        self.seen = 0

    def check(self, losses: Sequence[float]) -> str | None:
        """The reason the run must stop after this window of losses, or None."""
        self.seen += len(losses)
        if any(not math.isfinite(loss) for loss in losses):
            return f"loss became {next(v for v in losses if not math.isfinite(v))} (non-finite)"
        if self.reference is None:
            head = list(losses[: self.initial_steps])
            self.reference = sum(head) / len(head) if head else None
            losses = losses[len(head) :]
        if not losses or self.reference is None:
            return None
        mean = sum(losses) / len(losses)
        if mean > self.factor * self.reference:
            return (
                f"loss exploded: mean {mean:.4g} over {len(losses)} steps is above "
                f"{self.factor:g}x the initial {self.reference:.4g}"
            )
        return self._not_learning(mean, len(losses))

    def _not_learning(self, mean: float, window: int) -> str | None:
        if self.not_learning_after is None or self.seen < self.not_learning_after:
            return None
        # The starting level: the first steps' loss, or chance if the first steps already
        # jumped above it (a too-high LR's first updates can throw the loss up at once).
        start = min(self.reference or math.inf, self.chance or math.inf)
        if mean < start * (1 - self.tolerance):
            return None
        return (
            f"{NOT_LEARNING}: mean loss {mean:.4g} over the last {window} steps is not below "
            f"its start {start:.4g} after {self.seen} steps"
        )


def stop_reason(reason: str, steps: int) -> str:
    """The outcome's reason for a run a guard stopped at ``steps``."""
    if reason.startswith(NOT_LEARNING):
        return f"{reason} (stopped at step {steps})"
    return f"diverged at step {steps}: {reason}"


def not_learning_step(share: float | None, total: int, warmup: int) -> int | None:
    """The step from which a run is judged: ``share`` of the steps after its warmup.

    The share counts from the end of the warmup: a run still warming up trains at a
    fraction of its LR, and judging it then is the bias against warmup that the pruner
    avoids too. Never before :data:`MIN_JUDGED_STEPS`.
    """
    if share is None:
        return None
    return max(MIN_JUDGED_STEPS, warmup + math.ceil(share * (total - warmup)))


def guard_from_config(cfg: DictConfig) -> DivergenceGuard:
    """The guard a trial of this config runs with (``trainer.divergence_factor``, ``trainer.not_learning_*``)."""
    share = cfg.trainer.get("not_learning_after")
    total = int(cfg.trainer.max_steps)
    warmup = warmup_length(plain(cfg.schedule), total)
    return DivergenceGuard(
        factor=float(cfg.trainer.divergence_factor),
        not_learning_after=not_learning_step(None if share is None else float(share), total, warmup),
        tolerance=float(cfg.trainer.get("not_learning_tolerance", 0.02)),
    )


def check_guards(cfg: DictConfig) -> None:
    """Validates the guards' keys (bad input: one line naming the key)."""
    share = cfg.trainer.get("not_learning_after")
    if share is not None and (
        isinstance(share, bool) or not isinstance(share, (int, float)) or not 0 < share <= 1
    ):
        raise UserError(
            "trainer.not_learning_after",
            share,
            "give a share of trainer.max_steps in (0, 1], or null to turn it off",
        )
    tolerance = cfg.trainer.get("not_learning_tolerance", 0.02)
    if isinstance(tolerance, bool) or not isinstance(tolerance, (int, float)) or not 0 <= tolerance < 1:
        raise UserError("trainer.not_learning_tolerance", tolerance, "give a share in [0, 1), e.g. 0.02")
