"""Callbacks of a trial: per-step trace and pruning (the guards are in :mod:`tuner.training.guards`).

Optuna's own Lightning callback imports ``lightning.pytorch``, which cannot be mixed
with ``pytorch_lightning`` ("Expected a parent"), so pruning is written here.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import optuna
import pytorch_lightning as pl
import torch

from tuner.errors import UserError
from tuner.storage.resilience import storage_errors
from tuner.training.guards import DivergenceGuard
from tuner.training.plateau import NoiseRule, PlateauRule
from tuner.training.probe import PROBES_ATTR, CooldownProbe

#: Receives ``steps`` and ``{"lr": [...], "train_loss": [...]}`` for a window of steps.
StepSink = Callable[[list[int], dict[str, list[float]]], None]


class StepTrace(pl.Callback):
    """Records the LR and training loss of every optimizer step, a window at a time.

    Losses stay on the device until a window is flushed (every ``flush_every`` steps and
    before each validation), so a GPU is not synchronised every step.

    Args:
        flush_every: Steps per window.
        sink: Where each window goes (the MLflow run), or None.
        guard: Divergence guard checked on each window, or None.
    """

    def __init__(
        self, *, flush_every: int = 50, sink: StepSink | None = None, guard: DivergenceGuard | None = None
    ) -> None:
        self.flush_every = flush_every
        self.sink = sink
        self.guard = guard
        self.diverged: str | None = None
        self.last_loss: float | None = None
        self._steps: list[int] = []
        self._lrs: list[float] = []
        self._losses: list[torch.Tensor] = []
        #: Mean training loss of each interval between two evaluations (the plateau rule's trend).
        self.interval_losses: list[float] = []
        self._interval = [0.0, 0]

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        if not outputs or outputs.get("losses") is None:
            return
        self._steps += outputs["steps"]
        self._lrs += outputs["lrs"]
        self._losses.append(outputs["losses"])
        if self.guard is not None and self.guard.chance is None:
            self.guard.chance = outputs.get("chance")
        if len(self._steps) >= self.flush_every:
            self.flush(trainer)

    def on_validation_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.flush(trainer)
        total, count = self._interval
        if count:
            self.interval_losses.append(total / count)
        self._interval = [0.0, 0]

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.flush(trainer)

    def flush(self, trainer: pl.Trainer) -> None:
        """Sends the pending window to the sink and checks it for divergence."""
        if not self._losses:
            return
        losses = torch.cat(self._losses).float().tolist()
        steps, lrs = self._steps, self._lrs
        self._steps, self._lrs, self._losses = [], [], []
        self.last_loss = losses[-1]
        self._interval = [self._interval[0] + sum(losses), self._interval[1] + len(losses)]
        if self.sink is not None:
            self.sink(steps, {"lr": lrs, "train_loss": losses})
        reason = self.guard.check(losses) if self.guard is not None and self.diverged is None else None
        # Every rank must stop together: one diverged rank stops them all.
        if trainer.strategy.reduce_boolean_decision(reason is not None, all=False):
            self.diverged = self.diverged or reason or "diverged on another rank"
            trainer.should_stop = True


class PruningCallback(pl.Callback):
    """Reports the monitored metric to the trial after every validation and prunes.

    Reports are keyed by global step. No pruning before the warmup ends: a run still
    warming up looks worse than it is. With cooldown probes (``probe=cooldown``) the
    value judged at a probe rung is the branch's, and evaluations between rungs are
    logged but not judged. The plateau rule spares a trial whose metric is flat while
    its training loss still falls. Under DDP, rank 0 talks to Optuna and its decision
    is broadcast to every rank.

    Args:
        trial: The Optuna trial (None on ranks other than 0, or when not tuning).
        monitor: Logged metric to report (``val_acc``...).
        warmup_steps: Steps before which no pruning happens.
        on_report: Called with ``(step, metrics)`` after each evaluation (tracking, progress).
        probe: Branches cooldowns at its rungs (None: judge each evaluation as it is).
        evaluate: Validation metrics of the model as it is now (for the probe's branch).
        plateau: The plateau rule (None: off).
        noise: The noise rule (None: off).
        train_losses: Mean training loss of each evaluation interval so far.
    """

    def __init__(
        self,
        trial: optuna.Trial | None,
        *,
        monitor: str,
        warmup_steps: int = 0,
        on_report: Callable[[int, dict[str, float]], None] | None = None,
        probe: CooldownProbe | None = None,
        evaluate: Callable[[], dict[str, float]] | None = None,
        plateau: PlateauRule | None = None,
        noise: NoiseRule | None = None,
        train_losses: Callable[[], list[float]] | None = None,
    ) -> None:
        self.trial = trial
        self.monitor = monitor
        self.warmup_steps = warmup_steps
        self.on_report = on_report
        self.probe = probe
        self.evaluate = evaluate
        self.plateau = plateau
        self.noise = noise
        self.train_losses = train_losses
        self.pruned_at: int | None = None
        self.history: list[tuple[int, float]] = []
        #: Validation loss at each evaluation (the plateau rule's second sign of learning).
        self.val_losses: list[float] = []
        #: ``(step, value)`` the pruner judged: branch values at probe rungs, else as evaluated.
        self.judged: list[tuple[int, float]] = []
        #: Steps at which the plateau or noise rule kept a trial the pruner would have stopped.
        self.spared: list[int] = []
        #: Reports the storage did not take (it was away).
        self.storage_errors: list[str] = []

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("val")}
        if self.monitor not in metrics:
            raise UserError(
                "study.metric",
                self.monitor,
                f"the model logs {sorted(trainer.callback_metrics)}; monitor one of those",
            )
        step, value = trainer.global_step, metrics[self.monitor]
        self.history.append((step, value))
        if "val_loss" in metrics:
            self.val_losses.append(metrics["val_loss"])
        judged, extra = self._judged(trainer, pl_module, step, value)
        if self.on_report is not None:
            self.on_report(step, {**metrics, **extra})
        if judged is None:
            return
        self.judged.append((step, judged))
        should_prune = False
        if trainer.is_global_zero and self.trial is not None:
            should_prune = self._ask(step, judged)
        if trainer.world_size > 1:
            should_prune = bool(trainer.strategy.broadcast(should_prune, src=0))
        if should_prune:
            self.pruned_at = step
            trainer.should_stop = True

    def _judged(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, step: int, value: float
    ) -> tuple[float | None, dict[str, float]]:
        """The value the pruner sees at ``step`` (None: not a rung) and the probe's metrics to log."""
        if self.probe is None or self.evaluate is None:
            return value, {}
        if not self.probe.due(step):
            # Between rungs the raw value is the mid-flight one the probes replace.
            return (value, {}) if step >= self.probe.total_steps else (None, {})
        optimizer = trainer.optimizers[0]
        scheduler = trainer.lr_scheduler_configs[0].scheduler if trainer.lr_scheduler_configs else None
        net = getattr(pl_module, "net", pl_module)
        result = self.probe.run(net, optimizer, scheduler, self.evaluate, step=step)
        extra = {f"probe_{k}": v for k, v in result.metrics.items()}
        extra["probe_run_length"] = float(result.run_length)
        return result.metrics[self.monitor], extra

    def _ask(self, step: int, judged: float) -> bool:
        """Reports to the trial and asks its pruner (rank 0)."""
        assert self.trial is not None
        try:
            self.trial.report(judged, step=step)
            if self.probe is not None and self.probe.results:
                self.trial.set_user_attr(
                    PROBES_ATTR, [[r.run_length, r.metrics[self.monitor]] for r in self.probe.results]
                )
            if step <= self.warmup_steps or not self.trial.should_prune():
                return False
            if self.noise is not None and self.noise.spares(self.trial, step, judged):
                self.spared.append(step)  # within the metric's noise of the median: no evidence
                return False
        except storage_errors() as exc:
            # The storage is away: train on unpruned; the result is saved, with retries, at the end.
            self.storage_errors.append(f"step {step}: {type(exc).__name__}")
            return False
        losses = self.train_losses() if self.train_losses is not None else []
        if self.plateau is not None and self.plateau.spares(
            step, [v for _, v in self.judged], losses, self.val_losses
        ):
            self.spared.append(step)
            return False
        return True

    @property
    def last_value(self) -> float | None:
        """The last reported value of the monitored metric."""
        return self.history[-1][1] if self.history else None
