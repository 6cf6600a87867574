"""Best LR by training length, from one study's cooldown probes.

A cooldown branch taken at step ``s`` with ``c`` cooldown steps is a whole run of
``s + c`` steps (warmup, a stable phase at the trial's LR, a cooldown): a study with
``probe=cooldown`` therefore scores every trial at several training lengths for
little more than one run's cost. The complete trials give the full length.
"""

from __future__ import annotations

from dataclasses import dataclass

import optuna

from tuner.report.gather import StudyData
from tuner.training.probe import PROBES_ATTR


@dataclass(frozen=True)
class BudgetRow:
    """The best trial at one training length."""

    length: int
    trial: int
    lr: float | None
    value: float
    scored: int  # trials with a score at this length


def best_by_length(data: StudyData, *, full_length: int | None) -> list[BudgetRow]:
    """One row per training length the probes (and complete trials) scored, shortest first."""
    scores: dict[int, list[tuple[float, optuna.trial.FrozenTrial]]] = {}
    for trial in data.finished:
        for length, value in trial.user_attrs.get(PROBES_ATTR) or []:
            scores.setdefault(int(length), []).append((float(value), trial))
    if full_length is not None:
        for trial in data.complete:
            scores.setdefault(full_length, []).append((float(trial.value or 0.0), trial))
    rows = []
    for length in sorted(scores):
        pick = max if data.maximize else min
        value, trial = pick(scores[length], key=lambda pair: pair[0])
        lr = trial.params.get(data.lr_param) if data.lr_param else None
        rows.append(BudgetRow(length, trial.number, lr, value, len(scores[length])))
    return rows
