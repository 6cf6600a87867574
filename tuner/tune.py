"""The study loop: ask Optuna for a trial, train it, tell Optuna, record it in MLflow."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
import torch
from omegaconf import DictConfig, OmegaConf
from rich.table import Table

from tuner.arms import arm_names, comparison_table, run_arms
from tuner.breakdown import choice_tables, log_choice_bests
from tuner.build import build_datamodule, build_model, plain
from tuner.config import check_trial
from tuner.errors import UserError
from tuner.lr_plots import planned_lrs
from tuner.objective import Outcome, run_trial
from tuner.progress import StudyProgress
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
    datamodule = build_datamodule(cfg)
    build_model(cfg, datamodule)  # a model that cannot be built fails before any study exists
    size, step_population = 1, None
    if cfg.study.get("population", 1) != 1:
        # K trials in one fit (study.population); that module imports this one.
        from tuner.population import population_size, population_step

        size, step_population = population_size(cfg, specs, datamodule), population_step
    study = open_study(cfg, specs, name=name)
    was_new = len(study.get_trials(deepcopy=False)) == 0
    uri = tracking_uri(cfg)
    tracker = Tracker(uri, experiment=name, artifact_root=Path(str(cfg.paths.root)) / "artifacts")
    parent = tracker.parent_run(name, params=_flat(cfg))
    total = int(cfg.study.n_trials)
    progress.start(
        study=name,
        total=total,
        done=count_finished(study),
        storage=mask_password(str(cfg.storage.get("url") or cfg.storage.get("path") or "memory")),
    )
    started = time.monotonic()
    failures, stopped = 0, None
    try:
        while True:
            if count_started(study) >= total:
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
                outcome = _one_trial(cfg, specs, study, datamodule, tracker, parent, progress)
                outcomes = [] if outcome is None else [outcome]
            if not outcomes:
                break
            for outcome in outcomes:
                failures = failures + 1 if outcome.state == "FAIL" else 0
            if failures >= int(cfg.study.max_consecutive_failures):
                stopped = f"{failures} trials failed in a row (study.max_consecutive_failures); last: {outcomes[-1].reason}"
                break
        run_arms(cfg, specs, study, datamodule, tracker, parent, progress)
    except UserError:
        if was_new and count_finished(study) == 0:
            _undo(study, tracker, parent)
        else:
            tracker.close()
        raise
    except KeyboardInterrupt:
        tracker.client.set_tag(parent, "tuner.interrupted", "true")
        tracker.close()
        raise
    log_choice_bests(tracker, parent, study, specs)
    report = _finish(cfg, specs, study, tracker, parent, stopped)
    return StudyResult(study, uri, parent, stopped, report)


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
) -> Outcome | None:
    trial = study.ask()
    if is_surplus(cfg, study, trial):
        return None
    trial_cfg, run = start_trial(cfg, specs, trial, tracker, parent, progress)
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
    record_outcome(study, trial, trial_cfg, run, outcome, progress)
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
) -> tuple[DictConfig, TrialRun]:
    """Samples a trial's config, checks it, and opens its nested MLflow run."""
    values = suggest(trial, specs, cfg)
    trial_cfg = apply(cfg, specs, values)
    check_trial(trial_cfg)
    run = tracker.start_trial(
        parent,
        study_name=str(cfg.study.name),
        number=trial.number,
        params=values,
        config_yaml=OmegaConf.to_yaml(trial_cfg),
    )
    trial.set_user_attr("mlflow_run_id", run.run_id)
    progress.trial_started(trial.number, values)
    return trial_cfg, run


def record_outcome(
    study: optuna.Study,
    trial: optuna.Trial,
    trial_cfg: DictConfig,
    run: TrialRun,
    outcome: Outcome,
    progress: StudyProgress,
) -> None:
    """Tells Optuna how a trial ended and ends its MLflow run with the same state."""
    run.log_lr_curve(
        planned=planned_lrs(trial_cfg),
        title=f"trial {trial.number}: {trial_cfg.optimizer.name}, {trial_cfg.schedule.name} schedule",
    )
    trial.set_user_attr("steps", outcome.steps)
    for key, value in outcome.metrics.items():
        trial.set_user_attr(key, value)
    if outcome.reason:
        trial.set_user_attr("reason", outcome.reason)
    if outcome.error:
        run.log_text(outcome.error, "traceback.txt")
    if outcome.state == "COMPLETE":
        study.tell(trial, outcome.value)
    else:
        study.tell(trial, state=_STATES[outcome.state])
    run.end(
        outcome.state,
        value=outcome.value,
        reason=outcome.reason,
        extra={"steps": outcome.steps, **outcome.metrics},
    )
    progress.trial_finished(trial.number, outcome, study)


def _later_than_others(study: optuna.Study, trial: optuna.Trial) -> bool:
    running = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))
    return trial.number == max(t.number for t in running)


def _undo(study: optuna.Study, tracker: Tracker, parent: str) -> None:
    """Removes a study that a configuration error stopped before any trial finished."""
    tracker.close()
    tracker.client.delete_run(parent)
    for run in tracker.client.search_runs(
        [tracker.experiment_id], filter_string=f"tags.`mlflow.parentRunId` = '{parent}'"
    ):
        tracker.client.delete_run(run.info.run_id)
    if not tracker.client.search_runs([tracker.experiment_id]):
        tracker.client.delete_experiment(tracker.experiment_id)
    optuna.delete_study(study_name=study.study_name, storage=study._storage)


def _finish(
    cfg: DictConfig,
    specs: list[ParamSpec],
    study: optuna.Study,
    tracker: Tracker,
    parent: str,
    stopped: str | None,
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
        best_yaml = OmegaConf.to_yaml(apply(cfg, specs, best[0].params))
    if stopped:
        summary["stopped"] = stopped
    tracker.finish_study(parent, summary=summary, best_config_yaml=best_yaml)
    errors = tracker.close()
    if errors:
        print(f"warning: {len(errors)} MLflow writes failed; first: {errors[0]}")
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
