"""Creating or reopening the Optuna study (its storage from :mod:`tuner.storage.storages`):
sampler, pruner, totals.

``study.n_trials`` is a total: running the same command again reopens the study by
name and runs only the trials still missing.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from typing import Any

import optuna
from omegaconf import DictConfig, OmegaConf

from tuner.errors import UserError
from tuner.search.space import ParamSpec, grid
from tuner.storage.coordination import SURPLUS_ATTR, retried_numbers
from tuner.storage.storages import build_storage
from tuner.study.screen import SCREEN_KEYS, queue_screening

FINGERPRINT_ATTR = "tuner.fingerprint"
SAMPLERS = ("tpe", "random", "gp", "cmaes", "qmc", "grid")
PRUNERS = ("median", "percentile", "successive_halving", "hyperband", "patient", "wilcoxon", "none")
_FINISHED = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED, optuna.trial.TrialState.FAIL)


def _kwargs(node: DictConfig, *drop: str) -> dict[str, Any]:
    values = OmegaConf.to_container(node, resolve=True)
    assert isinstance(values, dict)
    return {str(k): v for k, v in values.items() if k not in ("name", *drop) and v is not None}


class AskTellGrid(optuna.samplers.GridSampler):
    """Optuna's grid sampler for the ask-and-tell loop of :func:`tuner.study.loop.tune`.

    Optuna's own calls ``Study.stop()`` once the grid is done, which raises outside
    ``Study.optimize``; the study loop asks :meth:`is_exhausted` before each trial instead.
    """

    def after_trial(self, study: Any, trial: Any, state: Any, values: Any) -> None:
        return None


def build_sampler(cfg: DictConfig, specs: Sequence[ParamSpec]) -> optuna.samplers.BaseSampler:
    """The sampler named by ``sampler.name`` with the rest of ``sampler`` as arguments."""
    name, kwargs = str(cfg.sampler.name), _kwargs(cfg.sampler, "grid_points")
    try:
        if name == "tpe":
            from tuner.search.widen import WideningTPE  # it reads the study's widened bounds

            return WideningTPE(**kwargs)
        if name == "random":
            return optuna.samplers.RandomSampler(**kwargs)
        if name == "gp":
            from tuner.search.widen import WideningGP

            return WideningGP(**kwargs)
        if name == "cmaes":
            return optuna.samplers.CmaEsSampler(**kwargs)
        if name == "qmc":
            return optuna.samplers.QMCSampler(**kwargs)
        if name == "grid":
            points = int(cfg.sampler.get("grid_points") or 8)
            return AskTellGrid(grid(specs, points=points), **kwargs)
    except TypeError as exc:
        raise UserError(f"sampler.{name}", kwargs, f"argument not accepted ({exc})") from None
    raise UserError("sampler.name", name, f"use one of {', '.join(SAMPLERS)}")


def build_pruner(cfg: DictConfig) -> optuna.pruners.BasePruner:
    """The pruner named by ``pruner.name``; ``patient`` wraps the median pruner."""
    name, kwargs = str(cfg.pruner.name), _kwargs(cfg.pruner, "patience", "min_delta", "plateau_share", "noise_margin")
    try:
        if name == "median":
            return optuna.pruners.MedianPruner(**kwargs)
        if name == "percentile":
            return optuna.pruners.PercentilePruner(**kwargs)
        if name == "successive_halving":
            return optuna.pruners.SuccessiveHalvingPruner(**kwargs)
        if name == "hyperband":
            return optuna.pruners.HyperbandPruner(**kwargs)
        if name == "wilcoxon":
            return optuna.pruners.WilcoxonPruner(**kwargs)
        if name == "patient":
            return optuna.pruners.PatientPruner(
                optuna.pruners.MedianPruner(**kwargs),
                patience=int(cfg.pruner.get("patience", 2)),
                min_delta=float(cfg.pruner.get("min_delta", 0.0)),
            )
        if name == "none":
            return optuna.pruners.NopPruner()
    except TypeError as exc:
        raise UserError(f"pruner.{name}", kwargs, f"argument not accepted ({exc})") from None
    raise UserError("pruner.name", name, f"use one of {', '.join(PRUNERS)}")


def fingerprint(cfg: DictConfig) -> str:
    """A hash of what makes trials comparable: task, model, search space, metric.

    The study's total, seeds of sampling and output paths may change between runs of
    one study; the model, data, fixed hyper-parameters and space may not.
    """
    keep: dict[str, Any] = {k: cfg[k] for k in ("data", "model", "search", "trainer") if k in cfg}
    if "search" in keep:
        # Screening acts only when a study is created: its keys never make trials incomparable
        # (and left out, a study made before they existed hashes as it did).
        search = OmegaConf.to_container(cfg.search, resolve=True)
        assert isinstance(search, dict)
        keep["search"] = {k: v for k, v in search.items() if k not in SCREEN_KEYS}
    keep["metric"] = cfg.study.metric
    keep["direction"] = cfg.study.direction
    # The fixed parts of optimizer and schedule matter, except what the space samples.
    keep["optimizer"], keep["schedule"] = cfg.optimizer, cfg.schedule
    text = json.dumps(
        OmegaConf.to_container(OmegaConf.create(keep), resolve=True), sort_keys=True, default=str
    )
    return hashlib.sha1(text.encode()).hexdigest()[:16]


def open_study(cfg: DictConfig, specs: Sequence[ParamSpec], *, name: str) -> optuna.Study:
    """Creates the study, or reopens it when a study of that name exists.

    Raises:
        UserError: the name exists with another model, data or search space.
    """
    storage = build_storage(cfg)
    sampler, pruner = build_sampler(cfg, specs), build_pruner(cfg)
    resume = bool(cfg.study.get("resume", True))
    if (
        storage is not None
        and not resume
        and name in {s.study_name for s in optuna.get_all_study_summaries(storage)}
    ):
        optuna.delete_study(study_name=name, storage=storage)
    study = optuna.create_study(
        study_name=name,
        storage=storage,
        sampler=sampler,
        pruner=pruner,
        direction="maximize" if cfg.study.direction == "maximize" else "minimize",
        load_if_exists=True,
    )
    mark = fingerprint(cfg)
    previous = study.user_attrs.get(FINGERPRINT_ATTR)
    if previous is None:
        study.set_user_attr(FINGERPRINT_ATTR, mark)
        queue_screening(cfg, specs, study)  # a new study: its short first trials (tuner.study.screen)
    elif previous != mark:
        raise UserError(
            "study.name",
            name,
            "a study of this name exists with another model, data or search space; "
            f"pick a new study.name (e.g. study.name={name}-2) or pass study.resume=false to replace it",
        )
    return study


def count_finished(study: optuna.Study) -> int:
    """Trials that count toward ``study.n_trials``: ended, and not since retried."""
    trials = study.get_trials(deepcopy=False)
    retried = retried_numbers(trials)
    return sum(
        1
        for t in trials
        if t.state in _FINISHED and t.number not in retried and not t.system_attrs.get(SURPLUS_ATTR)
    )


def count_started(study: optuna.Study) -> int:
    """Finished trials plus those running now (for workers sharing one total)."""
    running = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))
    return count_finished(study) + len(running)


def best_trials(study: optuna.Study, *, top: int) -> list[optuna.trial.FrozenTrial]:
    """The ``top`` complete trials, best first."""
    complete = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    reverse = study.direction == optuna.study.StudyDirection.MAXIMIZE
    return sorted(complete, key=lambda t: float(t.value or 0.0), reverse=reverse)[:top]
