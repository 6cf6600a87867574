"""Progress of a study that other processes run: read from the shared storage.

The launcher of local workers (and of SLURM jobs, with ``launcher.wait=true``) shows one
line per finished trial, whichever worker ran it, and takes its share in noticing
workers that died.
"""

from __future__ import annotations

import sys
import time
from collections import Counter
from datetime import datetime
from typing import IO

import optuna
from optuna.trial import FrozenTrial, TrialState

from tuner.search.widen import history, widened_line
from tuner.storage.coordination import SURPLUS_ATTR, reap_stale, retried_numbers
from tuner.study.optuna_study import best_trials, count_finished
from tuner.study.session import end_lost_run
from tuner.study.ties import raw_value
from tuner.tracking.tracker import Tracker


def _fmt(value: object) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


class StudyMonitor:
    """Prints a line for each trial that ends, from any worker; reaps lost trials.

    Args:
        study: The shared study.
        total: ``study.n_trials``.
        tracker: The study's MLflow tracker (to end the runs of lost trials).
        grace: ``storage.grace_period``, for the reason given to a lost trial's run.
        quiet: Print nothing per trial.
        stream: Where lines go.
    """

    def __init__(
        self,
        study: optuna.Study,
        *,
        total: int,
        tracker: Tracker,
        grace: object,
        quiet: bool = False,
        stream: IO[str] | None = None,
    ) -> None:
        self.study, self.total, self.tracker, self.grace = study, total, tracker, grace
        self.quiet = quiet
        self.stream = stream or sys.stdout
        self._started = time.monotonic()
        self._done_at_start = count_finished(study)
        self._shown = {t.number for t in study.get_trials(deepcopy=False) if t.state.is_finished()}
        self._states: Counter[str] = Counter()
        self._widenings = len(history(study))

    def poll(self) -> int:
        """Reaps lost trials, prints the trials that ended since the last call; trials done."""
        reap_stale(self.study, on_lost=lambda t: end_lost_run(self.tracker, t, grace=self.grace))
        trials = self.study.get_trials(deepcopy=False)
        retried = retried_numbers(trials)
        ended = [t for t in trials if t.state.is_finished() and t.number not in self._shown]
        ended.sort(key=lambda t: t.datetime_complete or datetime.max)
        done = count_finished(self.study)
        running = sum(1 for t in trials if t.state == TrialState.RUNNING)
        counted = done - sum(
            1 for t in ended if t.number not in retried and not t.system_attrs.get(SURPLUS_ATTR)
        )
        for trial in ended:
            self._shown.add(trial.number)
            if trial.system_attrs.get(SURPLUS_ATTR):
                continue
            lost = trial.number in retried
            counted += 0 if lost else 1
            self._states["REQUEUED" if lost else trial.state.name] += 1
            if not self.quiet:
                self._line(trial, lost=lost, done=counted, running=running)
        self._new_widenings()
        return done

    def _new_widenings(self) -> None:
        """Says when a worker widened the search (``search.widen``), as a lone study would."""
        steps = history(self.study)
        for name, step in steps[self._widenings :]:
            if not self.quiet:
                print(widened_line(name, step), file=self.stream, flush=True)
        self._widenings = len(steps)

    def _line(self, trial: FrozenTrial, *, lost: bool, done: int, running: int) -> None:
        worker = trial.user_attrs.get("worker") or {}
        who = f" ({worker.get('name')})" if isinstance(worker, dict) and worker.get("name") else ""
        if lost:
            why = trial.user_attrs.get("reason") or "its worker stopped (no heartbeat)"
            what = f"trial {trial.number} FAIL{who} [{why}; re-queued]"
        else:
            value = "-" if trial.value is None else _fmt(raw_value(trial))
            reason = trial.user_attrs.get("reason")
            what = f"trial {trial.number} {trial.state.name} value={value}{who}" + (
                f" [{reason}]" if reason else ""
            )
        best = best_trials(self.study, top=1)
        best_text = f"{_fmt(raw_value(best[0]))} (trial {best[0].number})" if best else "none yet"
        elapsed = time.monotonic() - self._started
        new = max(done - self._done_at_start, 0)
        left = elapsed / new * max(self.total - done, 0) if new else 0.0
        states = " ".join(f"{k.lower()} {v}" for k, v in sorted(self._states.items()))
        print(
            f"[{done}/{self.total}] {what} | {states}, running {running} | best {best_text} | "
            f"{elapsed:.0f}s elapsed, ~{left:.0f}s left",
            file=self.stream,
            flush=True,
        )

    def complete(self) -> bool:
        """Whether the study reached its total with no trial still running."""
        running = self.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
        return count_finished(self.study) >= self.total and not running


def settle_trial_runs(study: optuna.Study, tracker: Tracker, parent: str, *, timeout: float) -> list[str]:
    """Waits until the MLflow runs of the study's finished trials are no longer RUNNING.

    A worker tells Optuna a trial's result first and sends the run's end through its
    writer thread after, so a study can be complete while other processes (SLURM jobs)
    still write their last runs. The summary and report wait for them, up to ``timeout``.

    Returns:
        The ids of runs still RUNNING when the wait ended.
    """
    wanted = {
        str(t.user_attrs["mlflow_run_id"])
        for t in study.get_trials(deepcopy=False)
        if t.state.is_finished() and t.user_attrs.get("mlflow_run_id")
    }
    started = time.monotonic()
    said = False
    while True:
        running = tracker.client.search_runs(
            [tracker.experiment_id],
            filter_string=f"tags.`mlflow.parentRunId` = '{parent}' and attributes.status = 'RUNNING'",
        )
        left = sorted(wanted & {r.info.run_id for r in running})
        waited = time.monotonic() - started
        if not left or waited >= timeout:
            return left
        if waited >= 2.0 and not said:  # a wait that long is worth a line
            print(f"waiting for the workers to end {len(left)} trial runs in MLflow ...", flush=True)
            said = True
        time.sleep(0.25)
