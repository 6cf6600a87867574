"""Schedule specs: the families, their keys and defaults, and their validation.

Split from :mod:`tuner.schedule.functions` (the multipliers and the torch schedulers), which
re-exports every public name here.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

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
