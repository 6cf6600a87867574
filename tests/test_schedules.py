"""Tests of tuner.schedule.functions: closed forms, invariants, the torch wrapper, errors, configs."""

from __future__ import annotations

import itertools
import math
from pathlib import Path
from typing import Any

import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from omegaconf import OmegaConf

from tuner.schedule.functions import (
    FAMILY_DEFAULTS,
    SCHEDULES,
    PlateauScheduler,
    ScheduleError,
    build_scheduler,
    lr_curve,
    lr_multiplier,
    validate_schedule,
    warmup_length,
)

torch.set_num_threads(1)

SCHEDULE_DIR = Path(__file__).resolve().parents[1] / "conf" / "schedule"
MONOTONE = (
    "step",
    "multistep",
    "exponential",
    "linear",
    "polynomial",
    "cosine",
    "wsd",
    "inverse_sqrt",
)
COMMON_KEYS = {"name", "warmup", "warmup_fraction", "warmup_steps", "min_lr_ratio"}

# Closed forms on a run of 110 steps with 10 linear warmup steps: the decay phase is
# 100 steps long, so progress p is (step - 10) / 100.
TOTAL, WARMUP = 110, 10


def _spec(name: str, **params: Any) -> dict[str, Any]:
    return {"name": name, "warmup": "linear", "warmup_steps": WARMUP, **params}


CLOSED_FORMS: list[tuple[dict[str, Any], dict[int, float]]] = [
    (_spec("constant", min_lr_ratio=0.5), {10: 1.0, 60: 1.0, 110: 1.0}),
    (_spec("step", step_fraction=0.5, gamma=0.5), {10: 1.0, 59: 1.0, 60: 0.5, 110: 0.25}),
    (_spec("step", step_fraction=0.5, gamma=0.1, min_lr_ratio=0.05), {60: 0.1, 110: 0.05}),
    (
        _spec("multistep", milestones=[0.5, 0.75], gamma=0.5),
        {10: 1.0, 54: 1.0, 55: 0.5, 81: 0.5, 82: 0.25, 110: 0.25},
    ),
    (_spec("multistep", milestones=[0.05], gamma=0.5), {5: 0.6, 10: 0.5}),
    (_spec("exponential", decay_to=0.25), {10: 1.0, 60: 0.5, 110: 0.25}),
    (_spec("exponential", decay_to=0.01, min_lr_ratio=0.2), {60: 0.2, 110: 0.2}),
    (_spec("linear", min_lr_ratio=0.1), {10: 1.0, 60: 0.55, 110: 0.1}),
    (_spec("polynomial", power=2.0, min_lr_ratio=0.1), {10: 1.0, 60: 0.325, 110: 0.1}),
    (_spec("cosine", min_lr_ratio=0.1), {10: 1.0, 35: 0.1 + 0.9 * (0.5 + 0.5**1.5), 60: 0.55}),
    (_spec("cosine", min_lr_ratio=0.1), {110: 0.1, 500: 0.1}),
    (_spec("cosine_restarts", cycles=2, cycle_mult=1.0), {10: 1.0, 35: 0.5, 60: 1.0, 110: 0.0}),
    (_spec("cosine_restarts", cycles=2, cycle_mult=3.0), {10: 1.0, 35: 1.0, 110: 0.0}),
    (_spec("wsd", decay_fraction=0.2, cooldown="linear"), {10: 1.0, 90: 1.0, 100: 0.5, 110: 0.0}),
    (_spec("wsd", decay_fraction=0.2, cooldown="cosine"), {90: 1.0, 100: 0.5, 110: 0.0}),
    (
        _spec("wsd", decay_fraction=0.2, cooldown="1-sqrt", min_lr_ratio=0.1),
        {90: 1.0, 100: 0.1 + 0.9 * (1 - math.sqrt(0.5)), 110: 0.1},
    ),
    (_spec("inverse_sqrt"), {9: 1.0, 10: math.sqrt(10 / 11), 39: 0.5, 110: math.sqrt(10 / 111)}),
    (_spec("inverse_sqrt", min_lr_ratio=0.4), {39: 0.5, 110: 0.4}),
    (_spec("plateau", min_lr_ratio=0.1), {10: 1.0, 60: 1.0, 110: 1.0}),
]


@pytest.mark.parametrize(("spec", "expected"), CLOSED_FORMS, ids=lambda v: str(v))
def test_closed_form_values(spec: dict[str, Any], expected: dict[int, float]) -> None:
    multiplier = lr_multiplier(spec, TOTAL)
    for step, value in expected.items():
        assert multiplier(step) == pytest.approx(value), step


@pytest.mark.parametrize("name", [n for n in SCHEDULES if n != "onecycle"])
def test_linear_warmup_starts_above_zero_and_peaks_on_last_warmup_step(name: str) -> None:
    multiplier = lr_multiplier(_spec(name), TOTAL)
    assert [multiplier(step) for step in (0, 4, 9)] == pytest.approx([0.1, 0.5, 1.0])


@pytest.mark.parametrize("name", [n for n in SCHEDULES if n != "onecycle"])
def test_exponential_warmup_is_geometric_from_start_ratio(name: str) -> None:
    spec = _spec(name, warmup="exponential", warmup_steps=11, warmup_start_ratio=0.01)
    multiplier = lr_multiplier(spec, TOTAL)
    assert [multiplier(step) for step in (0, 5, 10)] == pytest.approx([0.01, 0.1, 1.0])


def test_warmup_length_resolution() -> None:
    cosine = {"name": "cosine", "warmup": "linear", "warmup_fraction": 0.05}
    assert warmup_length(cosine, 1000) == 50
    assert warmup_length({**cosine, "warmup_fraction": 0.29}, 100) == 29
    assert warmup_length({**cosine, "warmup_steps": 7}, 1000) == 7
    assert warmup_length({**cosine, "warmup": "none"}, 1000) == 0
    assert lr_multiplier({**cosine, "warmup": "none"}, 1000)(0) == 1.0


def test_onecycle_ramps_over_pct_start_and_ignores_warmup() -> None:
    spec = {
        "name": "onecycle",
        "warmup": "linear",
        "warmup_steps": 100,
        "pct_start": 0.25,
        "div_factor": 10.0,
        "final_div_factor": 10.0,
    }
    multiplier = lr_multiplier(spec, 120)
    assert warmup_length(spec, 120) == 30
    assert multiplier(0) == pytest.approx(0.1)
    assert multiplier(29) == pytest.approx(1.0)
    assert multiplier(30) == pytest.approx(1.0)
    assert multiplier(75) == pytest.approx(0.01 + 0.99 * 0.5)
    assert multiplier(120) == pytest.approx(0.01)
    assert lr_multiplier({**spec, "min_lr_ratio": 0.2}, 120)(120) == pytest.approx(0.2)


def test_lr_curve_lists_every_training_step() -> None:
    spec = _spec("linear")
    curve = lr_curve(spec, TOTAL)
    assert len(curve) == TOTAL
    assert curve == [lr_multiplier(spec, TOTAL)(step) for step in range(TOTAL)]


# --------------------------------------------------------------------------- properties

_FRACTION = st.floats(0.01, 1.0)
_FAMILY_PARAMS: dict[str, st.SearchStrategy[dict[str, Any]]] = {
    "constant": st.fixed_dictionaries({}),
    "step": st.fixed_dictionaries({"step_fraction": _FRACTION, "gamma": st.floats(0.01, 1.0)}),
    "multistep": st.fixed_dictionaries(
        {
            "milestones": st.lists(st.floats(0.01, 0.99), min_size=1, max_size=4, unique=True).map(sorted),
            "gamma": st.floats(0.01, 1.0),
        }
    ),
    "exponential": st.fixed_dictionaries({"decay_to": st.floats(1e-4, 1.0)}),
    "linear": st.fixed_dictionaries({}),
    "polynomial": st.fixed_dictionaries({"power": st.floats(0.1, 5.0)}),
    "cosine": st.fixed_dictionaries({}),
    "cosine_restarts": st.fixed_dictionaries(
        {"cycles": st.integers(1, 5), "cycle_mult": st.floats(1.0, 3.0)}
    ),
    "onecycle": st.fixed_dictionaries(
        {
            "pct_start": st.floats(0.01, 0.99),
            "div_factor": st.floats(1.0, 100.0),
            "final_div_factor": st.floats(1.0, 1e4),
        }
    ),
    "wsd": st.fixed_dictionaries(
        {"decay_fraction": _FRACTION, "cooldown": st.sampled_from(["linear", "cosine", "1-sqrt"])}
    ),
    "inverse_sqrt": st.fixed_dictionaries({}),
    "plateau": st.fixed_dictionaries({}),
}


@st.composite
def schedules(draw: st.DrawFn, names: tuple[str, ...] = SCHEDULES) -> tuple[dict[str, Any], int]:
    """A random valid (spec, total_steps)."""
    name = draw(st.sampled_from(names))
    total_steps = draw(st.integers(2, 300))
    warmup = draw(st.sampled_from(["linear", "exponential", "none"]))
    if name == "inverse_sqrt" and warmup == "none":
        warmup = "linear"
    spec: dict[str, Any] = {
        "name": name,
        "warmup": warmup,
        "warmup_fraction": draw(st.floats(0.0, 0.5)),
        "warmup_steps": draw(st.none() | st.integers(0, total_steps - 1)),
        "warmup_start_ratio": draw(st.floats(1e-3, 1.0)),
        "min_lr_ratio": draw(st.floats(0.0, 0.99)),
        **draw(_FAMILY_PARAMS[name]),
    }
    if name in ("inverse_sqrt", "onecycle"):
        assume(0 < warmup_length(spec, total_steps) < total_steps)
    validate_schedule(spec, total_steps)
    return spec, total_steps


_TOL = 1e-9


@settings(max_examples=150, deadline=None)
@given(schedules())
def test_multiplier_stays_within_floor_and_peak_after_warmup(
    case: tuple[dict[str, Any], int],
) -> None:
    spec, total_steps = case
    multiplier = lr_multiplier(spec, total_steps)
    warmup_steps = warmup_length(spec, total_steps)
    floor = spec["min_lr_ratio"]
    for step in range(warmup_steps):
        assert 0 < multiplier(step) <= 1 + _TOL
    for step in range(warmup_steps, total_steps + 3):
        assert floor - _TOL <= multiplier(step) <= 1 + _TOL, step


@settings(max_examples=100, deadline=None)
@given(schedules(MONOTONE))
def test_monotone_families_never_increase_after_warmup(case: tuple[dict[str, Any], int]) -> None:
    spec, total_steps = case
    multiplier = lr_multiplier(spec, total_steps)
    values = [multiplier(step) for step in range(warmup_length(spec, total_steps), total_steps + 1)]
    assert all(b <= a + _TOL for a, b in itertools.pairwise(values))


@settings(max_examples=100, deadline=None)
@given(schedules())
def test_warmup_never_decreases(case: tuple[dict[str, Any], int]) -> None:
    spec, total_steps = case
    multiplier = lr_multiplier(spec, total_steps)
    values = [multiplier(step) for step in range(warmup_length(spec, total_steps))]
    assert all(b >= a - _TOL for a, b in itertools.pairwise(values))


# --------------------------------------------------------------------------- torch


def _optimizer(*lrs: float) -> torch.optim.Optimizer:
    groups = [{"params": [torch.nn.Parameter(torch.zeros(1))], "lr": lr} for lr in lrs]
    return torch.optim.SGD(groups)


@settings(max_examples=30, deadline=None)
@given(schedules())
def test_scheduler_lr_is_peak_times_multiplier(case: tuple[dict[str, Any], int]) -> None:
    spec, total_steps = case
    optimizer = _optimizer(0.3, 0.01)
    scheduler = build_scheduler(optimizer, spec, total_steps)
    multiplier = lr_multiplier(spec, total_steps)
    for step in range(total_steps):
        expected = [0.3 * multiplier(step), 0.01 * multiplier(step)]
        assert [group["lr"] for group in optimizer.param_groups] == pytest.approx(expected)
        optimizer.step()
        scheduler.step()


def _plateau(**params: Any) -> tuple[torch.optim.Optimizer, PlateauScheduler]:
    optimizer = _optimizer(1.0)
    spec = {"name": "plateau", "factor": 0.5, "patience": 2, "threshold": 0.0, **params}
    scheduler = build_scheduler(optimizer, spec, 100)
    assert isinstance(scheduler, PlateauScheduler)
    return optimizer, scheduler


def _lr(optimizer: torch.optim.Optimizer) -> float:
    return float(optimizer.param_groups[0]["lr"])


def test_plateau_reduces_on_the_patience_th_bad_report_and_not_before() -> None:
    optimizer, scheduler = _plateau()
    for value, expected in [(1.0, 1.0), (1.0, 1.0), (1.0, 0.5), (2.0, 0.5), (0.9, 0.5)]:
        scheduler.report(value)
        assert _lr(optimizer) == pytest.approx(expected)
    scheduler.report(0.9)
    scheduler.report(0.8)  # an improvement resets the count
    scheduler.report(0.8)
    assert _lr(optimizer) == pytest.approx(0.5)
    scheduler.report(0.8)
    assert _lr(optimizer) == pytest.approx(0.25)
    optimizer.step()
    scheduler.step()
    assert _lr(optimizer) == pytest.approx(0.25)


def test_plateau_threshold_is_relative_and_mode_max_flips_improvement() -> None:
    optimizer, scheduler = _plateau(threshold=0.1, patience=1)
    scheduler.report(1.0)
    scheduler.report(0.95)  # not 10 % better
    assert _lr(optimizer) == pytest.approx(0.5)
    optimizer, scheduler = _plateau(mode="max", patience=1)
    scheduler.report(1.0)
    scheduler.report(2.0)
    assert _lr(optimizer) == pytest.approx(1.0)
    scheduler.report(1.5)
    assert _lr(optimizer) == pytest.approx(0.5)


def test_plateau_never_goes_below_floor_and_nan_counts_as_bad() -> None:
    optimizer, scheduler = _plateau(factor=0.1, patience=1, min_lr_ratio=0.05)
    for value in [1.0, math.nan, math.nan, math.nan]:
        scheduler.report(value)
    assert _lr(optimizer) == pytest.approx(0.05)


def test_plateau_scales_warmup_and_survives_state_dict_round_trip() -> None:
    spec = {"name": "plateau", "warmup": "linear", "warmup_steps": 4, "patience": 1}
    optimizer = _optimizer(1.0)
    scheduler = build_scheduler(optimizer, {**spec, "factor": 0.5}, 100)
    assert isinstance(scheduler, PlateauScheduler)
    scheduler.report(1.0)
    scheduler.report(1.0)
    assert _lr(optimizer) == pytest.approx(0.25 * 0.5)
    state = scheduler.state_dict()
    restored_optimizer = _optimizer(1.0)
    restored = build_scheduler(restored_optimizer, {**spec, "factor": 0.5}, 100)
    restored.load_state_dict(state)
    for _ in range(5):
        restored_optimizer.step()
        restored.step()
    assert _lr(restored_optimizer) == pytest.approx(0.5)


# --------------------------------------------------------------------------- errors

ERROR_CASES: list[tuple[dict[str, Any], str]] = [
    ({"name": "cosin"}, "schedule.name"),
    ({"name": "cosine", "warmup": "quadratic"}, "schedule.warmup"),
    ({"name": "cosine", "warmup": "linear", "warmup_fraction": 1.0}, "schedule.warmup_fraction"),
    ({"name": "cosine", "warmup_fraction": -0.1}, "schedule.warmup_fraction"),
    ({"name": "cosine", "warmup": "linear", "warmup_steps": 1000}, "schedule.warmup_steps"),
    ({"name": "cosine", "warmup_steps": 1.5}, "schedule.warmup_steps"),
    ({"name": "cosine", "warmup_start_ratio": 0.0}, "schedule.warmup_start_ratio"),
    ({"name": "cosine", "min_lr_ratio": 1.0}, "schedule.min_lr_ratio"),
    ({"name": "cosine", "min_lr_ratio": -0.1}, "schedule.min_lr_ratio"),
    ({"name": "cosine", "gama": 0.1}, "schedule.gama"),
    ({"name": "step", "gamma": 0.0}, "schedule.gamma"),
    ({"name": "step", "gamma": 1.5}, "schedule.gamma"),
    ({"name": "step", "gamma": True}, "schedule.gamma"),
    ({"name": "step", "step_fraction": 0.0}, "schedule.step_fraction"),
    ({"name": "multistep", "gamma": 2.0}, "schedule.gamma"),
    ({"name": "multistep", "milestones": [0.8, 0.5]}, "schedule.milestones"),
    ({"name": "multistep", "milestones": []}, "schedule.milestones"),
    ({"name": "multistep", "milestones": [1.2]}, "schedule.milestones"),
    ({"name": "exponential", "decay_to": 0.0}, "schedule.decay_to"),
    ({"name": "polynomial", "power": 0.0}, "schedule.power"),
    ({"name": "cosine_restarts", "cycles": 0}, "schedule.cycles"),
    ({"name": "cosine_restarts", "cycle_mult": 0.5}, "schedule.cycle_mult"),
    ({"name": "onecycle", "pct_start": 1.0}, "schedule.pct_start"),
    ({"name": "onecycle", "pct_start": 0.9999}, "schedule.pct_start"),
    ({"name": "onecycle", "div_factor": 0.5}, "schedule.div_factor"),
    ({"name": "onecycle", "final_div_factor": 0.0}, "schedule.final_div_factor"),
    ({"name": "wsd", "decay_fraction": 0.0}, "schedule.decay_fraction"),
    ({"name": "wsd", "cooldown": "exp"}, "schedule.cooldown"),
    ({"name": "inverse_sqrt", "warmup": "none"}, "schedule.warmup"),
    ({"name": "plateau", "factor": 1.0}, "schedule.factor"),
    ({"name": "plateau", "patience": -1}, "schedule.patience"),
    ({"name": "plateau", "threshold": -1.0}, "schedule.threshold"),
    ({"name": "plateau", "mode": "up"}, "schedule.mode"),
    ({"name": "plateau", "monitor": ""}, "schedule.monitor"),
]


@pytest.mark.parametrize(("spec", "key"), ERROR_CASES, ids=lambda v: str(v))
def test_schedule_errors_name_the_key(spec: dict[str, Any], key: str) -> None:
    with pytest.raises(ScheduleError) as info:
        validate_schedule(spec, 1000)
    assert info.value.key == key
    assert str(info.value).startswith(f"{key}={info.value.value!r}: ")
    with pytest.raises(ScheduleError):
        build_scheduler(_optimizer(1.0), spec, 1000)


def test_schedule_error_shape_and_valid_names_in_fix() -> None:
    error = ScheduleError("schedule.gamma", 2.0, "must be in (0, 1]")
    assert isinstance(error, ValueError)
    assert (error.key, error.value, error.fix) == ("schedule.gamma", 2.0, "must be in (0, 1]")
    assert str(error) == "schedule.gamma=2.0: must be in (0, 1]"
    with pytest.raises(ScheduleError) as info:
        validate_schedule({"name": "cosin"}, 1000)
    assert all(name in info.value.fix for name in SCHEDULES)
    with pytest.raises(ScheduleError) as info:
        validate_schedule({"name": "cosine"}, 0)
    assert info.value.key == "total_steps"


def test_keys_of_other_families_are_tolerated() -> None:
    validate_schedule({"name": "cosine", "gamma": 5.0, "milestones": "junk"}, 1000)


# --------------------------------------------------------------------------- configs

SCHEDULE_FILES = sorted(SCHEDULE_DIR.glob("*.yaml"))


def test_every_family_has_a_config_file() -> None:
    names = {path.stem for path in SCHEDULE_FILES}
    assert set(SCHEDULES) | {"warmup_cosine", "warmup_linear"} <= names


@pytest.mark.parametrize("path", SCHEDULE_FILES, ids=lambda p: p.stem)
def test_config_file_is_valid_and_builds(path: Path) -> None:
    container = OmegaConf.to_container(OmegaConf.load(path))
    assert isinstance(container, dict)
    spec = {str(key): value for key, value in container.items()}
    assert COMMON_KEYS | set(FAMILY_DEFAULTS[spec["name"]]) <= set(spec)
    assert spec["warmup_steps"] is None
    validate_schedule(spec, 1000)
    scheduler = build_scheduler(_optimizer(0.1), spec, 1000)
    scheduler.step()
