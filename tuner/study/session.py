"""A study together with its MLflow parent run: opening, finishing, undoing.

Shared by the study loop (``tuner.study.loop``) and the launchers (``tuner.launch``), which
open the study and its parent run before any worker starts and finish them after.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
from mlflow.tracking import MlflowClient
from omegaconf import DictConfig

from tuner import devices, stopping
from tuner._testpoint import point
from tuner.compat import storage_of, study_id
from tuner.config.nodes import plain
from tuner.data.factory import build_datamodule
from tuner.models.factory import build_model, model_note
from tuner.preflight import check_first_batch, check_population, check_services
from tuner.search.space import ParamSpec, apply
from tuner.secrets import mask_secrets, masked_yaml
from tuner.storage.coordination import reap_dead_owners
from tuner.storage.resilience import StorageGuard
from tuner.study.optuna_study import best_trials, count_finished, open_study
from tuner.study.tables import log_choice_bests
from tuner.study.ties import raw_value
from tuner.tracking.tracker import TRIAL_TAG, Tracker, TrialRun, tracking_uri


def flat_params(cfg: DictConfig) -> dict[str, Any]:
    """The fixed config as flat ``group.key`` params for the parent run (secrets masked on logging)."""
    out: dict[str, Any] = {}

    def walk(node: Any, prefix: str) -> None:
        if isinstance(node, dict):
            for k, v in node.items():
                walk(v, f"{prefix}.{k}" if prefix else str(k))
        else:
            out[prefix] = node

    container = plain(cfg)
    groups = ("data", "model", "optimizer", "schedule", "trainer", "sampler", "pruner", "study", "storage")
    for group in groups:
        walk(container[group], group)
    out["seed"] = cfg.seed
    return out


@dataclass
class Tracked:
    """A study opened together with its MLflow parent run, and what its loop needs."""

    study: optuna.Study
    tracker: Tracker
    parent: str
    datamodule: Any
    was_new: bool
    guard: StorageGuard
    #: Seconds to wait for MLflow writes at the end.
    flush: float
    #: Trials per fit (``study.population``) and the step that trains them; (1, None) if off.
    population: tuple[int, Callable[..., Any] | None]


def study_key(study: optuna.Study) -> str:
    """What tells this Optuna study from an earlier one of the same name: its storage id
    (a study replaced with ``study.resume=false`` gets a new one)."""
    return str(study_id(study))


def sidecar_wanted(cfg: DictConfig) -> bool:
    """``tracking.sidecar``: true / false, or auto: on when a core is left free by the trials.

    A sidecar on a machine whose cores all train (one worker per core) takes CPU from
    them and pays its imports: there it is slower than the tracker's own thread.
    """
    value = cfg.tracking.get("sidecar", "auto")
    if isinstance(value, bool):
        return value
    cores = devices.cpu_cores()
    return cores > int(cfg.trainer.get("num_threads") or cores)


def open_tracked(cfg: DictConfig, specs: list[ParamSpec]) -> Tracked:
    """Opens (or creates) the study and its MLflow parent run.

    Services, data and model are checked first, so a config that cannot train fails
    before anything is created. Launchers call this before starting workers, so that
    workers only ever reopen the study and the parent run.
    """
    name = str(cfg.study.name)
    check_services(cfg)
    datamodule = build_datamodule(cfg)
    # A model that cannot be built, does not fit the data or too large a population fails
    # before any study exists.
    model = build_model(cfg, datamodule)
    note = model_note(cfg)
    if note:
        print(note)  # here, once: every trial builds the model again and drops the same keys
    check_first_batch(cfg, model, datamodule)
    check_population(cfg, model)
    population: tuple[int, Callable[..., Any] | None] = (1, None)
    if cfg.study.get("population", 1) != 1:
        # K trials in one fit (study.population); that module imports tuner.study.loop.
        from tuner.study.population import population_size, population_step

        population = (population_size(cfg, specs, datamodule), population_step)
    study = open_study(cfg, specs, name=name)
    was_new = len(study.get_trials(deepcopy=False)) == 0
    root = Path(str(cfg.paths.root))
    tracker = Tracker(
        tracking_uri(cfg),
        experiment=name,
        artifact_root=root / "artifacts",
        spool_dir=root / "spool",
        max_wait=float(cfg.tracking.get("retry_max_wait", 30)),
        sidecar=sidecar_wanted(cfg),
        log_every=int(cfg.tracking.get("log_every_n_steps") or 1),
    )
    parent = tracker.parent_run(name, params=flat_params(cfg), study_key=study_key(study))
    flush = float(cfg.tracking.get("flush_timeout", 60))
    mend_after_crash(cfg, study, tracker, parent, flush=flush)
    return Tracked(
        study, tracker, parent, datamodule, was_new, StorageGuard.from_config(cfg), flush, population
    )


def storage_label(cfg: DictConfig) -> str:
    """Where the study lives, fit to print: a URL's password is masked."""
    return mask_secrets(str(cfg.storage.get("url") or cfg.storage.get("path") or "memory"))


def end_lost_run(tracker: Tracker, trial: optuna.trial.FrozenTrial, *, grace: object = None) -> None:
    """Ends the MLflow run of a trial whose worker died, so it does not stay RUNNING."""
    run_id = trial.user_attrs.get("mlflow_run_id")
    lost = f"no heartbeat for {grace} s" if grace is not None else "its process ended"
    if run_id:
        TrialRun(tracker, str(run_id)).end(
            "KILLED", value=None, reason=f"worker lost: {lost}; trial re-queued"
        )


def mend_after_crash(
    cfg: DictConfig, study: optuna.Study, tracker: Tracker, parent: str, *, flush: float
) -> None:
    """Puts MLflow in line with Optuna after an earlier run of the study was interrupted or killed.

    Its spooled writes were replayed when the tracker opened (:mod:`tuner.tracking.spool`); then
    the trials its process held are failed and re-queued, and the trial runs it left
    RUNNING although Optuna has their result are ended as Optuna has them.
    """
    lost = reap_dead_owners(
        study, max_retry=int(cfg.storage.get("max_retry") or 1), on_lost=lambda t: end_lost_run(tracker, t)
    )
    if lost:
        print(f"note: {_trials([t.number for t in lost])} lost the process that ran them; re-queued")
    if not tracker.drain(timeout=flush):
        return  # the store is away: the next run mends them
    mended = mend_trial_runs(study, tracker, parent, metric=str(cfg.study.metric))
    if mended:
        print(f"note: ended the MLflow runs of {_trials(mended)} as Optuna recorded them")


def _trials(numbers: list[int]) -> str:
    return f"trial{'s' if len(numbers) > 1 else ''} {', '.join(map(str, numbers))}"


def mend_trial_runs(study: optuna.Study, tracker: Tracker, parent: str, *, metric: str) -> list[int]:
    """Ends the trial runs left RUNNING whose Optuna trial has ended; their trial numbers.

    Each gets Optuna's state, value, reason and final metrics, and the trial's reported
    ``metric`` values if the run has none of them.
    """
    mended = []
    trials = study.get_trials(deepcopy=False)
    for run in tracker.running_trial_runs(parent):
        number = int(run.data.tags.get(TRIAL_TAG, -1))
        if not 0 <= number < len(trials) or not trials[number].state.is_finished():
            continue
        trial = trials[number]
        trial_run = TrialRun(tracker, run.info.run_id)
        if trial.intermediate_values and metric not in run.data.metrics:
            for step, value in sorted(trial.intermediate_values.items()):
                trial_run.log_metrics(step, {metric: value})
        finals = {
            k: float(v)
            for k, v in trial.user_attrs.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool) and k != "world_size"
        }
        trial_run.end(
            trial.state.name, value=trial.value, reason=trial.user_attrs.get("reason"), extra=finals
        )
        mended.append(number)
    return mended


def undo_if_fruitless(opened: Tracked) -> bool:
    """Removes a study this run created when no trial trained to a result; whether it did.

    A configuration error fails every trial alike, so a new study with none complete or
    pruned is removed, its MLflow runs with it.
    """
    states = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
    if not opened.was_new or opened.study.get_trials(deepcopy=False, states=states):
        return False
    opened.tracker.discard(opened.parent)
    optuna.delete_study(study_name=opened.study.study_name, storage=storage_of(opened.study))
    return True


def warn_unlogged(problems: list[str]) -> None:
    """Says which MLflow writes could not be sent (they stay in the spool)."""
    for line in problems:
        print(f"warning: not logged in MLflow: {line}", file=sys.stderr)


#: Writes a finished study's report and returns its Markdown file (``tuner.report.study_report``):
#: handed in by the command line and the launchers, as the report reads the study.
ReportWriter = Callable[[DictConfig, optuna.Study, MlflowClient, str], Path]


def finish(
    cfg: DictConfig,
    specs: list[ParamSpec],
    opened: Tracked,
    stopped: str | None,
    *,
    write_report: ReportWriter | None,
) -> Path | None:
    """Writes the summary to the study's parent run, then the plots and report
    (``write_report``, if given and ``report.enabled``); returns the report."""
    study, tracker, parent, flush = opened.study, opened.tracker, opened.parent, opened.flush
    log_choice_bests(tracker, parent, study, specs)
    best = best_trials(study, top=1)
    summary: dict[str, Any] = {"n_finished": count_finished(study)}
    best_yaml = None
    if best:
        summary["best_value"] = float(raw_value(best[0]) or 0.0)
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
    warn_unlogged(tracker.close(timeout=flush))
    if stopping.requested():  # Ctrl-C while the summary was sent: the next run writes the report
        raise KeyboardInterrupt(stopping.requested())
    if write_report is None or not (cfg.get("report") and cfg.report.enabled):
        return None
    point("report")
    try:  # the trials are safe in the stores; a plot that fails must not hide that
        return write_report(cfg, study, tracker.client, parent)
    except Exception as exc:
        print(
            f"warning: the report could not be written ({type(exc).__name__}: {exc}); "
            f"retry with: python -m tuner mode=report study.name={study.study_name}"
        )
        return None
