"""What a person sees while a study runs, and the table it ends with.

Three ways to show a study, chosen by where the output goes:

* live (a terminal): a rich panel redrawn in place, with a bar of trials done / total,
  the running trial, state counts, the best value so far and its LR, elapsed and ETA,
  and a line per finished trial scrolling above it;
* lines (a pipe, a log file, CI): one line per trial started and finished;
* quiet (``--quiet``): the start line and one summary line, for logs that want only the end.
"""

from __future__ import annotations

import sys
import time
from collections import Counter
from typing import IO, Any

import optuna
from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from tuner.study.optuna_study import best_trials
from tuner.study.ties import raw_value

#: State names in the order they are shown, with the colour of each in live mode.
_STATES = {"COMPLETE": "green", "PRUNED": "yellow", "FAIL": "red"}


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _clock(seconds: float) -> str:
    whole = round(max(seconds, 0.0))
    hours, rest = divmod(whole, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


class StudyProgress:
    """Shows a running study: live panel, a line per trial, or only start and end.

    Use it as a context manager (or call ``close``) so the live panel is stopped and the
    summary line printed before anything else is written.

    Args:
        stream: Where output goes (stdout by default); ignored when ``console`` is given.
        quiet: Print only the start line and the summary, for logs and CI.
        live: Redraw a live panel; None chooses it when the output is a terminal.
        console: The rich console to draw on (tests pass one writing to a buffer).
    """

    def __init__(
        self,
        *,
        stream: IO[str] | None = None,
        quiet: bool = False,
        live: bool | None = None,
        console: Console | None = None,
    ) -> None:
        self.console = console or Console(file=stream, highlight=False, soft_wrap=True)
        self.quiet = quiet
        self.live = (not quiet) and (self.console.is_terminal if live is None else live)
        self.study = ""
        self.total = 0
        self._done_at_start = 0
        self._started = time.monotonic()
        self._states: Counter[str] = Counter()
        #: Finished trials of earlier runs of the study, by state.
        self._earlier: Counter[str] = Counter()
        self._running: tuple[int, dict[str, Any], float] | None = None
        self._best: tuple[float, int, Any] | None = None
        self._live: Live | None = None

    # -- the interface tune() calls ------------------------------------------------------

    def start(
        self, *, study: str, total: int, done: int, storage: str, existing: optuna.Study | None = None
    ) -> None:
        """The study opened: its name, total, trials already finished and where it lives.

        ``existing``: the study as it stands, so that the counts and the best trial shown
        include the trials of earlier runs (a resumed study that needs none would
        otherwise end on "no trial run | best none yet" above a table of its best).
        """
        self.study, self.total, self._done_at_start = study, total, done
        if existing is not None:
            self._earlier = Counter(
                t.state.name for t in existing.get_trials(deepcopy=False) if t.state.is_finished()
            )
            self._note_best(existing)
        self._started = time.monotonic()
        resumed = f", resuming with {done} finished" if done else ""
        self._print(f"study {study}: {total} trials{resumed} (storage {storage})")
        if self.live:
            self._live = Live(
                console=self.console,
                get_renderable=self._panel,
                refresh_per_second=2,
                transient=False,
                redirect_stdout=True,
                redirect_stderr=True,
            )
            self._live.start()

    def trial_started(self, number: int, params: dict[str, Any]) -> None:
        """A trial began training with these sampled values."""
        self._running = (number, dict(params), time.monotonic())
        if self._live is not None:
            self._live.refresh()
        elif not self.quiet:
            shown = " ".join(f"{k}={_fmt(v)}" for k, v in params.items())
            self._print(f"  trial {number} running: {shown}")

    def trial_finished(self, number: int, outcome: Any, study: optuna.Study) -> None:
        """A trial ended (``outcome.state``, ``.value``, ``.reason``)."""
        self._states[outcome.state] += 1
        self._running = None
        self._note_best(study)
        if self.quiet:
            return
        value = "-" if outcome.value is None else _fmt(outcome.value)
        reason = f" [{outcome.reason}]" if outcome.reason else ""
        head = f"[{self.done}/{self.total}] trial {number} {outcome.state} value={value}{reason}"
        if self._live is not None:
            # Printed above the panel, which stays at the bottom of the terminal.
            self.console.print(Text(head, style=_STATES.get(outcome.state, "")))
            self._live.refresh()
            return
        self._print(
            f"{head} | {self._counts()} | best {self._best_text()} | "
            f"{self.elapsed:.0f}s elapsed, ~{self.eta:.0f}s left"
        )

    def _note_best(self, study: optuna.Study) -> None:
        best = best_trials(study, top=1)
        if best:
            self._best = (float(raw_value(best[0]) or 0.0), best[0].number, best[0].params.get("lr"))

    def close(self) -> None:
        """Stops the live panel and prints the summary line; safe to call twice."""
        if self._live is not None:
            self._live.refresh()
            self._live.stop()
            self._live = None
        if self.study:
            self._print(
                f"study {self.study}: {self.done}/{self.total} done | {self._counts() or 'no trial run'} | "
                f"best {self._best_text()} | {_clock(self.elapsed)} elapsed"
            )
            self.study = ""

    def __enter__(self) -> StudyProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- what is shown --------------------------------------------------------------------

    @property
    def done(self) -> int:
        """Finished trials of the study, those of earlier runs included."""
        return self._done_at_start + sum(self._states.values())

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self._started

    @property
    def eta(self) -> float:
        """Seconds left: the mean time of this run's trials times the trials still to run."""
        finished = sum(self._states.values())
        if not finished:
            return float("nan")
        return self.elapsed / finished * max(self.total - self.done, 0)

    def _whole_study(self) -> Counter[str]:
        return self._states + self._earlier

    def _counts(self) -> str:
        """State counts of the whole study, earlier runs' trials included."""
        states = self._whole_study()
        order = [*_STATES, *sorted(set(states) - set(_STATES))]
        return " ".join(f"{k.lower()} {states[k]}" for k in order if states[k])

    def _best_text(self) -> str:
        if self._best is None:
            return "none yet"
        value, number, lr = self._best
        return f"{_fmt(value)} (trial {number}" + (f", lr {_fmt(lr)})" if lr is not None else ")")

    def _panel(self) -> RenderableType:
        """The live panel, rebuilt at each refresh so the clocks move."""
        grid = Table.grid(padding=(0, 1))
        grid.add_column(style="bold", justify="right")
        grid.add_column()
        bar = Table.grid(padding=(0, 1))
        bar.add_row(
            ProgressBar(total=max(self.total, 1), completed=min(self.done, self.total), width=40),
            Text(f"{self.done}/{self.total} trials"),
        )
        grid.add_row("study", Text(self.study))
        grid.add_row("trials", bar)
        if self._running is not None:
            number, params, since = self._running
            shown = " ".join(f"{k}={_fmt(v)}" for k, v in params.items())
            grid.add_row("running", Text(f"trial {number}: {shown} ({_clock(time.monotonic() - since)})"))
        states = Text()
        for state, colour in _STATES.items():
            states.append(f"{state.lower()} {self._whole_study()[state]}  ", style=colour)
        grid.add_row("states", states)
        grid.add_row("best", Text(self._best_text()))
        eta = self.eta
        left = "-" if eta != eta else _clock(eta)  # NaN until a trial finished
        grid.add_row("time", Text(f"{_clock(self.elapsed)} elapsed, ETA {left}"))
        return Group(grid)

    def _print(self, line: str) -> None:
        self.console.print(line, markup=False, highlight=False)
        self.console.file.flush()

    def note(self, line: str) -> None:
        """A line about the study (outside the trial loop), unless quiet."""
        if not self.quiet:
            self._print(line)


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
            _fmt(raw_value(trial)),
            "-" if test is None else _fmt(float(test)),
            trial.state.name,
        )
    counts = Counter(t.state.name for t in study.get_trials(deepcopy=False))
    table.caption = ", ".join(f"{k.lower()} {v}" for k, v in sorted(counts.items()))
    return table


def print_table(table: Table, stream: IO[str] | None = None) -> None:
    Console(file=stream or sys.stdout, width=160).print(table)
