"""``study.tie_break``: a signal for the sampler on a plateau of the study's metric.

When many trials end at the same validation accuracy (a plateau: the same value to the
last digit), TPE cannot tell its good half from its bad one, and learns nothing. The value
told to Optuna is the metric plus a term far below the metric's resolution, ordered by a
second metric (``val_loss`` by default): distinct metric values keep their order, ties are
ordered by the second one. The measured metric stays in the trial's user attributes
(``raw_value``): the console, the report and MLflow print that one.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

import optuna
from omegaconf import DictConfig

from tuner.errors import UserError

RAW_ATTR = "raw_value"
TIE_ATTR = "tie_break"
#: Largest size of the tie-break term. An accuracy over n validation samples moves in steps
#: of 1/n >= 1e-6 (n up to a million), so a term below 1e-9 in size can never reorder two
#: distinct accuracies (their gap exceeds the terms' 2e-9 difference 500-fold), while
#: float64 still resolves 1e-9 * (a difference of 1e-6 in the squashed loss) on a metric near 1.
TIE_SCALE = 1e-9
#: Trials in one tie, and their share of the complete trials, that make a plateau worth saying
#: (three ties in ten trials happen on any small validation set).
PLATEAU_MIN, PLATEAU_SHARE = 4, 1 / 3


def check_tie_break(cfg: DictConfig) -> None:
    """Validates ``study.tie_break``: null, or a validation metric.

    Raises:
        UserError: naming the key.
    """
    name = cfg.study.get("tie_break")
    if name is not None and (not isinstance(name, str) or not name.startswith("val")):
        raise UserError(
            "study.tie_break", name, "name a validation metric such as val_loss, or null for none"
        )


def minimized(name: str) -> bool:
    """Whether lower is better for a metric: losses and errors."""
    return "loss" in name or "err" in name


def squash(x: float) -> float:
    """Maps any real number into (-1, 1), keeping the order.

    ``x / (1 + |x|)`` rather than tanh: tanh is 1.0 exactly from about 19 on, so two large
    losses would tie again; this one keeps a gap of order 1/x^2.
    """
    return x / (1.0 + abs(x))


def told_value(
    cfg: DictConfig, value: float | None, metrics: Mapping[str, float]
) -> tuple[float | None, dict[str, Any]]:
    """The value to tell Optuna for a complete trial, and the user attributes that keep
    the measured one. Unchanged without a tie-break metric or its value."""
    name = cfg.study.get("tie_break")
    if value is None or not name or name == cfg.study.metric or name not in metrics:
        return value, {}
    secondary = float(metrics[name])
    if not math.isfinite(secondary):
        return value, {}
    maximize = cfg.study.direction == "maximize"
    # Better on the second metric -> better told value, in the study's direction.
    sign = (1 if maximize else -1) * (-1 if minimized(str(name)) else 1)
    return value + sign * TIE_SCALE * squash(secondary), {RAW_ATTR: value, TIE_ATTR: name, name: secondary}


def raw_value(trial: optuna.trial.FrozenTrial) -> float | None:
    """The study metric as measured (the told value may carry a tie-break term)."""
    raw = trial.user_attrs.get(RAW_ATTR)
    return float(raw) if raw is not None else trial.value


def plateau(trials: Sequence[optuna.trial.FrozenTrial], metric: str) -> str | None:
    """A line saying that the complete trials sat on a plateau, or None.

    A plateau: at least ``PLATEAU_MIN`` trials, and a third of the complete ones, tie
    on the measured metric (to 1e-9: the same count of correct samples).
    """
    values = [v for t in trials if (v := raw_value(t)) is not None and math.isfinite(v)]
    if not values:
        return None
    tied, count = Counter(round(v, 9) for v in values).most_common(1)[0]
    if count < max(PLATEAU_MIN, PLATEAU_SHARE * len(values)):
        return None
    breakers = {t.user_attrs.get(TIE_ATTR) for t in trials if round(raw_value(t) or 0.0, 9) == tied}
    how = (
        f"ties broken by {', '.join(sorted(str(b) for b in breakers if b))}"
        if breakers - {None}
        else "no tie-break (study.tie_break): the sampler could not tell them apart"
    )
    return f"plateau: {count} of {len(values)} complete trials tie at {metric} {tied:.4f}; {how}"
