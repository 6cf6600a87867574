"""The best trial per value of each categorical parameter (per schedule family, per optimizer).

A study that lets the sampler choose the family answers "which family" only if each
family's best is shown beside the others: the overall top trials may all be one family.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import optuna
from rich.table import Table

from tuner.search.space import ParamSpec
from tuner.study.ties import raw_value

if TYPE_CHECKING:
    from tuner.tracking.tracker import Tracker

_STATES = {"COMPLETE": "complete", "PRUNED": "pruned", "FAIL": "failed"}


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "-" if value is None else str(value)


def choice_rows(study: optuna.Study, specs: Sequence[ParamSpec]) -> dict[str, list[dict[str, Any]]]:
    """Parameter name -> one row per choice: trial counts by state and the best complete trial.

    Only trials on which the parameter was sampled count (a conditional parameter is
    absent from trials of other families).
    """
    maximize = study.direction == optuna.study.StudyDirection.MAXIMIZE
    trials = study.get_trials(deepcopy=False)
    out: dict[str, list[dict[str, Any]]] = {}
    for spec in specs:
        if spec.kind != "categorical":
            continue
        rows = []
        for choice in spec.choices:
            mine = [t for t in trials if spec.name in t.params and t.params[spec.name] == choice]
            complete = [
                t for t in mine if t.state == optuna.trial.TrialState.COMPLETE and t.value is not None
            ]
            best = (max if maximize else min)(complete, key=lambda t: float(t.value or 0.0), default=None)
            row: dict[str, Any] = {"choice": choice}
            for state, label in _STATES.items():
                row[label] = sum(1 for t in mine if t.state.name == state)
            row["best_value"] = None if best is None else float(raw_value(best) or 0.0)
            row["best_trial"] = None if best is None else best.number
            row["test_acc"] = None if best is None else best.user_attrs.get("test_acc")
            rows.append(row)
        out[spec.name] = rows
    return out


def choice_tables(study: optuna.Study, specs: Sequence[ParamSpec], *, metric: str) -> list[Table]:
    """A table per categorical parameter: each choice's best value, best trial and counts."""
    tables = []
    for name, rows in choice_rows(study, specs).items():
        table = Table(title=f"best {metric} per {name}")
        for column in (name, f"best {metric}", "best trial", "test_acc", *_STATES.values()):
            table.add_column(column, justify="right")
        for row in rows:
            table.add_row(
                _fmt(row["choice"]),
                _fmt(row["best_value"]),
                _fmt(row["best_trial"]),
                _fmt(row["test_acc"]),
                *[str(row[label]) for label in _STATES.values()],
            )
        tables.append(table)
    return tables


def log_choice_bests(tracker: Tracker, parent: str, study: optuna.Study, specs: Sequence[ParamSpec]) -> None:
    """Logs ``best_by.<param>.<choice>`` metrics and ``best_per_choice.md`` to the parent run."""
    rows_by_name = choice_rows(study, specs)
    if not rows_by_name:
        return
    metrics = {
        f"best_by.{name}.{row['choice']}": row["best_value"]
        for name, rows in rows_by_name.items()
        for row in rows
        if row["best_value"] is not None
    }
    tracker.log_metrics(parent, 0, metrics)
    text = "\n\n".join(
        f"### best per {name}\n\n"
        + markdown(rows, ["choice", "best_value", "best_trial", "test_acc", *_STATES.values()])
        for name, rows in rows_by_name.items()
    )
    tracker.log_text(parent, text + "\n", "best_per_choice.md")


def markdown(rows: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> str:
    """Rows as a Markdown table."""
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(_fmt(row.get(c)) for c in columns) + " |" for row in rows]
    return "\n".join(lines)


def to_csv(rows: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> str:
    """Rows as CSV text, values unrounded."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(columns), extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()
