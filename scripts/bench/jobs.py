"""What every peer of the suite is given (a :class:`Job`) and hands back (a trace).

A trace lists, per trial in the order they ended, the training steps spent so far (all
trials, pruned ones for the steps they took, plus any range test before them), the seconds
since the peer started, and the trial's final validation accuracy (None when pruned or
failed).
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import optuna
from tasks import TASKS, Space, task_overrides

Trace = dict[str, Any]


@dataclass(frozen=True)
class Job:
    """One peer run: the task, its seed, the trial length, the step budget, an empty home."""

    task: str
    seed: int
    steps: int
    val_every: int
    budget: int
    home: str
    extra: tuple[str, ...] = ()
    cold_processes: bool = False

    @property
    def space(self) -> Space:
        """The task's search space: every peer searches the same one."""
        return TASKS[self.task].space

    def overrides(self) -> list[str]:
        """The task, its trial length, the shared search space and the seed."""
        return [
            *task_overrides(self.task, steps=self.steps, val_every=self.val_every),
            *self.extra,
            *self.space.overrides(),
            f"seed={self.seed}",
        ]


def compose_job(job: Job, *more: str) -> Any:
    from tuner.cli import compose

    os.environ["TUNER_HOME"] = job.home
    return compose([*job.overrides(), *more])


def trace_of(study: optuna.Study, started: datetime, *, setup_steps: int = 0) -> Trace:
    """The trace of a finished study, trials in the order they ended."""
    done = [t for t in study.get_trials(deepcopy=False) if t.datetime_complete is not None]
    done.sort(key=lambda t: (t.datetime_complete, t.number))
    trials, spent = [], setup_steps
    for t in done:
        spent += trial_steps(t)
        complete = t.state == optuna.trial.TrialState.COMPLETE
        trials.append(
            {
                "steps": spent,
                "seconds": (t.datetime_complete - started).total_seconds(),  # type: ignore[operator]
                "value": float(t.value) if complete and t.value is not None else None,
                "params": t.params,
            }
        )
    return {"trials": trials, "setup_steps": setup_steps}


def sampler_seed(job: Job, restart: int = 0) -> int:
    """The sampler's seed: alike across peers for a run's seed (their random first draws
    coincide, so peers are compared on the same luck), new for each restart of a process."""
    return job.seed * 1000 + restart


def trial_steps(trial: optuna.trial.FrozenTrial) -> int:
    """Training steps a trial took: its own, and its cooldown probes' branches (they train too)."""
    return int(trial.user_attrs.get("steps", 0)) + int(trial.user_attrs.get("probe_steps", 0))


def steps_spent(study: optuna.Study) -> int:
    """Training steps of all the study's trials so far (pruned ones for the steps they took)."""
    return sum(trial_steps(t) for t in study.get_trials(deepcopy=False))


def run_study(cfg: Any) -> tuple[Any, optuna.Study]:
    """The project's study for a composed config, in this process, quiet; its result and the
    Optuna study as stored (for its trials' states, steps and params)."""
    from tuner.report import study_report
    from tuner.storage.storages import build_storage
    from tuner.study.loop import tune
    from tuner.study.progress import StudyProgress
    from tuner.validate import validate

    with open(os.devnull, "w") as sink, contextlib.redirect_stdout(sink):
        result = tune(
            cfg, validate(cfg), progress=StudyProgress(quiet=True, stream=sink), write_report=study_report
        )
    return result, optuna.load_study(study_name=str(cfg.study.name), storage=build_storage(cfg))
