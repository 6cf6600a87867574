"""The numbers a report gives: the robust LR range, parameter importances, sensitivity."""

from __future__ import annotations

import math
import warnings
from collections import defaultdict
from dataclasses import dataclass

import optuna

from tuner.report.gather import StudyData
from tuner.search.widen import EDGE_SHARE
from tuner.study.ties import raw_value


@dataclass(frozen=True)
class LRRange:
    """The basin of good learning rates around the best trial.

    Attributes:
        param: Name of the LR parameter.
        best_lr: LR of the best trial.
        low: Lowest LR of the basin.
        high: Highest LR of the basin.
        recommended: Centre of the basin on a log scale (geometric mean of its ends).
        threshold: Worst value a trial may have and still be in the basin.
        members: Trial numbers in the basin, by LR.
        excluded: Trials within tolerance but cut off from the basin by a worse trial between.
        searched: The widest ``(low, high)`` the study searched this parameter in.
        edges: ``lower`` / ``upper``: ends of the search the basin reaches (see :func:`basin_edges`).
    """

    param: str
    best_lr: float
    low: float
    high: float
    recommended: float
    threshold: float
    members: tuple[int, ...]
    excluded: tuple[int, ...]
    searched: tuple[float, float] | None = None
    edges: tuple[str, ...] = ()

    @property
    def width_decades(self) -> float:
        return math.log10(self.high / self.low)


def threshold(best: float, *, tolerance: float, kind: str, maximize: bool) -> float:
    """The worst value still within tolerance of ``best``.

    ``relative``: a fraction of the best value's magnitude; ``absolute``: metric units.
    """
    margin = tolerance * abs(best) if kind == "relative" else tolerance
    return best - margin if maximize else best + margin


def robust_lr(data: StudyData, *, tolerance: float, kind: str) -> LRRange | None:
    """The LR basin: complete trials within tolerance of the best, contiguous in LR.

    Trials are ordered by LR; the basin grows from the best trial to each side while the
    next trial is a complete one within tolerance. A pruned, failed or worse trial ends
    it: its LR is evidence that the ground drops there. The recommendation is the basin's
    centre on a log scale, which keeps the most distance from both edges.
    """
    param = data.lr_param
    if param is None or not data.complete:
        return None
    best = data.complete[0]
    if param not in best.params:
        return None
    limit = threshold(float(raw_value(best) or 0.0), tolerance=tolerance, kind=kind, maximize=data.maximize)

    def good(trial: optuna.trial.FrozenTrial) -> bool:
        value = raw_value(trial)
        if trial.state != optuna.trial.TrialState.COMPLETE or value is None:
            return False
        return math.isfinite(value) and (value >= limit if data.maximize else value <= limit)

    points = sorted(
        (t for t in data.finished if param in t.params and float(t.params[param]) > 0),
        key=lambda t: (float(t.params[param]), t.number),
    )
    at = next(i for i, t in enumerate(points) if t.number == best.number)
    lo = hi = at
    while lo > 0 and good(points[lo - 1]):
        lo -= 1
    while hi < len(points) - 1 and good(points[hi + 1]):
        hi += 1
    members = points[lo : hi + 1]
    low, high = float(members[0].params[param]), float(members[-1].params[param])
    inside = {t.number for t in members}
    searched = search_bounds(data, param)
    return LRRange(
        param=param,
        best_lr=float(best.params[param]),
        low=low,
        high=high,
        recommended=math.sqrt(low * high),
        threshold=limit,
        members=tuple(t.number for t in members),
        excluded=tuple(t.number for t in points if good(t) and t.number not in inside),
        searched=searched,
        edges=basin_edges(low, high, searched),
    )


def search_bounds(data: StudyData, param: str) -> tuple[float, float] | None:
    """The widest range the study drew ``param`` from (a widened range holds the older ones)."""
    dists = [
        d
        for t in data.trials
        if isinstance(d := t.distributions.get(param), optuna.distributions.FloatDistribution)
    ]
    if not dists:
        return None
    return min(d.low for d in dists), max(d.high for d in dists)


def basin_edges(low: float, high: float, searched: tuple[float, float] | None) -> tuple[str, ...]:
    """The ends of the searched range that the basin ``[low, high]`` touches.

    On a log scale, as ``search.widen`` judges an edge: within ``EDGE_SHARE`` of the
    range's log-width from it. A basin there may go on past the range: the optimum is
    then not bracketed, and its centre is no recommendation but a lower (upper) bound.
    """
    if searched is None or searched[0] <= 0 or searched[1] <= searched[0]:
        return ()
    width = math.log(searched[1] / searched[0])
    edges = []
    if math.log(low / searched[0]) <= EDGE_SHARE * width:
        edges.append("lower")
    if math.log(searched[1] / high) <= EDGE_SHARE * width:
        edges.append("upper")
    return tuple(edges)


def importances(data: StudyData) -> tuple[dict[str, float], str | None]:
    """Optuna's fANOVA importances of the searched parameters, or why there are none.

    Returns:
        The importances (summing to 1), and a note when they are missing or trivial.
    """
    names = {name for t in data.complete for name in t.params}
    if len(data.complete) < 2:
        return {}, f"needs at least 2 complete trials (the study has {len(data.complete)})"
    if not names:
        return {}, "no parameter was searched"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            found = optuna.importance.get_param_importances(
                data.study, evaluator=optuna.importance.FanovaImportanceEvaluator(seed=0)
            )
    except (RuntimeError, ValueError) as exc:
        return {}, f"Optuna could not compute them ({exc})"
    result = {k: float(v) for k, v in found.items()}
    if len(result) == 1:
        return result, "only one parameter was searched, so its importance is 1 by definition"
    return result, None


@dataclass(frozen=True)
class Bucket:
    """The trials of one value range (or one choice) of a parameter."""

    label: str
    count: int
    best: float
    mean: float


def sensitivity(data: StudyData, *, bins: int = 4) -> dict[str, list[Bucket]]:
    """Per parameter, the best and mean value of the complete trials in each range or choice.

    Numeric parameters are cut into ``bins`` equal ranges (on a log scale for log-scale
    parameters) between the lowest and highest value tried; a categorical one by choice.
    A parameter that matters shows best values that differ a lot between buckets.
    """
    out: dict[str, list[Bucket]] = {}
    dists: dict[str, optuna.distributions.BaseDistribution] = {}
    for trial in data.complete:
        dists.update(trial.distributions)
    for name, dist in sorted(dists.items()):
        groups: dict[str, list[float]] = defaultdict(list)
        trials = [t for t in data.complete if name in t.params]
        if isinstance(dist, optuna.distributions.CategoricalDistribution):
            for t in trials:
                groups[str(t.params[name])].append(float(raw_value(t) or 0.0))
            order = [str(c) for c in dist.choices if str(c) in groups]
        else:
            log = bool(getattr(dist, "log", False))
            values = [float(t.params[name]) for t in trials]
            lo, hi = min(values), max(values)
            scale = math.log if log else float

            def edge(i: int, lo: float = lo, hi: float = hi, log: bool = log) -> float:
                if log:
                    return float(math.exp(math.log(lo) + (math.log(hi) - math.log(lo)) * i / bins))
                return lo + (hi - lo) * i / bins

            span = (scale(hi) - scale(lo)) or 1.0
            labels = [f"{edge(i):.3g}–{edge(i + 1):.3g}" for i in range(bins)]
            for t, v in zip(trials, values, strict=True):
                index = min(int((scale(v) - scale(lo)) / span * bins), bins - 1)
                groups[labels[index]].append(float(raw_value(t) or 0.0))
            order = [label for label in labels if label in groups]
        pick = max if data.maximize else min
        out[name] = [
            Bucket(k, len(groups[k]), pick(groups[k]), sum(groups[k]) / len(groups[k])) for k in order
        ]
    return out
