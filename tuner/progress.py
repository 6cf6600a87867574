"""What a person sees while a study runs, and the table it ends with."""

from __future__ import annotations

import sys
import time
from collections import Counter
from typing import IO, Any

import optuna
from rich.console import Console
from rich.table import Table

from tuner.study import best_trials


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


class StudyProgress:
    """One line per finished trial: done / total, states, best so far, time left.

    Args:
        stream: Where lines go (stdout by default).
        quiet: Print only the start and the end, for logs and CI.
    """

    def __init__(self, *, stream: IO[str] | None = None, quiet: bool = False) -> None:
        self.stream = stream or sys.stdout
        self.quiet = quiet
        self.total = 0
        self._done_at_start = 0
        self._started = time.monotonic()
        self._states: Counter[str] = Counter()

    def _print(self, line: str) -> None:
        print(line, file=self.stream, flush=True)

    def start(self, *, study: str, total: int, done: int, storage: str) -> None:
        self.total, self._done_at_start = total, done
        self._started = time.monotonic()
        resumed = f", resuming with {done} finished" if done else ""
        self._print(f"study {study}: {total} trials{resumed} (storage {storage})")

    def trial_started(self, number: int, params: dict[str, Any]) -> None:
        if not self.quiet:
            shown = " ".join(f"{k}={_fmt(v)}" for k, v in params.items())
            self._print(f"  trial {number} running: {shown}")

    def trial_finished(self, number: int, outcome: Any, study: optuna.Study) -> None:
        self._states[outcome.state] += 1
        if self.quiet:
            return
        done = self._done_at_start + sum(self._states.values())
        elapsed = time.monotonic() - self._started
        rate = elapsed / max(sum(self._states.values()), 1)
        left = rate * max(self.total - done, 0)
        best = best_trials(study, top=1)
        best_text = "none yet"
        if best:
            lr = best[0].params.get("lr")
            best_text = f"{_fmt(best[0].value)} (trial {best[0].number}" + (
                f", lr {_fmt(lr)})" if lr is not None else ")"
            )
        value = "-" if outcome.value is None else _fmt(outcome.value)
        states = " ".join(f"{k.lower()} {v}" for k, v in sorted(self._states.items()))
        reason = f" [{outcome.reason}]" if outcome.reason else ""
        self._print(
            f"[{done}/{self.total}] trial {number} {outcome.state} value={value}{reason} | {states} | "
            f"best {best_text} | {elapsed:.0f}s elapsed, ~{left:.0f}s left"
        )


def best_table(study: optuna.Study, *, top: int, metric: str) -> Table:
    """The top complete trials with their sampled parameters, metric and test accuracy."""
    trials = best_trials(study, top=top)
    keys: list[str] = []
    for trial in trials:
        keys += [k for k in trial.params if k not in keys]
    table = Table(title=f"best trials of {study.study_name}")
    for column in ["trial", *keys, metric, "test_acc", "state"]:
        table.add_column(column, justify="right")
    for trial in trials:
        test = trial.user_attrs.get("test_acc")
        table.add_row(
            str(trial.number),
            *[_fmt(trial.params.get(k, "-")) for k in keys],
            _fmt(trial.value),
            "-" if test is None else _fmt(float(test)),
            trial.state.name,
        )
    counts = Counter(t.state.name for t in study.get_trials(deepcopy=False))
    table.caption = ", ".join(f"{k.lower()} {v}" for k, v in sorted(counts.items()))
    return table


def print_table(table: Table, stream: IO[str] | None = None) -> None:
    Console(file=stream or sys.stdout, width=160).print(table)
