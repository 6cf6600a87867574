"""LR-free arms: optimizers that need no learning rate, trained beside a tuned study.

``study.lr_free_arms=[schedulefree_adamw,prodigy]`` trains each named LR-free optimizer
once, after the study's trials, on the same budget: the same data, model, seed and
``trainer.max_steps``, no pruning. An arm's optimizer is its option file as shipped
(``optimizer=<arm>``, its own ``lr``: untuned); its schedule is the base config's, except
for schedule-free AdamW, which is its own schedule and runs on ``schedule=constant``.

Arms are not Optuna trials, so they neither feed the sampler nor count in
``study.n_trials``. Each is a nested MLflow run tagged ``tuner.arm=lr_free``, and its
result is kept in the study (user attribute ``tuner.arm.<name>``) so resuming the study
does not train it again. The study ends with a table of the best tuned trial against the
arms, printed and logged to the parent run.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import optuna
import torch
from omegaconf import DictConfig, ListConfig, OmegaConf
from rich.table import Table

from tuner.config.nodes import plain
from tuner.errors import UserError
from tuner.optimizer.factory import LR_FREE, build_optimizer
from tuner.search.families import option_values
from tuner.search.space import ParamSpec, apply
from tuner.study.optuna_study import best_trials, count_finished
from tuner.study.tables import markdown, to_csv
from tuner.study.ties import raw_value

if TYPE_CHECKING:
    from tuner.study.progress import StudyProgress
    from tuner.tracking.tracker import Tracker, TrialRun

ARMS_KEY = "study.lr_free_arms"
ARM_ATTR = "tuner.arm."
ARM_TAG = "tuner.arm"
# Schedule-free AdamW replaces the schedule; any other schedule would fight its averaging.
_OWN_SCHEDULE = {"schedulefree_adamw": "constant"}
COLUMNS = ("run", "optimizer", "schedule", "lr", "trials", "steps", "state", "value", "test_acc", "vs_tuned")


def arm_names(cfg: DictConfig) -> list[str]:
    """The arms the config asks for.

    Raises:
        UserError: not a list, a name that is not LR-free, or a name given twice.
    """
    raw = cfg.study.get("lr_free_arms")
    if raw is None:
        return []
    example = f"e.g. {ARMS_KEY}=[{','.join(sorted(LR_FREE))}]"
    if not isinstance(raw, ListConfig | list):
        raise UserError(ARMS_KEY, raw, f"give a list, {example}")
    names = [str(name) for name in raw]
    for name in names:
        if name not in LR_FREE:
            raise UserError(ARMS_KEY, name, f"not an LR-free optimizer; use {' or '.join(sorted(LR_FREE))}")
    if len(set(names)) != len(names):
        raise UserError(ARMS_KEY, names, "name each arm once")
    return names


def arm_config(cfg: DictConfig, name: str) -> DictConfig:
    """The config an arm trains: the base config with the arm's optimizer (and schedule)."""
    arm = OmegaConf.create(OmegaConf.to_container(cfg, resolve=True))
    assert isinstance(arm, DictConfig)
    arm.optimizer = option_values("optimizer", name)
    if name in _OWN_SCHEDULE:
        arm.schedule = option_values("schedule", _OWN_SCHEDULE[name])
    return arm


def check_arms(cfg: DictConfig, check_trial: Callable[[DictConfig], None]) -> None:
    """Checks every arm's config and that its package is installed, before anything runs."""
    for name in arm_names(cfg):
        arm = arm_config(cfg, name)
        check_trial(arm)
        build_optimizer(torch.nn.Linear(1, 1), plain(arm.optimizer))


def run_arms(
    cfg: DictConfig,
    specs: Sequence[ParamSpec],
    study: optuna.Study,
    datamodule: Any,
    tracker: Tracker,
    parent: str,
    progress: StudyProgress,
) -> None:
    """Trains the arms not trained yet, then logs the comparison to the parent run."""
    from tuner.schedule.plot import lr_plan
    from tuner.training.trial import run_trial

    names = arm_names(cfg)
    for name in names:
        if ARM_ATTR + name in study.user_attrs:
            continue
        arm = arm_config(cfg, name)
        run = _start_run(tracker, parent, arm, name)
        progress.note(f"  arm {name} (LR-free) running: lr={arm.optimizer.lr} schedule={arm.schedule.name}")
        try:
            outcome = run_trial(arm, datamodule, trial=None, run=run)
        except KeyboardInterrupt:
            run.end("KILLED", value=None, reason="interrupted (Ctrl-C)")
            raise
        except UserError:
            run.end("FAIL", value=None, reason="configuration error")
            raise
        run.log_lr_curve(plan=lr_plan(arm), title=f"LR-free arm {name}")
        if outcome.error:
            run.log_text(outcome.error, "traceback.txt")
        run.end(
            outcome.state,
            value=outcome.value,
            reason=outcome.reason,
            extra={"steps": outcome.steps, **outcome.metrics},
        )
        result = {
            "state": outcome.state,
            "value": outcome.value,
            "steps": outcome.steps,
            "reason": outcome.reason,
        }
        result |= {"lr": float(arm.optimizer.lr), "schedule": str(arm.schedule.name), "run_id": run.run_id}
        study.set_user_attr(ARM_ATTR + name, {**result, **outcome.metrics})
        value = "-" if outcome.value is None else f"{outcome.value:.4g}"
        progress.note(
            f"[arm] {name} {outcome.state} value={value}"
            + (f" [{outcome.reason}]" if outcome.reason else ""),
        )
    if names:
        log_comparison(cfg, specs, study, tracker, parent)


def _start_run(tracker: Tracker, parent: str, arm: DictConfig, name: str) -> TrialRun:
    """The arm's nested MLflow run, tagged ``tuner.arm=lr_free``, with its config."""
    from tuner.tracking.tracker import ROLE_TAG, STUDY_TAG

    return tracker.start_run(
        parent,
        run_name=f"arm-{name}",
        tags={ROLE_TAG: "arm", ARM_TAG: "lr_free", STUDY_TAG: str(arm.study.name)},
        params={"optimizer": name, "lr": str(arm.optimizer.lr), "schedule": str(arm.schedule.name)},
        config_yaml=OmegaConf.to_yaml(arm),
    )


def comparison_rows(cfg: DictConfig, specs: Sequence[ParamSpec], study: optuna.Study) -> list[dict[str, Any]]:
    """The best tuned trial, then each arm, with its value and the difference to the tuned one."""
    rows: list[dict[str, Any]] = []
    best = best_trials(study, top=1)
    tuned_value = None
    if best:
        trial_cfg = apply(cfg, specs, best[0].params)
        tuned_value = float(raw_value(best[0]) or 0.0)
        rows.append(
            {
                "run": f"tuned (best of trial {best[0].number})",
                "optimizer": trial_cfg.optimizer.name,
                "schedule": trial_cfg.schedule.name,
                "lr": float(trial_cfg.optimizer.lr),
                "trials": count_finished(study),
                "steps": best[0].user_attrs.get("steps"),
                "state": "COMPLETE",
                "value": tuned_value,
                "test_acc": best[0].user_attrs.get("test_acc"),
                "vs_tuned": 0.0,
            }
        )
    else:
        rows.append({"run": "tuned (no complete trial)", "trials": count_finished(study), "state": "-"})
    for name in arm_names(cfg):
        result = study.user_attrs.get(ARM_ATTR + name)
        if result is None:
            rows.append({"run": f"{name} (LR-free)", "optimizer": name, "state": "not run"})
            continue
        value = result.get("value")
        gap = (
            None
            if value is None or tuned_value is None or result["state"] != "COMPLETE"
            else value - tuned_value
        )
        rows.append(
            {
                "run": f"{name} (LR-free)",
                "optimizer": name,
                "schedule": result.get("schedule"),
                "lr": result.get("lr"),
                "trials": 1,
                "steps": result.get("steps"),
                "state": result["state"],
                "value": value,
                "test_acc": result.get("test_acc"),
                "vs_tuned": gap,
            }
        )
    return rows


def comparison_table(cfg: DictConfig, specs: Sequence[ParamSpec], study: optuna.Study) -> Table:
    """The tuned-versus-LR-free table printed at the end of a study with arms."""
    metric = str(cfg.study.metric)
    table = Table(title=f"tuned vs LR-free on the same budget ({cfg.trainer.max_steps} steps per run)")
    for column in COLUMNS:
        table.add_column(metric if column == "value" else column.replace("_", " "), justify="right")
    for row in comparison_rows(cfg, specs, study):
        table.add_row(*[_cell(column, row.get(column)) for column in COLUMNS])
    table.caption = f"vs tuned: {metric} minus the best tuned trial's; trials: runs of training spent"
    return table


def _cell(column: str, value: Any) -> str:
    if isinstance(value, float):
        return f"{value:+.4g}" if column == "vs_tuned" else f"{value:.4g}"
    return "-" if value is None else str(value)


def log_comparison(
    cfg: DictConfig, specs: Sequence[ParamSpec], study: optuna.Study, tracker: Tracker, parent: str
) -> None:
    """Logs the comparison to the parent run: metrics and ``lr_free_comparison.{md,csv}``."""
    rows = comparison_rows(cfg, specs, study)
    metrics: dict[str, float] = {}
    if rows[0].get("value") is not None:
        metrics["tuned.best_value"] = float(rows[0]["value"])
    for name, row in zip(arm_names(cfg), rows[1:], strict=True):
        for key in ("value", "test_acc", "vs_tuned"):
            if row.get(key) is not None:
                metrics[f"lr_free.{name}.{key}"] = float(row[key])
    tracker.log_metrics(parent, 0, metrics)
    text = markdown(rows, COLUMNS)
    table = to_csv(rows, COLUMNS)
    tracker.log_text(parent, text + "\n", "lr_free_comparison.md")
    tracker.log_text(parent, table, "lr_free_comparison.csv")
