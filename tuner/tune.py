"""The study loop: ask Optuna for a trial, train it, tell Optuna, record it in MLflow."""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
import torch
from omegaconf import DictConfig
from rich.table import Table

from tuner.arms import arm_names, comparison_table, run_arms
from tuner.breakdown import choice_tables, log_choice_bests
from tuner.build import build_datamodule, build_model, plain
from tuner.config import check_trial
from tuner.errors import StudyStopped, UserError
from tuner.lr_plots import planned_lrs
from tuner.objective import Outcome, run_trial
from tuner.preflight import check_population, check_services
from tuner.progress import StudyProgress
from tuner.resilience import StorageGuard, failure_summary
from tuner.secrets import masked_yaml
from tuner.space import ParamSpec, apply, suggest
from tuner.study import best_trials, count_finished, count_started, mask_password, open_study
from tuner.tracking import Tracker, TrialRun, local_uri

optuna.logging.set_verbosity(optuna.logging.WARNING)
_STATES = {
    "COMPLETE": optuna.trial.TrialState.COMPLETE,
    "PRUNED": optuna.trial.TrialState.PRUNED,
    "FAIL": optuna.trial.TrialState.FAIL,
}


@dataclass
class StudyResult:
    """What a finished ``tune`` run hands back."""

    study: optuna.Study
    tracking_uri: str
    parent_run_id: str
    stopped_because: str | None = None
    report: Path | None = None
    #: Why faults stopped the study (trial failures in a row), for the person to act on.
    fault: str | None = None


def tracking_uri(cfg: DictConfig) -> str:
    """The MLflow URI: the configured one, or the SQLite store under ``paths.root``."""
    return str(cfg.tracking.uri) if cfg.tracking.uri else local_uri(Path(str(cfg.paths.root)))


def _flat(cfg: DictConfig) -> dict[str, Any]:
    """The fixed config as flat ``group.key`` params for the parent run."""
    out: dict[str, Any] = {}

    def walk(node: Any, prefix: str) -> None:
        if isinstance(node, dict):
            for k, v in node.items():
                walk(v, f"{prefix}.{k}" if prefix else str(k))
        else:
            out[prefix] = node

    container = plain(cfg)
    for group in ("data", "model", "optimizer", "schedule", "trainer", "sampler", "pruner", "study"):
        walk(container[group], group)
    out["seed"] = cfg.seed
    return out


def tune(cfg: DictConfig, specs: list[ParamSpec], *, progress: StudyProgress) -> StudyResult:
    """Runs the study to its total (``study.n_trials``), resuming it if it exists."""
    if cfg.trainer.num_threads:
        torch.set_num_threads(int(cfg.trainer.num_threads))
    name = str(cfg.study.name)
    check_services(cfg)
    datamodule = build_datamodule(cfg)
    # A model that cannot be built, or too large a population, fails before any study exists.
    check_population(cfg, build_model(cfg, datamodule))
    size, step_population = 1, None
    if cfg.study.get("population", 1) != 1:
        # K trials in one fit (study.population); that module imports this one.
        from tuner.population import population_size, population_step

        size, step_population = population_size(cfg, specs, datamodule), population_step
    study = open_study(cfg, specs, name=name)
    was_new = len(study.get_trials(deepcopy=False)) == 0
    uri = tracking_uri(cfg)
    root = Path(str(cfg.paths.root))
    tracker = Tracker(
        uri,
        experiment=name,
        artifact_root=root / "artifacts",
        spool_dir=root / "spool",
        max_wait=float(cfg.tracking.get("retry_max_wait", 30)),
    )
    guard = StorageGuard.from_config(cfg)
    flush = float(cfg.tracking.get("flush_timeout", 60))
    parent = tracker.parent_run(name, params=_flat(cfg))
    total = int(cfg.study.n_trials)
    progress.start(
        study=name,
        total=total,
        done=count_finished(study),
        storage=mask_password(str(cfg.storage.get("url") or cfg.storage.get("path") or "memory")),
    )
    started = time.monotonic()
    failures, stopped, fault, told = 0, None, None, 0
    limit_key = (
        "study.stop_on_failure=true"
        if cfg.study.get("stop_on_failure")
        else f"study.max_consecutive_failures={cfg.study.max_consecutive_failures}"
    )
    limit = 1 if cfg.study.get("stop_on_failure") else int(cfg.study.max_consecutive_failures)
    try:
        while True:
            if guard("counting trials", lambda: count_started(study)) >= total:
                break
            if cfg.study.timeout and time.monotonic() - started > float(cfg.study.timeout):
                stopped = f"study.timeout={cfg.study.timeout} s reached"
                break
            left = total - count_started(study)
            if step_population is not None and size > 1 and left > 1:
                outcomes = step_population(
                    cfg, specs, study, datamodule, tracker, parent, progress, size=min(size, left)
                )
            else:
                outcome = _one_trial(cfg, specs, study, datamodule, tracker, parent, progress, guard)
                outcomes = [] if outcome is None else [outcome]
            if not outcomes:
                break
            told += len(outcomes)
            for outcome in outcomes:
                failures = failures + 1 if outcome.state == "FAIL" else 0
            if failures >= limit:
                stopped = f"{failures} trials failed in a row ({limit_key}); last: {outcomes[-1].reason}"
                fault = failure_summary(study, failures=failures, limit_key=limit_key)
                break
        run_arms(cfg, specs, study, datamodule, tracker, parent, progress)
    except UserError:
        if was_new and told == 0:
            _undo(study, tracker, parent)
        else:
            _warn_unlogged(tracker.close(timeout=flush))
        raise
    except StudyStopped as exc:
        tracker.set_tags(parent, {"tuner.stopped": str(exc)})
        tracker.end_run(parent, "FAILED")
        _warn_unlogged(tracker.close(timeout=flush))
        raise
    except KeyboardInterrupt:
        tracker.set_tags(parent, {"tuner.interrupted": "true"})
        _warn_unlogged(tracker.close(timeout=min(flush, 5.0)))
        raise
    log_choice_bests(tracker, parent, study, specs)
    report = _finish(cfg, specs, study, tracker, parent, stopped, flush=flush)
    return StudyResult(study, uri, parent, stopped, report, fault)


def study_tables(cfg: DictConfig, specs: list[ParamSpec], study: optuna.Study) -> list[Table]:
    """Tables printed after the best trials: the best per family (per categorical
    parameter), and the best tuned trial against the LR-free arms."""
    tables = choice_tables(study, specs, metric=str(cfg.study.metric))
    if arm_names(cfg):
        tables.append(comparison_table(cfg, specs, study))
    return tables


def _one_trial(
    cfg: DictConfig,
    specs: list[ParamSpec],
    study: optuna.Study,
    datamodule: Any,
    tracker: Tracker,
    parent: str,
    progress: StudyProgress,
    guard: StorageGuard,
) -> Outcome | None:
    trial = guard("asking for a trial", study.ask)
    if is_surplus(cfg, study, trial):
        return None
    trial_cfg, run = start_trial(cfg, specs, trial, tracker, parent, progress, guard=guard)
    try:
        outcome = run_trial(trial_cfg, datamodule, trial=trial, run=run)
    except KeyboardInterrupt:
        study.tell(trial, state=optuna.trial.TrialState.FAIL)
        run.end("KILLED", value=None, reason="interrupted (Ctrl-C)")
        raise
    except UserError:
        study.tell(trial, state=optuna.trial.TrialState.FAIL)
        run.end("FAIL", value=None, reason="configuration error")
        raise
    record_outcome(study, trial, trial_cfg, run, outcome, progress, guard=guard)
    return outcome


def is_surplus(cfg: DictConfig, study: optuna.Study, trial: optuna.Trial) -> bool:
    """True (and the trial told FAIL) if another worker already started the study's last trial."""
    if count_started(study) > int(cfg.study.n_trials) and _later_than_others(study, trial):
        study._storage.set_trial_system_attr(trial._trial_id, "tuner.surplus", True)
        study.tell(trial, state=optuna.trial.TrialState.FAIL)
        return True
    return False


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
    """Tells Optuna how a trial ended and ends its MLflow run with the same state."""
    guard = guard or StorageGuard()
    run.log_lr_curve(
        planned=planned_lrs(trial_cfg),
        title=f"trial {trial.number}: {trial_cfg.optimizer.name}, {trial_cfg.schedule.name} schedule",
    )
    if outcome.error:
        run.log_text(outcome.error, "traceback.txt")
    try:
        guard("saving a trial's result", lambda: _save(study, trial, outcome, run.mlflow_id))
    except StudyStopped:
        run.end("FAIL", value=outcome.value, reason="not saved: the study storage did not answer")
        raise
    run.end(
        outcome.state,
        value=outcome.value,
        reason=outcome.reason,
        extra={"steps": outcome.steps, **outcome.metrics},
    )
    guard("showing progress", lambda: progress.trial_finished(trial.number, outcome, study))


def _save(study: optuna.Study, trial: optuna.Trial, outcome: Outcome, run_id: str | None) -> None:
    """Stores a trial's result; safe to repeat after a storage error."""
    if study._storage.get_trial(trial._trial_id).state.is_finished():
        return  # an earlier attempt was stored, only its answer was lost
    attrs: dict[str, Any] = {"steps": outcome.steps, **outcome.metrics}
    if outcome.reason:
        attrs["reason"] = outcome.reason
    if run_id is not None:
        attrs["mlflow_run_id"] = run_id
    for key, value in attrs.items():
        trial.set_user_attr(key, value)
    if outcome.state == "COMPLETE":
        study.tell(trial, outcome.value)
    else:
        study.tell(trial, state=_STATES[outcome.state])


def _later_than_others(study: optuna.Study, trial: optuna.Trial) -> bool:
    running = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))
    return trial.number == max(t.number for t in running)


def _undo(study: optuna.Study, tracker: Tracker, parent: str) -> None:
    """Removes a study that a configuration error stopped before any trial finished."""
    tracker.discard(parent)
    optuna.delete_study(study_name=study.study_name, storage=study._storage)


def _warn_unlogged(problems: list[str]) -> None:
    for line in problems:
        print(f"warning: not logged in MLflow: {line}", file=sys.stderr)


def _finish(
    cfg: DictConfig,
    specs: list[ParamSpec],
    study: optuna.Study,
    tracker: Tracker,
    parent: str,
    stopped: str | None,
    *,
    flush: float,
) -> Path | None:
    """Writes the summary to the parent run, then the plots and report; returns the report."""
    best = best_trials(study, top=1)
    summary: dict[str, Any] = {"n_finished": count_finished(study)}
    best_yaml = None
    if best:
        summary["best_value"] = float(best[0].value or 0.0)
        summary["best_trial"] = best[0].number
        summary["best_params"] = best[0].params
        for key, value in best[0].params.items():
            summary[f"best.{key}"] = value
        for key in ("test_acc", "test_loss"):
            if key in best[0].user_attrs:
                summary[f"best_{key}"] = float(best[0].user_attrs[key])
        best_yaml = masked_yaml(apply(cfg, specs, best[0].params))
    if stopped:
        summary["stopped"] = stopped
    tracker.finish_study(parent, summary=summary, best_config_yaml=best_yaml)
    _warn_unlogged(tracker.close(timeout=flush))
    if not (cfg.get("report") and cfg.report.enabled):
        return None
    from tuner.report.build import write_report

    try:  # the trials are safe in the stores; a plot that fails must not hide that
        return write_report(cfg, study, client=tracker.client, parent_run_id=parent).markdown
    except Exception as exc:
        print(
            f"warning: the report could not be written ({type(exc).__name__}: {exc}); "
            f"retry with: python -m tuner mode=report study.name={study.study_name}"
        )
        return None
