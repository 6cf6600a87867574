"""The study loop: ask Optuna for a trial, train it, tell Optuna, record it in MLflow."""

from __future__ import annotations

import contextlib
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
import torch
from omegaconf import DictConfig, OmegaConf
from rich.table import Table

from tuner import stopping
from tuner.compat import storage_of, trial_storage_id
from tuner.errors import StudyStopped, UserError
from tuner.search.space import ParamSpec
from tuner.search.widen import widen_step
from tuner.secrets import mask_secrets
from tuner.storage.coordination import (
    TrialLost,
    heartbeat,
    heartbeat_enabled,
    reap_stale,
    requeue,
    this_process,
)
from tuner.storage.resilience import StorageGuard, failure_summary, no_result
from tuner.study.arms import arm_names, comparison_table, run_arms
from tuner.study.narrow import narrow_from_finder
from tuner.study.optuna_study import AskTellGrid, build_sampler, count_finished, count_started
from tuner.study.progress import StudyProgress
from tuner.study.screen import awaiting_promotion
from tuner.study.session import (
    ReportWriter,
    Tracked,
    end_lost_run,
    finish,
    open_tracked,
    storage_label,
    undo_if_fruitless,
    warn_unlogged,
)
from tuner.study.tables import choice_tables
from tuner.study.trials import fail_if_running, is_surplus, record_outcome, start_trial
from tuner.tracking.tracker import Tracker, TrialRun
from tuner.training import ddp
from tuner.training.trial import Outcome, run_trial

optuna.logging.set_verbosity(optuna.logging.WARNING)
#: Seconds between looks at the study while the last trials run in other workers.
WAIT_POLL = 0.25


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
    #: The study's MLflow experiment, for the link to its runs page.
    experiment_id: str = ""


def tune(
    cfg: DictConfig,
    specs: list[ParamSpec],
    *,
    progress: StudyProgress,
    write_report: ReportWriter | None,
    worker: dict[str, Any] | None = None,
    finish_study: bool = True,
) -> StudyResult:
    """Runs the study to its total (``study.n_trials``), resuming it if it exists.

    Several processes may run this loop on one shared study (``worker`` says who this
    one is): each asks for a trial when it is free, claims one of the slots left, and at
    the end waits while other workers hold the last trials, in case one of them dies
    and its trial comes back to the queue. A worker ends the MLflow parent run only if
    ``finish_study`` and the study is complete; the launcher does it otherwise. The one that
    ends it writes the report with ``write_report`` (``tuner.report.study_report``; None: none).
    """
    if cfg.trainer.num_threads:
        torch.set_num_threads(int(cfg.trainer.num_threads))
    opened = open_tracked(cfg, specs)
    study, tracker, parent = opened.study, opened.tracker, opened.parent
    _reseed(cfg, specs, study, worker=worker is not None)
    progress.start(
        study=study.study_name,
        total=int(cfg.study.n_trials),
        done=count_finished(study),
        storage=storage_label(cfg),
        existing=study,
    )
    try:
        specs = narrow_from_finder(cfg, specs, study, opened.datamodule, tracker=tracker, parent=parent)
        # A stop signal ends the study at the next safe point, from the first trial to the
        # report; a second Ctrl-C ends the process at once (see tuner.stopping).
        with stopping.graceful_stop():
            stopped, fault = _run_trials(cfg, specs, opened, progress, worker)
            if worker is None:  # the launcher trains the arms once its workers are done
                run_arms(cfg, specs, study, opened.datamodule, tracker, parent, progress)
            return _wrap_up(cfg, specs, opened, stopped, fault, worker, finish_study, write_report)
    except UserError:
        if worker is not None or not undo_if_fruitless(opened):
            warn_unlogged(tracker.close(timeout=opened.flush))
        raise
    except StudyStopped as exc:
        tracker.set_tags(parent, {"tuner.stopped": str(exc)})
        if worker is None:
            tracker.end_run(parent, "FAILED")
        warn_unlogged(tracker.close(timeout=opened.flush))
        raise
    except KeyboardInterrupt:
        if not tracker.closed:  # else the study was complete and its parent run ended
            tracker.set_tags(parent, {"tuner.interrupted": "true"})
            if worker is None:
                tracker.end_run(parent, "KILLED")
            # Sends what is pending; what is not sent by then stays in the spool for the next run.
            warn_unlogged(tracker.close(timeout=min(opened.flush, 5.0)))
        raise


# long: the study loop; its exits (total, stop, failures, timeout) read best in one place
def _run_trials(
    cfg: DictConfig,
    specs: list[ParamSpec],
    opened: Tracked,
    progress: StudyProgress,
    worker: dict[str, Any] | None,
) -> tuple[str | None, str | None]:
    """Runs trials until the study reaches its total or is stopped; (why it stopped early, fault)."""
    study, tracker, parent, guard = opened.study, opened.tracker, opened.parent, opened.guard
    size, step_population = opened.population
    total = int(cfg.study.n_trials)
    started = time.monotonic()
    failures, waiting = 0, False
    limit_key = (
        "study.stop_on_failure=true"
        if cfg.study.get("stop_on_failure")
        else f"study.max_consecutive_failures={cfg.study.max_consecutive_failures}"
    )
    limit = 1 if cfg.study.get("stop_on_failure") else int(cfg.study.max_consecutive_failures)
    poll = min(float(cfg.storage.get("heartbeat_interval") or 2), 2.0)
    grace = cfg.storage.get("grace_period")
    while True:
        if stopping.requested():
            raise KeyboardInterrupt(stopping.requested())
        guard(
            "checking for lost trials",
            lambda: reap_stale(study, on_lost=lambda t: end_lost_run(tracker, t, grace=grace)),
        )
        if guard("counting trials", lambda: count_finished(study)) >= total:
            return None, None
        if cfg.study.timeout and time.monotonic() - started > float(cfg.study.timeout):
            return f"study.timeout={cfg.study.timeout} s reached", None
        if isinstance(study.sampler, AskTellGrid) and study.sampler.is_exhausted(study):
            return (
                f"every point of the grid is tried (sampler.grid_points="
                f"{cfg.sampler.get('grid_points')} per axis); raise it for more trials"
            ), None
        begun = guard("counting trials", lambda: count_started(study))
        if begun >= total:
            # The last trials run elsewhere; wait in case one is lost and re-queued.
            if not heartbeat_enabled(storage_of(study)):
                return "trials marked RUNNING by another process; no heartbeat tells if it lives", None
            if not waiting:
                print(f"waiting for the trials running elsewhere (one lost is re-queued after {grace} s)")
            waiting = True
            # Looked at often: the last trial's end should end this worker too, and
            # the launcher waits for every worker (a count is a cheap read).
            time.sleep(min(poll, WAIT_POLL))
            continue
        waiting = False
        if heartbeat_enabled(storage_of(study)) and guard(
            "looking at the screening", lambda: awaiting_promotion(study)
        ):
            # Another worker runs the last screening trial: the best ones go first once it ends.
            time.sleep(min(poll, WAIT_POLL))
            continue
        # Re-read each time: another worker may have widened the range meanwhile.
        # search.widen_max_decades counts from the searched specs given here.
        current = guard("widening the search", lambda: widen_step(cfg, study, specs))
        if step_population is not None and size > 1 and total - begun > 1:
            outcomes = step_population(
                cfg,
                current,
                study,
                opened.datamodule,
                tracker,
                parent,
                progress,
                size=min(size, total - begun),
            )
        else:
            outcome = _one_trial(
                cfg, current, study, opened.datamodule, tracker, parent, progress, guard, worker
            )
            outcomes = [] if outcome is None else [outcome]
        if not outcomes:
            time.sleep(min(poll, WAIT_POLL))  # another worker took the slot; look again
            continue
        for outcome in outcomes:
            failures = failures + 1 if outcome.state == "FAIL" else 0
        if failures >= limit:
            stopped = f"{failures} trials failed in a row ({limit_key}); last: {outcomes[-1].reason}"
            return stopped, failure_summary(study, failures=failures, limit_key=limit_key)


def _wrap_up(
    cfg: DictConfig,
    specs: list[ParamSpec],
    opened: Tracked,
    stopped: str | None,
    fault: str | None,
    worker: dict[str, Any] | None,
    finish_study: bool,
    write_report: ReportWriter | None,
) -> StudyResult:
    """Ends the study (summary, report) where this process is the one to, else its tracking."""
    study, tracker, parent = opened.study, opened.tracker, opened.parent
    total = int(cfg.study.n_trials)
    report = None
    complete = count_finished(study) >= total and count_started(study) <= total
    if worker is None:
        fault = fault or no_result(study)
    if worker is None or (finish_study and complete):
        report = finish(cfg, specs, opened, stopped or fault, write_report=write_report)
    else:
        warn_unlogged(tracker.close(timeout=opened.flush))
    return StudyResult(
        study, tracker.uri, parent, stopped, report, fault, experiment_id=tracker.experiment_id
    )


def study_tables(cfg: DictConfig, specs: list[ParamSpec], study: optuna.Study) -> list[Table]:
    """Tables printed after the best trials: the best per family (per categorical
    parameter), and the best tuned trial against the LR-free arms."""
    tables = choice_tables(study, specs, metric=str(cfg.study.metric))
    if arm_names(cfg):
        tables.append(comparison_table(cfg, specs, study))
    return tables


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
    guard: StorageGuard,
    worker: dict[str, Any] | None,
) -> Outcome | None:
    trial = guard("asking for a trial", study.ask)
    run: TrialRun | None = None
    try:
        with heartbeat(study, trial_storage_id(trial)):
            if is_surplus(cfg, study, trial):
                return None
            # Who runs it: a later run on this machine sees when that process is gone.
            owner = worker or this_process()
            guard("saving the trial's worker", lambda: trial.set_user_attr("worker", owner))
            if trial.user_attrs.get("reason"):
                trial.set_user_attr("reason", None)  # inherited from the failed try it repeats
            if stopping.requested():
                raise KeyboardInterrupt(stopping.requested())
            trial_cfg, run = start_trial(cfg, specs, trial, tracker, parent, progress, guard=guard)
            with ddp.ranks(trial_cfg):
                outcome = run_trial(trial_cfg, datamodule, trial=trial, run=run)
            record_outcome(study, trial, trial_cfg, run, outcome, progress, guard=guard)
    except KeyboardInterrupt as stop:
        # An interrupt is no result: the trial goes back to the queue for the next run.
        if fail_if_running(study, trial, reason=f"interrupted ({stop or 'SIGINT'})"):
            requeue(study, trial_storage_id(trial), max_retry=int(cfg.storage.get("max_retry") or 1))
        if run is not None:
            run.end("KILLED", value=None, reason="interrupted; trial re-queued")
        raise
    except UserError:
        fail_if_running(study, trial, reason="configuration error")
        if run is not None:
            run.end("FAIL", value=None, reason="configuration error")
        raise
    except TrialLost:
        # Another worker declared this trial lost (its heartbeat came too late), re-queued
        # it and ended its MLflow run; this result is dropped.
        print(f"warning: trial {trial.number} was taken over after a missed heartbeat; result dropped")
        return None
    except StudyStopped:
        raise  # the storage is away: nothing more can be told
    except Exception as exc:
        # A fault outside the trial's training (which fails the trial itself): the trial and
        # its run end as FAIL before the error stops the process, never left RUNNING.
        reason = mask_secrets(f"{type(exc).__name__}: {exc}".splitlines()[0])[:500]
        with contextlib.suppress(Exception):  # the error itself matters more than this
            fail_if_running(study, trial, reason=reason)
        if run is not None:
            run.end("FAIL", value=None, reason=reason)
        raise
    return outcome
