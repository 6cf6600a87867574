"""A study together with its MLflow parent run: opening, finishing, undoing.

Shared by the study loop (``tuner.tune``) and the launchers (``tuner.launch``), which
open the study and its parent run before any worker starts and finish them after.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
from omegaconf import DictConfig

from tuner.build import build_datamodule, build_model, plain
from tuner.space import ParamSpec, apply
from tuner.study import best_trials, config_yaml, count_finished, mask_password, open_study
from tuner.tracking import Tracker, TrialRun, local_uri


def tracking_uri(cfg: DictConfig) -> str:
    """The MLflow URI: the configured one, or the SQLite store under ``paths.root``."""
    return str(cfg.tracking.uri) if cfg.tracking.uri else local_uri(Path(str(cfg.paths.root)))


def flat_params(cfg: DictConfig) -> dict[str, Any]:
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
    parent = tracker.parent_run(name, params=flat_params(cfg))
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
