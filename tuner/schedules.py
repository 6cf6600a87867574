"""Learning-rate schedules as pure functions of the optimizer step.

A schedule is a multiplier of the peak learning rate (``optimizer.lr``): an optional
warmup followed by a decay phase that runs from the end of warmup to ``total_steps``.
Pure functions are easy to test, to plot and to reproduce exactly on resume; the
torch scheduler is a thin :class:`~torch.optim.lr_scheduler.LambdaLR` around them.

Conventions (the integrator and the tests rely on them):

* A warmup of ``W`` steps covers steps ``0..W-1`` and reaches the peak on step
  ``W-1``. Linear warmup is ``(step + 1) / W`` so that step 0 already trains (an LR
  of exactly 0 would waste the step); exponential warmup goes geometrically from
  ``warmup_start_ratio`` on step 0 to 1 on step ``W-1``.
* Decay progress is ``p = (step - W) / (total_steps - W)``: 0 on the first step after
  warmup and 1 at ``step == total_steps``, i.e. when training ends, as PyTorch's own
  schedulers do. Steps past ``total_steps`` keep the final value.
* Annealing families (linear, polynomial, cosine, cosine_restarts, wsd, onecycle)
  interpolate ``floor + (1 - floor) * shape(p)`` and so land on ``min_lr_ratio``.
* Multiplicative families (step, multistep, exponential, inverse_sqrt, plateau)
  scale the peak and are clamped at ``min_lr_ratio``.
* onecycle ignores ``warmup``/``warmup_fraction``/``warmup_steps``: its ``pct_start``
  ramp is its warmup.
"""

from __future__ import annotations

import bisect
import itertools
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch.optim.lr_scheduler import LambdaLR, LRScheduler

Multiplier = Callable[[int], float]

SCHEDULES: tuple[str, ...] = (
    "constant",
    "step",
    "multistep",
    "exponential",
    "linear",
    "polynomial",
    "cosine",
    "cosine_restarts",
    "onecycle",
    "wsd",
    "inverse_sqrt",
    "plateau",
)
WARMUPS: tuple[str, ...] = ("linear", "exponential", "none")
COOLDOWNS: tuple[str, ...] = ("linear", "cosine", "1-sqrt")
PLATEAU_MODES: tuple[str, ...] = ("min", "max")

# Keys every family shares (the warmup and the floor), with their defaults.
COMMON_DEFAULTS: dict[str, Any] = {
    "warmup": "none",
    "warmup_fraction": 0.0,
    "warmup_steps": None,
    "warmup_start_ratio": 0.01,
    "min_lr_ratio": 0.0,
}
# Used when a key is missing; conf/schedule/<name>.yaml spells the same values out.
FAMILY_DEFAULTS: dict[str, dict[str, Any]] = {
    "constant": {},
    "step": {"step_fraction": 0.3, "gamma": 0.1},
    "multistep": {"milestones": [0.5, 0.75], "gamma": 0.1},
    "exponential": {"decay_to": 0.01},
    "linear": {},
    "polynomial": {"power": 2.0},
    "cosine": {},
    "cosine_restarts": {"cycles": 3, "cycle_mult": 2.0},
    "onecycle": {"pct_start": 0.3, "div_factor": 25.0, "final_div_factor": 1.0e4},
    "wsd": {"decay_fraction": 0.2, "cooldown": "1-sqrt"},
    "inverse_sqrt": {},
    "plateau": {
        "factor": 0.5,
        "patience": 3,
        "threshold": 1.0e-4,
        "mode": "min",
        "monitor": "val_loss",
    },
}
_KNOWN_KEYS = frozenset({"name", *COMMON_DEFAULTS}).union(
    *(family.keys() for family in FAMILY_DEFAULTS.values())
)


class ScheduleError(ValueError):
    """A bad schedule config, reported as the config key, the bad value and the fix.

    Args:
        key: Dotted config key, e.g. ``schedule.gamma``.
        value: The value that was given.
        fix: What to do instead.
    """

    def __init__(self, key: str, value: object, fix: str) -> None:
        self.key, self.value, self.fix = key, value, fix
        super().__init__(f"{key}={value!r}: {fix}")


# --------------------------------------------------------------------------- validation


def _resolved(spec: Mapping[str, Any]) -> dict[str, Any]:
    """The spec with the common and family defaults filled in for missing keys."""
    family = FAMILY_DEFAULTS.get(spec.get("name", ""), {})
    return {**COMMON_DEFAULTS, **family, **spec}


def _is_number(value: object) -> bool:
    # bool is an int subclass, but `gamma: true` is a typo, never a number.
    return isinstance(value, int | float) and not isinstance(value, bool)


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _number(cfg: Mapping[str, Any], key: str) -> float:
    value = cfg[key]
    if not _is_number(value) or not math.isfinite(value):
        raise ScheduleError(f"schedule.{key}", value, "must be a finite number")
    return float(value)


def _check_range(
    cfg: Mapping[str, Any],
    key: str,
    *,
    low: float,
    high: float,
    low_open: bool,
    high_open: bool,
    extra: str = "",
) -> float:
    """Reads ``cfg[key]`` and checks it lies in the interval; returns it as a float."""
    value = _number(cfg, key)
    above = value > low if low_open else value >= low
    below = value < high if high_open else value <= high
    if not (above and below):
        interval = f"{'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
        raise ScheduleError(f"schedule.{key}", cfg[key], f"must be in {interval}{extra}")
    return value


def _check_choice(cfg: Mapping[str, Any], key: str, choices: Sequence[str]) -> str:
    value = cfg[key]
    if value not in choices:
        raise ScheduleError(f"schedule.{key}", value, f"use one of {', '.join(choices)}")
    return str(value)


def _check_int(cfg: Mapping[str, Any], key: str, *, low: int) -> int:
    value = cfg[key]
    if not _is_int(value) or value < low:
        raise ScheduleError(f"schedule.{key}", value, f"must be an integer >= {low}")
    return int(value)


def _validate_common(cfg: Mapping[str, Any], total_steps: int) -> None:
    _check_choice(cfg, "warmup", WARMUPS)
    _check_range(cfg, "warmup_fraction", low=0, high=1, low_open=False, high_open=True)
    warmup_steps = cfg["warmup_steps"]
    if warmup_steps is not None:
        _check_int(cfg, "warmup_steps", low=0)
        if warmup_steps >= total_steps:
            raise ScheduleError(
                "schedule.warmup_steps",
                warmup_steps,
                f"warmup must be shorter than training ({total_steps} steps); "
                "lower it or set it to null to use warmup_fraction",
            )
    _check_range(cfg, "warmup_start_ratio", low=0, high=1, low_open=True, high_open=False)
    _check_range(cfg, "min_lr_ratio", low=0, high=1, low_open=False, high_open=True)


def _validate_gamma(cfg: Mapping[str, Any]) -> None:
    _check_range(cfg, "gamma", low=0, high=1, low_open=True, high_open=False)


def _validate_step(cfg: Mapping[str, Any], total_steps: int) -> None:
    _validate_gamma(cfg)
    _check_range(cfg, "step_fraction", low=0, high=1, low_open=True, high_open=False)


def _validate_multistep(cfg: Mapping[str, Any], total_steps: int) -> None:
    _validate_gamma(cfg)
    milestones = cfg["milestones"]
    fix = "must be a non-empty, strictly increasing list of fractions of training in (0, 1)"
    if isinstance(milestones, str) or not isinstance(milestones, Sequence) or not milestones:
        raise ScheduleError("schedule.milestones", milestones, fix)
    values = list(milestones)
    in_range = all(_is_number(m) and 0 < m < 1 for m in values)
    if not in_range or any(a >= b for a, b in itertools.pairwise(values)):
        raise ScheduleError("schedule.milestones", milestones, fix)


def _validate_exponential(cfg: Mapping[str, Any], total_steps: int) -> None:
    _check_range(
        cfg,
        "decay_to",
        low=0,
        high=1,
        low_open=True,
        high_open=False,
        extra=" (the multiplier reached at the end of training)",
    )


def _validate_polynomial(cfg: Mapping[str, Any], total_steps: int) -> None:
    _check_range(cfg, "power", low=0, high=math.inf, low_open=True, high_open=True)


def _validate_cosine_restarts(cfg: Mapping[str, Any], total_steps: int) -> None:
    _check_int(cfg, "cycles", low=1)
    _check_range(cfg, "cycle_mult", low=1, high=math.inf, low_open=False, high_open=True)


def _validate_onecycle(cfg: Mapping[str, Any], total_steps: int) -> None:
    _check_range(cfg, "pct_start", low=0, high=1, low_open=True, high_open=True)
    if _onecycle_ramp_steps(cfg, total_steps) >= total_steps:
        raise ScheduleError(
            "schedule.pct_start",
            cfg["pct_start"],
            f"leaves no annealing step out of {total_steps}; lower it or train longer",
        )
    _check_range(cfg, "div_factor", low=1, high=math.inf, low_open=False, high_open=True)
    _check_range(cfg, "final_div_factor", low=1, high=math.inf, low_open=False, high_open=True)


def _validate_wsd(cfg: Mapping[str, Any], total_steps: int) -> None:
    _check_range(cfg, "decay_fraction", low=0, high=1, low_open=True, high_open=False)
    _check_choice(cfg, "cooldown", COOLDOWNS)


def _validate_inverse_sqrt(cfg: Mapping[str, Any], total_steps: int) -> None:
    if warmup_length(cfg, total_steps) == 0:
        raise ScheduleError(
            "schedule.warmup",
            cfg["warmup"],
            "inverse_sqrt uses the warmup length as its timescale; "
            "set warmup to linear or exponential with warmup_fraction or warmup_steps > 0",
        )


def _validate_plateau(cfg: Mapping[str, Any], total_steps: int) -> None:
    _check_range(cfg, "factor", low=0, high=1, low_open=True, high_open=True)
    _check_int(cfg, "patience", low=0)
    _check_range(cfg, "threshold", low=0, high=math.inf, low_open=False, high_open=True)
    _check_choice(cfg, "mode", PLATEAU_MODES)
    if not isinstance(cfg["monitor"], str) or not cfg["monitor"]:
        raise ScheduleError(
            "schedule.monitor", cfg["monitor"], "name the validation metric to watch, e.g. val_loss"
        )


def _no_family_params(cfg: Mapping[str, Any], total_steps: int) -> None:
    """Families without parameters of their own: nothing beyond the common keys to check."""


_VALIDATORS: dict[str, Callable[[Mapping[str, Any], int], None]] = {
    "constant": _no_family_params,
    "step": _validate_step,
    "multistep": _validate_multistep,
    "exponential": _validate_exponential,
    "linear": _no_family_params,
    "polynomial": _validate_polynomial,
    "cosine": _no_family_params,
    "cosine_restarts": _validate_cosine_restarts,
    "onecycle": _validate_onecycle,
    "wsd": _validate_wsd,
    "inverse_sqrt": _validate_inverse_sqrt,
    "plateau": _validate_plateau,
}


def validate_schedule(spec: Mapping[str, Any], total_steps: int) -> None:
    """Checks a schedule config before any training starts.

    Keys of other families are tolerated (config composition and search spaces may
    leave them in), keys that no family knows are rejected as typos.

    Args:
        spec: The ``schedule`` config as a plain mapping.
        total_steps: Number of optimizer steps of the run (``trainer.max_steps``).

    Raises:
        ScheduleError: Naming the first bad key, its value and the fix.
    """
    if not _is_int(total_steps) or total_steps < 1:
        raise ScheduleError("total_steps", total_steps, "must be an integer >= 1")
    name = spec.get("name")
    if name not in SCHEDULES:
        raise ScheduleError("schedule.name", name, f"use one of {', '.join(SCHEDULES)}")
    unknown = sorted(set(spec) - _KNOWN_KEYS)
    if unknown:
        raise ScheduleError(
            f"schedule.{unknown[0]}",
            spec[unknown[0]],
            f"unknown schedule key; known keys are {', '.join(sorted(_KNOWN_KEYS))}",
        )
    cfg = _resolved(spec)
    _validate_common(cfg, total_steps)
    _VALIDATORS[str(name)](cfg, total_steps)


# --------------------------------------------------------------------------- warmup


def _onecycle_ramp_steps(cfg: Mapping[str, Any], total_steps: int) -> int:
    return max(1, round(float(cfg["pct_start"]) * total_steps))


def warmup_length(spec: Mapping[str, Any], total_steps: int) -> int:
    """Number of warmup steps the spec resolves to for a run of ``total_steps``.

    ``warmup_steps`` overrides ``warmup_fraction``; for onecycle it is the length of
    the ``pct_start`` ramp. The multiplier is within ``[min_lr_ratio, 1]`` from this
    step on.
    """
    cfg = _resolved(spec)
    if cfg["name"] == "onecycle":
        return _onecycle_ramp_steps(cfg, total_steps)
    if cfg["warmup"] == "none":
        return 0
    if cfg["warmup_steps"] is not None:
        return int(cfg["warmup_steps"])
    # round() rather than int(): 0.29 * 100 is 28.999999999999996.
    return min(round(float(cfg["warmup_fraction"]) * total_steps), total_steps - 1)


def _linear_warmup(warmup_steps: int) -> Multiplier:
    def multiplier(step: int) -> float:
        return (step + 1) / warmup_steps

    return multiplier


def _exponential_warmup(warmup_steps: int, start_ratio: float) -> Multiplier:
    def multiplier(step: int) -> float:
        if warmup_steps == 1:
            return 1.0
        return float(start_ratio ** ((warmup_steps - 1 - step) / (warmup_steps - 1)))

    return multiplier


def _warmup(cfg: Mapping[str, Any], warmup_steps: int) -> Multiplier:
    if cfg["warmup"] == "exponential":
        return _exponential_warmup(warmup_steps, float(cfg["warmup_start_ratio"]))
    return _linear_warmup(warmup_steps)


# --------------------------------------------------------------------------- decays
# Each builder gets the resolved config, total_steps and the warmup length W, and
# returns the multiplier for steps W..total_steps (the caller clamps the step).

DecayBuilder = Callable[[Mapping[str, Any], int, int], Multiplier]


def _progress(step: int, total_steps: int, warmup_steps: int) -> float:
    return (step - warmup_steps) / (total_steps - warmup_steps)


def _annealed(cfg: Mapping[str, Any], total_steps: int, warmup_steps: int) -> Multiplier:
    """Decay from 1 to the floor following the family's shape (1 -> 0 over progress [0, 1])."""
    floor = float(cfg["min_lr_ratio"])
    shape = _SHAPES[cfg["name"]](cfg)

    def multiplier(step: int) -> float:
        return floor + (1 - floor) * shape(_progress(step, total_steps, warmup_steps))

    return multiplier


def _cosine_shape(progress: float) -> float:
    return 0.5 * (1 + math.cos(math.pi * progress))


def _polynomial_shape(power: float) -> Callable[[float], float]:
    return lambda progress: (1 - progress) ** power


def _restarts_shape(cycles: int, cycle_mult: float) -> Callable[[float], float]:
    """SGDR: ``cycles`` cosine cycles, each ``cycle_mult`` times longer than the one before."""
    lengths = [cycle_mult**i for i in range(cycles)]
    total = sum(lengths)
    starts = [sum(lengths[:i]) / total for i in range(cycles)]

    def shape(progress: float) -> float:
        cycle = max(0, bisect.bisect_right(starts, progress) - 1)
        local = (progress - starts[cycle]) / (lengths[cycle] / total)
        return _cosine_shape(min(local, 1.0))

    return shape


def _wsd_shape(decay_fraction: float, cooldown: str) -> Callable[[float], float]:
    """Warmup-stable-decay: hold the peak, then cool down over the last ``decay_fraction``."""
    cooldowns: dict[str, Callable[[float], float]] = {
        "linear": lambda q: 1 - q,
        "cosine": _cosine_shape,
        "1-sqrt": lambda q: 1 - math.sqrt(q),
    }
    cool = cooldowns[cooldown]
    stable_until = 1 - decay_fraction

    def shape(progress: float) -> float:
        if progress <= stable_until:
            return 1.0
        return cool((progress - stable_until) / decay_fraction)

    return shape


def _constant(cfg: Mapping[str, Any], total_steps: int, warmup_steps: int) -> Multiplier:
    return lambda step: 1.0


def _step(cfg: Mapping[str, Any], total_steps: int, warmup_steps: int) -> Multiplier:
    floor, gamma = float(cfg["min_lr_ratio"]), float(cfg["gamma"])
    # Integer step size, as StepLR, so decays land on whole steps whatever the rounding.
    step_size = max(1, round(float(cfg["step_fraction"]) * (total_steps - warmup_steps)))
    return lambda step: max(floor, gamma ** ((step - warmup_steps) // step_size))


def _multistep(cfg: Mapping[str, Any], total_steps: int, warmup_steps: int) -> Multiplier:
    floor, gamma = float(cfg["min_lr_ratio"]), float(cfg["gamma"])
    # Milestones are fractions of the whole run; one inside warmup applies when warmup ends.
    milestones = [round(float(m) * total_steps) for m in cfg["milestones"]]
    return lambda step: max(floor, gamma ** bisect.bisect_right(milestones, step))


def _exponential(cfg: Mapping[str, Any], total_steps: int, warmup_steps: int) -> Multiplier:
    # decay_to (the total decay over the run) rather than a per-step gamma keeps a
    # search space meaningful whatever max_steps is.
    floor, decay_to = float(cfg["min_lr_ratio"]), float(cfg["decay_to"])
    return lambda step: max(floor, decay_to ** _progress(step, total_steps, warmup_steps))


def _inverse_sqrt(cfg: Mapping[str, Any], total_steps: int, warmup_steps: int) -> Multiplier:
    # 1 on the last warmup step (step + 1 == W), like the linear warmup's peak.
    floor = float(cfg["min_lr_ratio"])
    return lambda step: max(floor, math.sqrt(warmup_steps / (step + 1)))


_SHAPES: dict[str, Callable[[Mapping[str, Any]], Callable[[float], float]]] = {
    "linear": lambda cfg: _polynomial_shape(1.0),
    "polynomial": lambda cfg: _polynomial_shape(float(cfg["power"])),
    "cosine": lambda cfg: _cosine_shape,
    "cosine_restarts": lambda cfg: _restarts_shape(int(cfg["cycles"]), float(cfg["cycle_mult"])),
    "wsd": lambda cfg: _wsd_shape(float(cfg["decay_fraction"]), str(cfg["cooldown"])),
}

_DECAYS: dict[str, DecayBuilder] = {
    "constant": _constant,
    "step": _step,
    "multistep": _multistep,
    "exponential": _exponential,
    "linear": _annealed,
    "polynomial": _annealed,
    "cosine": _annealed,
    "cosine_restarts": _annealed,
    "wsd": _annealed,
    "inverse_sqrt": _inverse_sqrt,
    # The reduction factor lives in PlateauScheduler; the pure part is flat.
    "plateau": _constant,
}


def _onecycle(cfg: Mapping[str, Any], total_steps: int) -> Multiplier:
    """One-cycle: cosine ramp from ``1/div_factor`` to 1, then cosine anneal to the end ratio.

    The end ratio is ``1 / (div_factor * final_div_factor)`` as in
    :class:`torch.optim.lr_scheduler.OneCycleLR`, raised to ``min_lr_ratio`` if lower.
    """
    ramp_steps = _onecycle_ramp_steps(cfg, total_steps)
    div_factor = float(cfg["div_factor"])
    start = 1 / div_factor
    end = max(float(cfg["min_lr_ratio"]), start / float(cfg["final_div_factor"]))

    def multiplier(step: int) -> float:
        if step < ramp_steps:
            ramp = step / (ramp_steps - 1) if ramp_steps > 1 else 1.0
            return start + (1 - start) * (1 - _cosine_shape(ramp))
        return end + (1 - end) * _cosine_shape(_progress(step, total_steps, ramp_steps))

    return multiplier


def lr_multiplier(spec: Mapping[str, Any], total_steps: int) -> Multiplier:
    """The schedule as a pure function ``step -> multiplier of the peak LR``.

    For plateau it is the warmup followed by 1: the reduction factor depends on the
    validation metric and is applied by :class:`PlateauScheduler`.

    Args:
        spec: The ``schedule`` config as a plain mapping.
        total_steps: Number of optimizer steps of the run.

    Raises:
        ScheduleError: If the spec is invalid.
    """
    validate_schedule(spec, total_steps)
    cfg = _resolved(spec)
    if cfg["name"] == "onecycle":
        schedule = _onecycle(cfg, total_steps)
    else:
        warmup_steps = warmup_length(cfg, total_steps)
        schedule = _compose(
            _warmup(cfg, warmup_steps),
            _DECAYS[cfg["name"]](cfg, total_steps, warmup_steps),
            warmup_steps,
        )

    def multiplier(step: int) -> float:
        # Past the end the final value holds; before step 0 nothing has happened yet.
        return schedule(min(max(step, 0), total_steps))

    return multiplier


def _compose(warmup: Multiplier, decay: Multiplier, warmup_steps: int) -> Multiplier:
    return lambda step: warmup(step) if step < warmup_steps else decay(step)


def lr_curve(spec: Mapping[str, Any], total_steps: int) -> list[float]:
    """Multiplier at every step ``0..total_steps-1``, for plotting and logging."""
    multiplier = lr_multiplier(spec, total_steps)
    return [multiplier(step) for step in range(total_steps)]


# --------------------------------------------------------------------------- torch


class PlateauScheduler(LambdaLR):
    """Warmup, then reduce-on-plateau driven by :meth:`report`, as a per-step LambdaLR.

    Unlike :class:`torch.optim.lr_scheduler.ReduceLROnPlateau` it is stepped every
    optimizer step like the other schedules (so warmup works), and the reduction
    comes from :meth:`report`. The reduction happens on the ``patience``-th
    non-improving report in a row (torch waits for one more), and takes effect at
    once. State (``scale``, ``best``, ``bad_reports``) is in :meth:`state_dict`.
    The spec's ``monitor`` key names the metric for the trainer to report; the
    scheduler only sees the values.

    Args:
        optimizer: The wrapped optimizer.
        base: Pure multiplier without the reduction (warmup then 1).
        factor: Multiplies the LR on each reduction, in (0, 1).
        patience: Non-improving reports in a row that trigger a reduction.
        threshold: Relative improvement over the best value needed to count as one.
        mode: ``min`` if lower metric values are better, ``max`` otherwise.
        min_lr_ratio: Floor of the reduction scale.
    """

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        base: Multiplier,
        *,
        factor: float,
        patience: int,
        threshold: float,
        mode: str,
        min_lr_ratio: float,
    ) -> None:
        # Set before LambdaLR.__init__, which already evaluates the multiplier.
        self.factor, self.patience, self.threshold = factor, patience, threshold
        self.mode, self.min_lr_ratio = mode, min_lr_ratio
        self.scale = 1.0
        self.best: float | None = None
        self.bad_reports = 0
        super().__init__(optimizer, lambda step: base(step) * self.scale)

    def report(self, value: float) -> None:
        """Feeds the monitored metric after a validation; may reduce the LR.

        Args:
            value: The metric value; NaN counts as not improving.
        """
        if self._improves(value):
            self.best, self.bad_reports = value, 0
            return
        self.bad_reports += 1
        if self.bad_reports >= self.patience:
            self.scale = max(self.scale * self.factor, self.min_lr_ratio)
            self.bad_reports = 0
            self._apply_lr()

    def _improves(self, value: float) -> bool:
        if math.isnan(value):
            return False
        if self.best is None:
            return True
        # abs() keeps "relative" meaningful for negative metrics.
        margin = self.threshold * abs(self.best)
        if self.mode == "min":
            return value < self.best - margin
        return value > self.best + margin

    def _apply_lr(self) -> None:
        multiplier = self.lr_lambdas[0](self.last_epoch)
        for group, base_lr in zip(self.optimizer.param_groups, self.base_lrs, strict=True):
            group["lr"] = base_lr * multiplier
        self._last_lr = [group["lr"] for group in self.optimizer.param_groups]


def build_scheduler(
    optimizer: torch.optim.Optimizer, spec: Mapping[str, Any], total_steps: int
) -> LRScheduler:
    """The torch scheduler for a schedule config, to be stepped once per optimizer step.

    The optimizer's current LR of each group is taken as its peak. For plateau the
    result is a :class:`PlateauScheduler`; call its ``report`` after each validation.

    Args:
        optimizer: The optimizer whose groups' LRs are scheduled.
        spec: The ``schedule`` config as a plain mapping.
        total_steps: Number of optimizer steps of the run.

    Raises:
        ScheduleError: If the spec is invalid.
    """
    multiplier = lr_multiplier(spec, total_steps)
    cfg = _resolved(spec)
    if cfg["name"] != "plateau":
        return LambdaLR(optimizer, multiplier)
    return PlateauScheduler(
        optimizer,
        multiplier,
        factor=float(cfg["factor"]),
        patience=int(cfg["patience"]),
        threshold=float(cfg["threshold"]),
        mode=str(cfg["mode"]),
        min_lr_ratio=float(cfg["min_lr_ratio"]),
    )
