"""The study loop: ask Optuna for a trial, train it, tell Optuna, record it in MLflow."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
import torch
from omegaconf import DictConfig, OmegaConf
from optuna.exceptions import UpdateFinishedTrialError

from tuner import ddp, stopping
from tuner.build import build_datamodule, build_model, plain
from tuner.config import check_trial
from tuner.coordination import claim_slot, give_up_surplus, heartbeat, reap_stale, requeue
from tuner.errors import UserError
from tuner.objective import Outcome, run_trial
from tuner.progress import StudyProgress
from tuner.space import ParamSpec, apply, suggest
from tuner.study import (
    best_trials,
    build_sampler,
    config_yaml,
    count_finished,
    count_started,
    mask_password,
    open_study,
)
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
    for group in (
        "data",
        "model",
        "optimizer",
        "schedule",
        "trainer",
        "sampler",
        "pruner",
        "study",
        "storage",
    ):
        walk(container[group], group)
    out["seed"] = cfg.seed
    # The storage URL may carry a password; MLflow params are readable by everyone.
    for key in out:
        if key == "storage.url":
            out[key] = mask_password(str(out[key]))
        elif "password" in key.lower():
            out[key] = "***"
    return out


@dataclass
class Tracked:
    """A study opened together with its MLflow parent run."""

    study: optuna.Study
    tracker: Tracker
    parent: str
    datamodule: Any
    was_new: bool


def open_tracked(cfg: DictConfig, specs: list[ParamSpec]) -> Tracked:
    """Opens (or creates) the study and its MLflow parent run.

    The data and the model are built first, so a config that cannot train fails before
    anything is created. Launchers call this before starting workers, so that workers
    only ever reopen the study and the parent run.
    """
    name = str(cfg.study.name)
    datamodule = build_datamodule(cfg)
    build_model(cfg, datamodule)
    study = open_study(cfg, specs, name=name)
    was_new = len(study.get_trials(deepcopy=False)) == 0
    tracker = Tracker(
        tracking_uri(cfg), experiment=name, artifact_root=Path(str(cfg.paths.root)) / "artifacts"
    )
    parent = tracker.parent_run(name, params=_flat(cfg))
    return Tracked(study, tracker, parent, datamodule, was_new)


def storage_label(cfg: DictConfig) -> str:
    """Where the study lives, fit to print: a URL's password is masked."""
    return mask_password(str(cfg.storage.get("url") or cfg.storage.get("path") or "memory"))


def end_lost_run(tracker: Tracker, trial: optuna.trial.FrozenTrial, *, grace: object) -> None:
    """Ends the MLflow run of a trial whose worker died, so it does not stay RUNNING."""
    run_id = trial.user_attrs.get("mlflow_run_id")
    if run_id:
        TrialRun(tracker, str(run_id)).end(
            "KILLED", value=None, reason=f"worker lost: no heartbeat for {grace} s; trial re-queued"
        )


def tune(
    cfg: DictConfig,
    specs: list[ParamSpec],
    *,
    progress: StudyProgress,
    worker: dict[str, Any] | None = None,
    finish_study: bool = True,
) -> StudyResult:
    """Runs the study to its total (``study.n_trials``), resuming it if it exists.

    Several processes may run this loop on one shared study (``worker`` says who this
    one is): each asks for a trial when it is free, claims one of the slots left, and at
    the end waits while other workers hold the last trials, in case one of them dies
    and its trial comes back to the queue. A worker ends the MLflow parent run only if
    ``finish_study`` and the study is complete; the launcher does it otherwise.
    """
    if cfg.trainer.num_threads:
        torch.set_num_threads(int(cfg.trainer.num_threads))
    opened = open_tracked(cfg, specs)
    study, tracker, parent = opened.study, opened.tracker, opened.parent
    _reseed(cfg, specs, study, worker=worker is not None)
    total = int(cfg.study.n_trials)
    progress.start(
        study=study.study_name, total=total, done=count_finished(study), storage=storage_label(cfg)
    )
    started = time.monotonic()
    failures, stopped = 0, None
    poll = min(float(cfg.storage.get("heartbeat_interval") or 2), 2.0)
    grace = cfg.storage.get("grace_period")
    try:
        # A stop signal ends the study at the next safe point (see tuner.stopping).
        with stopping.graceful_stop():
            while True:
                if stopping.requested():
                    raise KeyboardInterrupt(stopping.requested())
                reap_stale(study, on_lost=lambda t: end_lost_run(tracker, t, grace=grace))
                if count_finished(study) >= total:
                    break
                if cfg.study.timeout and time.monotonic() - started > float(cfg.study.timeout):
                    stopped = f"study.timeout={cfg.study.timeout} s reached"
                    break
                if count_started(study) >= total:
                    # The last trials run elsewhere; wait in case one is lost and re-queued.
                    time.sleep(poll)
                    continue
                outcome = _one_trial(cfg, specs, study, opened.datamodule, tracker, parent, progress, worker)
                if outcome is None:
                    time.sleep(poll)  # another worker took the slot; look again
                    continue
                failures = failures + 1 if outcome.state == "FAIL" else 0
                if failures >= int(cfg.study.max_consecutive_failures):
                    stopped = f"{failures} trials failed in a row (study.max_consecutive_failures); last: {outcome.reason}"
                    break
    except UserError:
        if worker is not None or not undo_if_fruitless(opened):
            tracker.close()
        raise
    except KeyboardInterrupt:
        tracker.client.set_tag(parent, "tuner.interrupted", "true")
        if worker is None:
            tracker.client.set_terminated(parent, "KILLED")
        tracker.close()
        raise
    complete = count_finished(study) >= total and count_started(study) <= total
    report = None
    if worker is None or (finish_study and complete):
        report = finish(cfg, specs, study, tracker, parent, stopped)
    else:
        tracker.close()
    return StudyResult(study, tracker.uri, parent, stopped, report)


def _results(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    """Trials that trained to a result (a configuration error fails every trial alike)."""
    return study.get_trials(
        deepcopy=False, states=(optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
    )


def undo_if_fruitless(opened: Tracked) -> bool:
    """Removes a study this run created when no trial trained to a result; whether it did."""
    if not opened.was_new or _results(opened.study):
        return False
    undo(opened.study, opened.tracker, opened.parent)
    return True


def _reseed(cfg: DictConfig, specs: list[ParamSpec], study: optuna.Study, *, worker: bool) -> None:
    """Gives a resumed study or a worker its own sampler seed.

    A sampler seeded alike in every process would draw the same first trials in each
    worker, and again on every resume. A fresh study in one process keeps its seed, so
    it stays reproducible; a resumed one moves on by the trials it has; a worker (whose
    trials interleave with others' anyway) draws a random seed. QMC keeps its seed: its
    workers share one sequence.
    """
    seed = cfg.sampler.get("seed")
    offset = len(study.get_trials(deepcopy=False))
    if worker:
        offset = int.from_bytes(os.urandom(4), "little")
    if seed is None or not offset or cfg.sampler.name == "qmc":
        return
    sampler = OmegaConf.to_container(cfg.sampler, resolve=True)
    assert isinstance(sampler, dict)
    sampler["seed"] = (int(seed) + offset) % 2**31
    study.sampler = build_sampler(OmegaConf.create({"sampler": sampler}), specs)


def _one_trial(
    cfg: DictConfig,
    specs: list[ParamSpec],
    study: optuna.Study,
    datamodule: Any,
    tracker: Tracker,
    parent: str,
    progress: StudyProgress,
    worker: dict[str, Any] | None,
) -> Outcome | None:
    trial = study.ask()
    run: TrialRun | None = None
    try:
        with heartbeat(study, trial._trial_id):
            if not claim_slot(study, trial.number, int(cfg.study.n_trials)):
                give_up_surplus(study, trial)
                return None
            if worker is not None:
                trial.set_user_attr("worker", worker)
            if trial.user_attrs.get("reason"):
                trial.set_user_attr("reason", None)  # inherited from the failed try it repeats
            if stopping.requested():
                raise KeyboardInterrupt(stopping.requested())
            values = suggest(trial, specs, cfg)
            trial_cfg = apply(cfg, specs, values)
            check_trial(trial_cfg)
            run = tracker.start_trial(
                parent,
                study_name=str(cfg.study.name),
                number=trial.number,
                params=values,
                config_yaml=config_yaml(trial_cfg),
            )
            trial.set_user_attr("mlflow_run_id", run.run_id)
            progress.trial_started(trial.number, values)
            with ddp.ranks(trial_cfg):
                outcome = run_trial(trial_cfg, datamodule, trial=trial, run=run)
    except KeyboardInterrupt as stop:
        # An interrupt is no result: the trial goes back to the queue for the next run.
        if _fail_if_running(study, trial, reason=f"interrupted ({stop or 'SIGINT'})"):
            requeue(study, trial._trial_id, max_retry=int(cfg.storage.get("max_retry") or 1))
        if run is not None:
            run.end("KILLED", value=None, reason="interrupted; trial re-queued")
        raise
    except UserError:
        _fail_if_running(study, trial, reason="configuration error")
        if run is not None:
            run.end("FAIL", value=None, reason="configuration error")
        raise
    assert run is not None
    try:
        _record(study, trial, outcome)
    except (UpdateFinishedTrialError, ValueError):
        if not _ended_elsewhere(study, trial):
            raise
        # Another worker declared this trial lost (its heartbeat came too late) and
        # re-queued it; that worker also ended the MLflow run.
        print(f"warning: trial {trial.number} was taken over after a missed heartbeat; result dropped")
        return None
    if outcome.error:
        run.log_text(outcome.error, "traceback.txt")
    run.end(
        outcome.state,
        value=outcome.value,
        reason=outcome.reason,
        extra={"steps": outcome.steps, **outcome.metrics},
    )
    progress.trial_finished(trial.number, outcome, study)
    return outcome


def _fail_if_running(study: optuna.Study, trial: optuna.Trial, *, reason: str) -> bool:
    """Ends a trial as FAIL with a reason, unless it already ended; whether it did."""
    try:
        trial.set_user_attr("reason", reason)
        study.tell(trial, state=optuna.trial.TrialState.FAIL)
    except (UpdateFinishedTrialError, ValueError):
        if not _ended_elsewhere(study, trial):
            raise
        return False
    return True


def _ended_elsewhere(study: optuna.Study, trial: optuna.Trial) -> bool:
    """Whether another process ended this trial (it was declared lost)."""
    return study._storage.get_trial(trial._trial_id).state != optuna.trial.TrialState.RUNNING


def _record(study: optuna.Study, trial: optuna.Trial, outcome: Outcome) -> None:
    trial.set_user_attr("steps", outcome.steps)
    if outcome.world_size > 1:
        trial.set_user_attr("world_size", outcome.world_size)
    for key, value in outcome.metrics.items():
        trial.set_user_attr(key, value)
    if outcome.reason:
        trial.set_user_attr("reason", outcome.reason)
    if outcome.state == "COMPLETE":
        study.tell(trial, outcome.value)
    else:
        study.tell(trial, state=_STATES[outcome.state])


def undo(study: optuna.Study, tracker: Tracker, parent: str) -> None:
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


def finish(
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
        best_yaml = config_yaml(apply(cfg, specs, best[0].params))
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
