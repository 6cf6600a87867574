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
from tuner.config import check_trial
from tuner.coordination import claim_slot, give_up_surplus, heartbeat, heartbeat_enabled, reap_stale, requeue
from tuner.errors import UserError
from tuner.objective import Outcome, run_trial
from tuner.progress import StudyProgress
from tuner.session import end_lost_run, finish, open_tracked, storage_label, undo_if_fruitless
from tuner.session import tracking_uri as tracking_uri  # its old home, for existing imports
from tuner.space import ParamSpec, apply, suggest
from tuner.study import build_sampler, config_yaml, count_finished, count_started
from tuner.tracking import Tracker, TrialRun

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
    failures, stopped, waiting = 0, None, False
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
                    if not heartbeat_enabled(study._storage):
                        stopped = "trials marked RUNNING by another process; no heartbeat tells if it lives"
                        break
                    if not waiting:
                        print(
                            f"waiting for the trials running elsewhere (one lost is re-queued after {grace} s)"
                        )
                    waiting = True
                    time.sleep(poll)
                    continue
                waiting = False
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
