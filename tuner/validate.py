"""Checking a composed config before anything is created: every error names its key."""

from __future__ import annotations

from omegaconf import DictConfig, OmegaConf

from tuner.devices import check_trainer
from tuner.errors import UserError
from tuner.finder.settings import check_finder
from tuner.preflight import check_data, check_targets
from tuner.report.settings import validate_report
from tuner.search.check import check_space
from tuner.search.space import ParamSpec, parse_space
from tuner.search.trial_check import check_trial
from tuner.search.widen import check_widen
from tuner.storage.storages import STORAGES
from tuner.study.arms import check_arms
from tuner.study.name import check_study_name
from tuner.study.optuna_study import PRUNERS, SAMPLERS
from tuner.study.screen import check_screen
from tuner.study.ties import check_tie_break
from tuner.training.guards import check_guards
from tuner.training.plateau import check_plateau
from tuner.training.probe import check_probe

MODES = ("tune", "find", "schedule", "report")


def _positive(cfg: DictConfig, key: str, *, allow_none: bool = False, kind: type = int) -> None:
    value = OmegaConf.select(cfg, key)
    if value is None and allow_none:
        return
    if (
        not isinstance(value, (int, float))
        or isinstance(value, bool)
        or value <= 0
        or (kind is int and not float(value).is_integer())
    ):
        noun = "a whole number" if kind is int else "a number"
        raise UserError(key, value, f"give {noun} > 0" + (" (or null for no limit)" if allow_none else ""))


def _check_counts(cfg: DictConfig) -> None:
    """The study's and the trainer's counts and limits."""
    _positive(cfg, "study.n_trials")
    _positive(cfg, "study.timeout", allow_none=True, kind=float)
    _positive(cfg, "trainer.max_steps")
    _positive(cfg, "trainer.val_check_interval")
    _positive(cfg, "tracking.log_every_n_steps")
    _positive(cfg, "study.max_consecutive_failures")
    if cfg.mode == "tune" and int(cfg.trainer.val_check_interval) > int(cfg.trainer.max_steps):
        raise UserError(
            "trainer.val_check_interval",
            cfg.trainer.val_check_interval,
            f"validate at least once: give at most trainer.max_steps ({cfg.trainer.max_steps})",
        )
    clip = cfg.trainer.get("gradient_clip_val")
    # A negative norm reverses every gradient: each trial then "diverges" whatever its LR.
    if clip is not None and (isinstance(clip, bool) or not isinstance(clip, (int, float)) or not clip >= 0):
        raise UserError("trainer.gradient_clip_val", clip, "give a number >= 0 (0 or null: no clipping)")


def validate(cfg: DictConfig) -> list[ParamSpec]:
    """Validates a composed config; returns the parsed search space.

    Raises:
        UserError: naming the first bad key, its value and the fix.
    """
    if cfg.mode not in MODES:
        raise UserError("mode", cfg.mode, f"use one of {', '.join(MODES)}")
    _check_counts(cfg)
    if cfg.mode in ("tune", "find"):
        check_trainer(cfg)
    sidecar = cfg.tracking.get("sidecar", "auto")
    if sidecar not in (True, False, "auto"):
        raise UserError("tracking.sidecar", sidecar, "give auto, true or false")
    if not isinstance(cfg.study.get("stop_on_failure", False), bool):
        raise UserError("study.stop_on_failure", cfg.study.stop_on_failure, "give true or false")
    population = cfg.study.get("population", 1)
    if population != "auto" and (
        isinstance(population, bool) or not isinstance(population, int) or population < 1
    ):
        raise UserError(
            "study.population", population, "give a whole number >= 1 (1: one trial at a time) or auto"
        )
    check_study_name(cfg.study.name)
    if cfg.study.direction not in ("minimize", "maximize"):
        raise UserError("study.direction", cfg.study.direction, "use minimize or maximize")
    if not cfg.study.metric or not str(cfg.study.metric).startswith("val"):
        raise UserError(
            "study.metric", cfg.study.metric, "select on a validation metric such as val_acc or val_loss"
        )
    if cfg.sampler.name not in SAMPLERS:
        raise UserError("sampler.name", cfg.sampler.name, f"use one of {', '.join(SAMPLERS)}")
    if cfg.pruner.name not in PRUNERS:
        raise UserError("pruner.name", cfg.pruner.name, f"use one of {', '.join(PRUNERS)}")
    if cfg.storage.backend not in STORAGES:
        raise UserError("storage.backend", cfg.storage.backend, f"use one of {', '.join(STORAGES)}")
    specs = parse_space(cfg.search.get("params") or {}, cfg)
    check_trial(cfg)
    check_guards(cfg)
    check_probe(cfg)
    check_plateau(cfg)
    check_targets(cfg)
    check_data(cfg)
    validate_report(cfg)
    check_space(cfg, specs)
    check_arms(cfg, check_trial)
    check_finder(cfg, specs)
    check_widen(cfg)
    check_screen(cfg)
    check_tie_break(cfg)
    return specs
