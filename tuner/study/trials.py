"""A trial's bookkeeping in the study: claiming its slot, sampling and opening its run, and
telling Optuna and MLflow how it ended.

Below the study loop (``tuner.study.loop``) and the population step (``tuner.study.population``), which
both run trials through it.
"""

from __future__ import annotations

from typing import Any

import optuna
from omegaconf import DictConfig
from optuna.exceptions import UpdateFinishedTrialError

from tuner._testpoint import point
from tuner.compat import storage_of, trial_storage_id
from tuner.errors import StudyStopped
from tuner.schedule.plot import lr_plan
from tuner.search.space import ParamSpec, apply, suggest
from tuner.search.trial_check import check_trial
from tuner.secrets import masked_yaml
from tuner.storage.coordination import TrialLost, claim_slot, give_up_surplus
from tuner.storage.resilience import StorageGuard
from tuner.study.progress import StudyProgress
from tuner.study.screen import SCREEN_VALUE_ATTR, is_screening, promote_when_done, screened, shorten
from tuner.study.ties import told_value
from tuner.tracking.tracker import Tracker, TrialRun
from tuner.training.trial import Outcome

_STATES = {
    "COMPLETE": optuna.trial.TrialState.COMPLETE,
    "PRUNED": optuna.trial.TrialState.PRUNED,
    "FAIL": optuna.trial.TrialState.FAIL,
}


def is_surplus(cfg: DictConfig, study: optuna.Study, trial: optuna.Trial) -> bool:
    """True (and the trial told FAIL) if the study's other trials already fill its total."""
    if claim_slot(study, trial.number, int(cfg.study.n_trials)):
        return False
    give_up_surplus(study, trial)
    return True


def start_trial(
    cfg: DictConfig,
    specs: list[ParamSpec],
    trial: optuna.Trial,
    tracker: Tracker,
    parent: str,
    progress: StudyProgress,
    *,
    guard: StorageGuard | None = None,
) -> tuple[DictConfig, TrialRun]:
    """Samples a trial's config, checks it, and opens its nested MLflow run."""
    guard = guard or StorageGuard()
    values = guard("sampling a trial", lambda: suggest(trial, specs, cfg))
    trial_cfg = apply(cfg, specs, values)
    check_trial(trial_cfg)
    if is_screening(trial):
        trial_cfg = shorten(trial_cfg)  # a short run, its schedule compressed (tuner.study.screen)
    run = tracker.start_trial(
        parent,
        study_name=str(cfg.study.name),
        number=trial.number,
        params=values,
        config_yaml=masked_yaml(trial_cfg),
    )
    run_id = run.mlflow_id  # None while MLflow is away: saved with the result if known by then
    if run_id is not None:
        guard("saving the trial's run id", lambda: trial.set_user_attr("mlflow_run_id", run_id))
    progress.trial_started(trial.number, values)
    return trial_cfg, run


def record_outcome(
    study: optuna.Study,
    trial: optuna.Trial,
    trial_cfg: DictConfig,
    run: TrialRun,
    outcome: Outcome,
    progress: StudyProgress,
    *,
    guard: StorageGuard | None = None,
) -> None:
    """Tells Optuna how a trial ended and ends its MLflow run with the same state.

    Raises:
        TrialLost: another worker failed the trial meanwhile (see ``tuner.storage.coordination``).
    """
    guard = guard or StorageGuard()
    if is_screening(trial):
        outcome = _screened(trial, trial_cfg, run, outcome, guard)
    # Every write of the trial but its end is spooled before the tell (see tuner.tracking.spool).
    run.flush_steps()
    run.log_lr_curve(
        plan=lr_plan(trial_cfg),
        title=f"trial {trial.number}: {trial_cfg.optimizer.name}, {trial_cfg.schedule.name} schedule",
    )
    if outcome.error:
        run.log_text(outcome.error, "traceback.txt")
    point("before-tell")
    try:
        guard(
            "saving a trial's result",
            lambda: save(
                study, trial, outcome, run.mlflow_id, told_value(trial_cfg, outcome.value, run.last_metrics)
            ),
        )
    except StudyStopped:
        run.end("FAIL", value=outcome.value, reason="not saved: the study storage did not answer")
        raise
    # A kill from here to the run's end leaves it RUNNING: the next run ends it as Optuna has
    # it (tuner.study.session.mend_trial_runs).
    point("after-tell")
    run.end(
        outcome.state,
        value=outcome.value,
        reason=outcome.reason,
        extra={"steps": outcome.steps, **outcome.metrics},
    )
    guard("showing progress", lambda: progress.trial_finished(trial.number, outcome, study))
    if is_screening(trial):
        promoted = guard("promoting the best screened trials", lambda: promote_when_done(trial_cfg, study))
        if promoted:
            print(f"screening done: trial(s) {', '.join(map(str, promoted))} queued again in full (search.screen)")


def _screened(
    trial: optuna.Trial, trial_cfg: DictConfig, run: TrialRun, outcome: Outcome, guard: StorageGuard
) -> Outcome:
    """A screening trial's outcome: ranked by its tie-broken value, told as PRUNED."""
    if outcome.state != "FAIL" and outcome.value is not None:
        ranked = told_value(trial_cfg, outcome.value, run.last_metrics)[0]
        guard("saving the screening value", lambda: trial.set_user_attr(SCREEN_VALUE_ATTR, ranked))
    return screened(outcome)


def save(
    study: optuna.Study,
    trial: optuna.Trial,
    outcome: Outcome,
    run_id: str | None,
    told: tuple[float | None, dict[str, Any]],
) -> None:
    """Stores a trial's result; safe to repeat after a storage error.

    ``told``: the value for Optuna and the attributes keeping the measured one (``tuner.study.ties``).
    """
    stored = storage_of(study).get_trial(trial_storage_id(trial)).state
    if stored.is_finished():
        if stored == _STATES[outcome.state]:
            return  # an earlier attempt was stored, only its answer was lost
        raise TrialLost(trial.number)
    attrs: dict[str, Any] = {"steps": outcome.steps, **outcome.metrics}
    if outcome.probe_steps:
        attrs["probe_steps"] = outcome.probe_steps
    if outcome.world_size > 1:
        attrs["world_size"] = outcome.world_size
    if outcome.reason:
        attrs["reason"] = outcome.reason
    if run_id is not None:
        attrs["mlflow_run_id"] = run_id
    if outcome.state == "COMPLETE":
        attrs.update(told[1])
    try:
        for key, value in attrs.items():
            trial.set_user_attr(key, value)
        if outcome.state == "COMPLETE":
            study.tell(trial, told[0])
        else:
            study.tell(trial, state=_STATES[outcome.state])
    except (UpdateFinishedTrialError, ValueError):
        if not ended_elsewhere(study, trial):
            raise
        raise TrialLost(trial.number) from None


def fail_if_running(study: optuna.Study, trial: optuna.Trial, *, reason: str) -> bool:
    """Ends a trial as FAIL with a reason, unless it already ended; whether it did."""
    try:
        trial.set_user_attr("reason", reason)
        study.tell(trial, state=optuna.trial.TrialState.FAIL)
    except (UpdateFinishedTrialError, ValueError):
        if not ended_elsewhere(study, trial):
            raise
        return False
    return True


def ended_elsewhere(study: optuna.Study, trial: optuna.Trial) -> bool:
    """Whether another process ended this trial (it was declared lost)."""
    return storage_of(study).get_trial(trial_storage_id(trial)).state != optuna.trial.TrialState.RUNNING
