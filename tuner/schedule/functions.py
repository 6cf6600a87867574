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
import math
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch.optim.lr_scheduler import LambdaLR, LRScheduler

from tuner.schedule.spec import (  # noqa: F401  (re-exported: the public face is tuner.schedule.functions)
    COMMON_DEFAULTS,
    COOLDOWNS,
    FAMILY_DEFAULTS,
    PLATEAU_MODES,
    SCHEDULES,
    WARMUPS,
    ScheduleError,
    _onecycle_ramp_steps,
    _resolved,
    validate_schedule,
    warmup_length,
)

Multiplier = Callable[[int], float]


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


#: Cooldown shapes: 1 at the start of a cooldown (q = 0), 0 at its end (q = 1). Shared by
#: wsd's decay phase and the cooldown probes (:mod:`tuner.training.probe`).
COOLDOWN_SHAPES: dict[str, Callable[[float], float]] = {
    "linear": lambda q: 1 - q,
    "cosine": lambda q: _cosine_shape(q),
    "1-sqrt": lambda q: 1 - math.sqrt(q),
}


def _wsd_shape(decay_fraction: float, cooldown: str) -> Callable[[float], float]:
    """Warmup-stable-decay: hold the peak, then cool down over the last ``decay_fraction``."""
    cool = COOLDOWN_SHAPES[cooldown]
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
