"""What a population does for each member that a single trial's callbacks do for it.

Per member: the LR and loss of every step go to its sink (its MLflow run) in windows
and through its divergence guard; every validation is reported to its own Optuna
trial, keyed by global step, and its pruner is asked. A member that is pruned or
diverges leaves the stack at once. Decisions follow the single-trial callbacks
(:class:`~tuner.training.StepTrace`, :class:`~tuner.training.PruningCallback`) step
for step, including the validation Lightning runs when a single trial stops early.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import optuna
import pytorch_lightning as pl
import torch

from tuner.errors import UserError
from tuner.storage.resilience import storage_errors
from tuner.training.callbacks import DivergenceGuard, StepSink
from tuner.training.population_module import PopulationModule


@dataclass
class MemberLink:
    """One member's ties to the outside and what happened to it.

    Attributes:
        trial: Its Optuna trial (None when not tuning).
        warmup_steps: Steps before which it is not pruned.
        guard: Its divergence guard, or None.
        sink: Where its per-step LR and loss go, or None.
        on_report: Called with ``(step, metrics)`` after each of its evaluations.
        history: ``(step, value)`` of every reported value of the monitored metric.
        pruned_at: Step at which its pruner stopped it.
        diverged: Why it was stopped as diverged.
        stopped_at: Global step at which it left the stack.
        storage_errors: Reports the study storage did not take (it was away).
    """

    trial: optuna.Trial | None
    warmup_steps: int = 0
    guard: DivergenceGuard | None = None
    sink: StepSink | None = None
    on_report: Callable[[int, dict[str, float]], None] | None = None
    history: list[tuple[int, float]] = field(default_factory=list)
    pruned_at: int | None = None
    diverged: str | None = None
    stopped_at: int | None = None
    storage_errors: list[str] = field(default_factory=list)

    @property
    def last_value(self) -> float | None:
        return self.history[-1][1] if self.history else None


class PopulationControl(pl.Callback):
    """Traces, reports and prunes each member of a :class:`PopulationModule`.

    Args:
        links: One per member, by member index.
        monitor: The metric reported to the trials (``val_acc``...).
        flush_every: Steps per window of per-step values.
        val_every: Optimizer steps between two scheduled validations.
        val_loader: Makes the validation loader, for the validation of a member that
            diverges between two scheduled ones.
    """

    def __init__(
        self,
        links: Sequence[MemberLink],
        *,
        monitor: str,
        flush_every: int,
        val_every: int,
        val_loader: Callable[[], Iterable[Any]],
    ) -> None:
        self.links = list(links)
        self.val_every = val_every
        self.val_loader = val_loader
        self.monitor = monitor
        self.flush_every = flush_every
        self._rows: list[int] = []  # members of the pending window, in stack order
        self._steps: list[int] = []
        self._lrs: list[list[float]] = []
        self._losses: list[torch.Tensor] = []

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        if not outputs or outputs.get("losses") is None:
            return
        module = _population(pl_module)
        if not self._steps:
            self._rows = list(module.alive)
        self._steps += outputs["steps"]
        self._lrs += outputs["lrs"]
        self._losses.append(outputs["losses"])
        if len(self._steps) < self.flush_every or not self.flush(trainer):
            return
        # A single trial that stops here gets one more validation from Lightning, unless
        # one is due anyway; give the diverged members the same.
        if trainer.global_step % self.val_every != 0:
            metrics = module.evaluate(self.val_loader())
            for index in self._stopping(module):
                self._report(trainer, index, metrics[index], prune=False)
            self._drop(trainer, module)

    def on_validation_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.flush(trainer)

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        module = _population(pl_module)
        for index in module.alive:
            self._report(trainer, index, module.metrics[index], prune=True)
        self._drop(trainer, module)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.flush(trainer)
        for index in _population(pl_module).alive:
            self.links[index].stopped_at = trainer.global_step

    def flush(self, trainer: pl.Trainer) -> bool:
        """Sends the pending window to each member's sink and guard; True if one diverged."""
        if not self._losses:
            return False
        losses = torch.cat(self._losses).float().T.tolist()
        steps, lrs = self._steps, self._lrs
        self._steps, self._lrs, self._losses = [], [], []
        diverged = False
        for j, index in enumerate(self._rows):
            link, series = self.links[index], losses[j]
            if link.sink is not None:
                link.sink(steps, {"lr": [row[j] for row in lrs], "train_loss": series})
            reason = link.guard.check(series) if link.guard is not None and link.diverged is None else None
            if reason is not None:
                link.diverged, diverged = reason, True
        return diverged

    def _report(self, trainer: pl.Trainer, index: int, metrics: dict[str, float], *, prune: bool) -> None:
        if self.monitor not in metrics:
            raise UserError(
                "study.metric", self.monitor, f"a population logs {sorted(metrics)}; monitor one of those"
            )
        link, step, value = self.links[index], trainer.global_step, metrics[self.monitor]
        link.history.append((step, value))
        if link.on_report is not None:
            link.on_report(step, metrics)
        if link.trial is None:
            return
        try:
            link.trial.report(value, step=step)
            if prune and link.diverged is None and step > link.warmup_steps and link.trial.should_prune():
                link.pruned_at = step
        except storage_errors() as exc:
            # The storage is away: train on unpruned; the result is saved, with retries, at the end.
            link.storage_errors.append(f"step {step}: {type(exc).__name__}")

    def _stopping(self, module: PopulationModule) -> list[int]:
        return [
            i
            for i in module.alive
            if self.links[i].diverged is not None or self.links[i].pruned_at is not None
        ]

    def _drop(self, trainer: pl.Trainer, module: PopulationModule) -> None:
        stopping = self._stopping(module)
        for index in stopping:
            self.links[index].stopped_at = trainer.global_step
        module.drop(stopping)
        if not module.alive:
            trainer.should_stop = True


def _population(module: pl.LightningModule) -> PopulationModule:
    assert isinstance(module, PopulationModule)
    return module
