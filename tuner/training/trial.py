"""One trial end to end: trial config -> model, optimizer, schedule -> fit -> outcome."""

from __future__ import annotations

import dataclasses
import math
import traceback
from dataclasses import dataclass, field

import optuna
import pytorch_lightning as pl
import torch
from omegaconf import DictConfig

from tuner.config.nodes import plain
from tuner.devices import trial_devices, world_size
from tuner.errors import UserError
from tuner.models.factory import build_model
from tuner.schedule.functions import warmup_length
from tuner.secrets import mask_secrets
from tuner.stopping import StopOnRequest
from tuner.tracking.tracker import TrialRun
from tuner.training import PruningCallback, StepTrace, TrialModule, ddp
from tuner.training.guards import guard_from_config, stop_reason
from tuner.training.module import StepChunks, evaluate
from tuner.training.plateau import noise_rule, plateau_rule, validation_examples
from tuner.training.probe import CooldownProbe, probe_settings


@dataclass
class Outcome:
    """How a trial ended.

    Attributes:
        state: ``COMPLETE``, ``PRUNED`` or ``FAIL``.
        value: Last value of the monitored metric (None if never evaluated).
        reason: Why it was pruned or failed.
        steps: Optimizer steps it took.
        metrics: Final test-split metrics (complete trials only).
        error: Formatted traceback of a failure.
        world_size: Processes the trial trained on (DDP ranks).
        probes: ``(run_length, validation metrics)`` of each cooldown branch (``probe=cooldown``).
    """

    state: str
    value: float | None
    reason: str | None = None
    steps: int = 0
    metrics: dict[str, float] = field(default_factory=dict)
    error: str | None = None
    world_size: int = 1
    probes: list[tuple[int, dict[str, float]]] = field(default_factory=list)
    #: Optimizer steps its cooldown branches took: training too, so a budget counts them.
    probe_steps: int = 0

    def __post_init__(self) -> None:
        # The reason and traceback quote the model's exception, which may hold a password
        # (a database URL); each outcome is masked once, before it is printed or stored.
        self.reason = None if self.reason is None else mask_secrets(self.reason)
        self.error = None if self.error is None else mask_secrets(self.error)


def steps_per_call(cfg: DictConfig) -> int:
    """Optimizer steps per Lightning step: the largest divisor of the validation interval
    not above the configured value, so validation still falls on the configured steps."""
    wanted = max(1, int(cfg.trainer.get("steps_per_call") or 1))
    every = int(cfg.trainer.val_check_interval)
    return max(d for d in range(1, min(wanted, every) + 1) if every % d == 0)


def fit_in_chunks(
    trainer: pl.Trainer, module: pl.LightningModule, datamodule: pl.LightningDataModule, cfg: DictConfig
) -> None:
    """Fits on the datamodule's loaders, ``steps_per_call(cfg)`` optimizer steps per Lightning step."""
    trainer.fit(
        module,
        train_dataloaders=StepChunks(datamodule.train_dataloader(), steps_per_call(cfg)),
        val_dataloaders=datamodule.val_dataloader(),
    )


def make_trainer(cfg: DictConfig, callbacks: list[pl.Callback]) -> pl.Trainer:
    """A Lightning trainer that does only what a trial needs.

    Checkpointing, the model summary, loggers and progress bars are off: the tracking
    layer records what matters, and each of them costs time on every trial. Gradient
    clipping is the module's (optimization is manual).
    """
    t = cfg.trainer
    multi = world_size(cfg) > 1
    return pl.Trainer(
        max_steps=int(t.max_steps),
        max_epochs=-1,
        accelerator=str(t.accelerator),
        devices=trial_devices(cfg),
        strategy=ddp.strategy(cfg) if multi else t.strategy,
        precision=t.precision,
        val_check_interval=int(t.val_check_interval) // steps_per_call(cfg),
        check_val_every_n_epoch=None,
        num_sanity_val_steps=0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=callbacks,
    )


def run_trial(
    cfg: DictConfig,
    datamodule: pl.LightningDataModule,
    *,
    trial: optuna.Trial | None,
    run: TrialRun | None,
) -> Outcome:
    """Trains one trial config and says how it ended; the caller tells Optuna.

    User errors (a metric the model never logs, a model that cannot be built) are
    raised: they would fail every trial the same way. Anything else raised by the
    model's code ends this trial as FAIL with its traceback.
    """
    pl.seed_everything(int(cfg.seed), workers=False, verbose=False)
    net = build_model(cfg, datamodule)
    total = int(cfg.trainer.max_steps)
    schedule, optimizer = plain(cfg.schedule), plain(cfg.optimizer)
    warmup = warmup_length(schedule, total)
    trace = StepTrace(
        flush_every=int(cfg.tracking.step_flush_every),
        sink=run.log_steps if run is not None else None,
        guard=guard_from_config(cfg),
    )
    reporter = PruningCallback(
        trial,
        monitor=str(cfg.study.metric),
        warmup_steps=warmup,
        on_report=(lambda step, metrics: run.log_metrics(step, metrics)) if run is not None else None,
        probe=make_probe(cfg, datamodule, warmup_steps=warmup),
        evaluate=lambda: evaluate(net, datamodule.val_dataloader()),
        plateau=plateau_rule(cfg),
        noise=noise_rule(cfg, validation_examples(datamodule.val_dataloader())),
        train_losses=lambda: losses_since_start(trace),
    )
    clip = cfg.trainer.get("gradient_clip_val")
    module = TrialModule(
        net, optimizer=optimizer, schedule=schedule, total_steps=total, gradient_clip_val=clip
    )
    stopper = StopOnRequest()
    trainer = make_trainer(cfg, [trace, reporter, stopper])
    try:
        fit_in_chunks(trainer, module, datamodule, cfg)
    except UserError:
        raise
    except Exception as exc:
        return _failed(exc, reporter.last_value, trainer.global_step)
    if stopper.stopped:
        raise KeyboardInterrupt(f"stopped at step {trainer.global_step}")
    outcome = _ending(trainer, trace, reporter, module, datamodule)
    if reporter.probe is None:
        return outcome
    results = reporter.probe.results
    return dataclasses.replace(
        outcome,
        probes=[(r.run_length, r.metrics) for r in results],
        probe_steps=sum(r.length for r in results),
    )


def _ending(
    trainer: pl.Trainer,
    trace: StepTrace,
    reporter: PruningCallback,
    module: pl.LightningModule,
    datamodule: pl.LightningDataModule,
) -> Outcome:
    """How a trial that trained to its end (or was stopped by a guard or the pruner) ended."""
    steps, world = trainer.global_step, trainer.world_size
    if trace.diverged:
        return Outcome(
            "PRUNED", reporter.last_value, stop_reason(trace.diverged, steps), steps, world_size=world
        )
    if reporter.pruned_at is not None:
        reason = f"pruned at step {reporter.pruned_at} by the pruner"
        return Outcome("PRUNED", reporter.last_value, reason, steps, world_size=world)
    value = reporter.last_value
    if value is None or not math.isfinite(value):
        return Outcome("FAIL", value, "no finite validation value", steps, world_size=world)
    datamodule.setup("test")
    try:
        results = trainer.test(module, dataloaders=datamodule.test_dataloader(), verbose=False)
    except UserError:
        raise
    except Exception as exc:
        return _failed(exc, value, steps)
    metrics = {k: float(v) for k, v in (results[0] if results else {}).items()}
    return Outcome("COMPLETE", value, None, steps, metrics, world_size=world)


def losses_since_start(trace: StepTrace) -> list[float]:
    """The first steps' training loss, then each evaluation interval's mean (the plateau rule's trend)."""
    start = trace.guard.reference if trace.guard is not None else None
    return ([] if start is None else [start]) + trace.interval_losses


def make_probe(
    cfg: DictConfig, datamodule: pl.LightningDataModule, *, warmup_steps: int
) -> CooldownProbe | None:
    """The trial's cooldown probe (``probe`` group), or None when probes are off."""
    settings = probe_settings(cfg)
    if settings is None:
        return None
    clip = cfg.trainer.get("gradient_clip_val")
    return CooldownProbe(
        settings,
        floor_ratio=float(cfg.schedule.get("min_lr_ratio") or 0.0),
        total_steps=int(cfg.trainer.max_steps),
        train_batches=datamodule.train_dataloader,
        every=int(cfg.trainer.val_check_interval),
        warmup_steps=warmup_steps,
        seed=int(cfg.seed),
        clip=float(clip) if clip else None,
    )


def _failed(exc: Exception, value: float | None, steps: int) -> Outcome:
    """A trial that the model's code (or the device) failed: the reason and the traceback."""
    reason = f"{type(exc).__name__}: {exc}"
    if isinstance(exc, torch.cuda.OutOfMemoryError):
        if torch.cuda.is_available():
            torch.cuda.empty_cache()  # the next trial starts with the memory this one held
        reason = f"out of GPU memory; lower data.batch_size or the model size ({reason})"
    return Outcome("FAIL", value, reason, steps, error=traceback.format_exc())
