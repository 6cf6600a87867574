"""``search.widen``: a log-scale range that grows when the best trials sit at one of its ends.

A person's range is a prior, and an optimum just past its end is a common miss (every good
trial at 0.298 of a range ending at 0.3). Once ``search.widen_after`` trials are complete,
and whenever the best of them crowd one end of a log-scale float parameter's range, that
end moves one decade outwards; ``search.widen_max_decades`` caps the total, and the range
test's divergence point (``search.from_finder``) caps the LR's upper end.

The bounds live in the study's user attributes (``tuner.widen``), so a resumed study and
every worker sharing the storage suggest from the same range. Optuna's joint models
(TPE, GP) keep the first distribution they saw for a parameter, or drop one whose
distribution changed: :class:`WideningTPE` and :class:`WideningGP` hand them the widened
one, so they sample the new range and still learn from the trials drawn in the old one.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any

import optuna
from omegaconf import DictConfig
from optuna.distributions import BaseDistribution, FloatDistribution

from tuner.errors import UserError
from tuner.search.space import ParamSpec
from tuner.search.trial_check import check_trial

WIDEN_ATTR = "tuner.widen"
#: The study attribute that records the range test behind a narrowed search (written by
#: ``tuner/study/narrow.py``, ``search.from_finder``; read here: its divergence caps widening).
FINDER_ATTR = "tuner.finder"
#: "At an edge": within this share of the range's log-width from it.
EDGE_SHARE = 0.1
#: The smallest move worth a widening, in decades (a cap may leave less than one decade).
_MIN_STEP = 0.05
#: Samplers whose design is fixed when built: a grid's points, a QMC sequence's space.
_FIXED_DESIGNS = ("grid", "qmc")


def widenable(spec: ParamSpec) -> bool:
    """Log-scale float parameters: those whose range spans decades."""
    return spec.kind == "float" and spec.log and spec.step is None


def enabled(cfg: DictConfig) -> bool:
    return bool(cfg.search.get("widen", True)) and str(cfg.sampler.name) not in _FIXED_DESIGNS


def check_widen(cfg: DictConfig) -> None:
    """Validates ``search.widen``, ``search.widen_max_decades`` and ``search.widen_after``.

    Raises:
        UserError: naming the bad key.
    """
    if not isinstance(cfg.search.get("widen", True), bool):
        raise UserError("search.widen", cfg.search.widen, "give true or false")
    decades = cfg.search.get("widen_max_decades", 2)
    if not isinstance(decades, (int, float)) or isinstance(decades, bool) or decades < 0:
        raise UserError("search.widen_max_decades", decades, "give a number of decades >= 0, e.g. 2")
    after = cfg.search.get("widen_after", 4)
    if not isinstance(after, int) or isinstance(after, bool) or after < 1:
        raise UserError("search.widen_after", after, "give a whole number of complete trials >= 1")


def stored_bounds(study: optuna.Study) -> dict[str, tuple[float, float]]:
    """Parameter name -> its widened ``(low, high)``, as stored with the study."""
    record: dict[str, Any] = study.user_attrs.get(WIDEN_ATTR) or {}
    return {name: (float(r["low"]), float(r["high"])) for name, r in record.items()}


def current_space(study: optuna.Study, specs: Sequence[ParamSpec]) -> list[ParamSpec]:
    """The specs with the bounds widened so far (by this process or any other)."""
    bounds = stored_bounds(study)
    return [
        replace(s, low=bounds[s.name][0], high=bounds[s.name][1]) if s.name in bounds else s for s in specs
    ]


def edge(values: Sequence[float], low: float, high: float) -> str | None:
    """``upper`` or ``lower`` if the best values crowd that end of ``[low, high]`` (log scale).

    ``values`` are the best trials' values, best first: the top 3 or the top quarter,
    whichever is more. Two of them (and at least half) must lie within ``EDGE_SHARE`` of
    the range's log-width from the end: one trial there can be luck.
    """
    width = math.log(high / low)
    need = max(2, math.ceil(len(values) / 2))
    near_high = sum(math.log(high / v) <= EDGE_SHARE * width for v in values)
    near_low = sum(math.log(v / low) <= EDGE_SHARE * width for v in values)
    if near_high >= need:
        return "upper"
    if near_low >= need:
        return "lower"
    return None


def top_values(study: optuna.Study, name: str) -> list[float]:
    """The parameter's values in the best complete trials: top 3 or top quarter."""
    complete = [
        t
        for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
        if name in t.params and t.value is not None and math.isfinite(t.value)
    ]
    maximize = study.direction == optuna.study.StudyDirection.MAXIMIZE
    complete.sort(key=lambda t: float(t.value or 0.0), reverse=maximize)
    return [float(t.params[name]) for t in complete[: max(3, len(complete) // 4)]]


def finder_ceiling(study: optuna.Study, name: str) -> float:
    """The range test's divergence point for its parameter; inf where none ran or none diverged."""
    record = study.user_attrs.get(FINDER_ATTR)
    if not record or record.get("param") != name:
        return math.inf
    divergence = record["result"].get("divergence")
    return math.inf if divergence is None else float(divergence)


def _widened(
    spec: ParamSpec, side: str, *, start: tuple[float, float], max_decades: float, ceiling: float
) -> tuple[float, float] | None:
    """The new ``(low, high)`` after one step outwards on ``side``, or None if capped."""
    low, high = float(spec.low or 0), float(spec.high or 0)
    used = math.log10(high / start[1]) + math.log10(start[0] / low)
    step = min(1.0, max_decades - used)
    if side == "upper":
        step = min(step, math.log10(ceiling / high)) if ceiling < math.inf else step
    if step < _MIN_STEP:
        return None
    return (low, high * 10**step) if side == "upper" else (low / 10**step, high)


def _trains(cfg: DictConfig, specs: Sequence[ParamSpec], spec: ParamSpec, bound: float) -> bool:
    """Whether a trial at the new bound passes the trial check (an optimizer or schedule
    key past its domain, e.g. a decay_to above 1, would fail every such trial)."""
    from tuner.search.space import apply

    # A conditional parameter is checked on a trial where it is drawn: its parents set.
    names = {s.name for s in specs}
    values = {parent: allowed[0] for parent, allowed in spec.when.items() if parent in names}
    try:
        check_trial(apply(cfg, specs, {**values, spec.name: bound}))
    except UserError:
        return False
    return True


def short(x: float) -> str:
    """A bound as people write it: 1e-4, 0.03, 3."""
    if 1e-3 <= abs(x) < 1e4:
        return f"{x:.3g}"
    mantissa, exponent = f"{x:.2e}".split("e")
    return f"{mantissa.rstrip('0').rstrip('.')}e{int(exponent)}"


def widen_step(
    cfg: DictConfig,
    study: optuna.Study,
    specs: Sequence[ParamSpec],
    *,
    echo: Callable[[str], None] = print,
) -> list[ParamSpec]:
    """The search space for the next trial: the stored bounds, widened once more if the
    best trials now sit at an edge. Records and announces each widening."""
    current = current_space(study, specs)
    if not enabled(cfg):
        return current
    complete = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    if len(complete) < int(cfg.search.get("widen_after", 4)):
        return current
    record: dict[str, Any] = dict(study.user_attrs.get(WIDEN_ATTR) or {})
    changed = False
    for spec in current:
        if not widenable(spec):
            continue
        side = edge(top_values(study, spec.name), float(spec.low or 0), float(spec.high or 0))
        if side is None:
            continue
        entry = record.get(spec.name) or {"start": [spec.low, spec.high], "history": []}
        bounds = _widened(
            spec,
            side,
            start=(float(entry["start"][0]), float(entry["start"][1])),
            max_decades=float(cfg.search.get("widen_max_decades", 2)),
            ceiling=finder_ceiling(study, spec.name),
        )
        if bounds is None or not _trains(cfg, current, spec, bounds[1] if side == "upper" else bounds[0]):
            continue
        entry = {
            **entry,
            "low": bounds[0],
            "high": bounds[1],
            "history": [
                *entry["history"],
                {"after": len(complete), "side": side, "low": bounds[0], "high": bounds[1]},
            ],
        }
        record[spec.name] = entry
        changed = True
        echo(widened_line(spec.name, entry["history"][-1]))
    if changed:
        study.set_user_attr(WIDEN_ATTR, record)
    return current_space(study, specs) if changed else current


def widened_line(name: str, step: Mapping[str, Any]) -> str:
    """The console's line for one widening."""
    return (
        f"search: {name} range widened to [{short(step['low'])}, {short(step['high'])}] "
        f"(best trials at the {step['side']} edge)"
    )


def history(study: optuna.Study) -> list[tuple[str, dict[str, Any]]]:
    """Every widening of the study, in order: ``(parameter, step)`` with the step's
    ``after`` (complete trials then), ``side``, ``low`` and ``high``."""
    record: dict[str, Any] = study.user_attrs.get(WIDEN_ATTR) or {}
    steps = [(name, step) for name, entry in record.items() for step in entry.get("history", [])]
    return sorted(steps, key=lambda item: int(item[1]["after"]))


def _with_bounds(space: dict[str, BaseDistribution], bounds: dict[str, tuple[float, float]]) -> None:
    for name, dist in space.items():
        if name in bounds and isinstance(dist, FloatDistribution):
            space[name] = FloatDistribution(*bounds[name], log=dist.log)


class _WidenedSpace:
    """Hands a sampler's joint model the bounds ``search.widen`` stored with the study.

    Optuna's joint models drop a parameter whose distribution changed between trials
    (the intersection search space of TPE with ``group=False`` and of GP), or keep the
    distribution of the first trial that had it (TPE with ``group=True``): after a
    widening they would sample it only at random, or only in the old range. Here every
    trial's value is read on the widened distribution: the old trials' values lie inside
    it, so the model still learns from them.
    """

    def infer_relative_search_space(
        self, study: optuna.Study, trial: optuna.trial.FrozenTrial
    ) -> dict[str, BaseDistribution]:
        space: dict[str, BaseDistribution] = super().infer_relative_search_space(study, trial)  # type: ignore[misc]
        bounds = stored_bounds(study)
        if not bounds:
            return space
        group = getattr(self, "_search_space_group", None)
        if group is not None:  # TPE with group=True samples from these sub-spaces
            for sub in group.search_spaces:
                _with_bounds(sub, bounds)
        else:
            _restore_dropped(space, study, bounds)
        _with_bounds(space, bounds)
        return space


class WideningTPE(_WidenedSpace, optuna.samplers.TPESampler):
    """Optuna's TPE, drawing from the widened ranges (:class:`_WidenedSpace`)."""


class WideningGP(_WidenedSpace, optuna.samplers.GPSampler):
    """Optuna's GP sampler, drawing from the widened ranges (:class:`_WidenedSpace`)."""


def _restore_dropped(
    space: dict[str, BaseDistribution], study: optuna.Study, bounds: dict[str, tuple[float, float]]
) -> None:
    """Puts back a widened parameter that the intersection search space left out
    because its distribution changed, where every complete or pruned trial has it."""
    states = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
    trials = study.get_trials(deepcopy=False, states=states)
    for name, (low, high) in bounds.items():
        if name in space or not trials:
            continue
        dists = [t.distributions.get(name) for t in trials]
        if all(isinstance(d, FloatDistribution) for d in dists):
            space[name] = FloatDistribution(low, high, log=bool(dists[0].log))  # type: ignore[union-attr]
