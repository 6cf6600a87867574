"""The search space: parsing, conditional sampling, bounds, log scale, grids."""

from __future__ import annotations

import optuna
import pytest

from tuner.errors import UserError
from tuner.search.space import apply, grid, parse_space, suggest

SPACE = {
    "lr": {"path": "optimizer.lr", "type": "float", "low": 1e-4, "high": 1.0},
    "schedule": {"path": "schedule.name", "type": "categorical", "choices": ["cosine", "step"]},
    "gamma": {
        "path": "schedule.warmup_fraction",
        "type": "float",
        "low": 0.1,
        "high": 0.9,
        "when": {"schedule": "step"},
    },
    "momentum": {
        "path": "optimizer.lr",
        "type": "float",
        "low": 0.5,
        "high": 0.9,
        "when": {"optimizer.name": "sgd"},
    },
}


def test_lr_is_log_scale_unless_said_otherwise(compose_cfg):
    cfg = compose_cfg()
    specs = {s.name: s for s in parse_space(SPACE, cfg)}
    assert specs["lr"].log and not specs["gamma"].log
    linear = parse_space({"lr": {**SPACE["lr"], "log": False}}, cfg)
    assert not linear[0].log


def test_conditional_parameters_appear_only_with_their_parent(compose_cfg):
    cfg = compose_cfg("optimizer=adam")
    specs = parse_space(SPACE, cfg)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    seen = {"cosine": set(), "step": set()}
    for _ in range(30):
        trial = study.ask()
        values = suggest(trial, specs, cfg)
        seen[values["schedule"]] |= set(values)
        study.tell(trial, 0.0)
    assert seen["cosine"] == {"lr", "schedule"}
    assert seen["step"] == {"lr", "schedule", "gamma"}  # momentum only for SGD


def test_apply_writes_each_value_at_its_path(compose_cfg):
    cfg = compose_cfg()
    specs = parse_space(SPACE, cfg)
    trial_cfg = apply(cfg, specs, {"lr": 0.01, "schedule": "step", "gamma": 0.5})
    assert trial_cfg.optimizer.lr == 0.01
    assert trial_cfg.schedule.name == "step"
    assert cfg.optimizer.lr != 0.01  # the study's config is untouched


@pytest.mark.parametrize(
    ("space", "key"),
    [
        ({"lr": {"path": "optimizer.lr", "low": 1.0, "high": 0.1}}, "search.params.lr.low"),
        ({"lr": {"path": "optimizer.lr", "low": 0.0, "high": 0.1}}, "search.params.lr.low"),
        ({"x": {"path": "schedule.name", "type": "categorical", "choices": []}}, "search.params.x.choices"),
        ({"x": {"path": "optimizer.nope", "low": 0.1, "high": 0.2}}, "search.params.x.path"),
        (
            {"x": {"path": "optimizer.lr", "low": 0.1, "high": 0.2, "when": {"ghost": 1}}},
            "search.params.x.when",
        ),
        ({"x": {"path": "optimizer.lr", "type": "complex", "low": 0.1, "high": 0.2}}, "search.params.x.type"),
        ({"x": {"path": "optimizer.lr", "low": "a", "high": 0.2}}, "search.params.x.low"),
    ],
)
def test_bad_spaces_name_the_key(compose_cfg, space, key):
    with pytest.raises(UserError) as error:
        parse_space(space, compose_cfg())
    assert error.value.key == key


def test_grid_is_log_spaced_on_log_axes(compose_cfg):
    specs = parse_space({"lr": SPACE["lr"]}, compose_cfg())
    values = grid(specs, points=5)["lr"]
    assert values[0] == pytest.approx(1e-4) and values[-1] == pytest.approx(1.0)
    assert values[2] == pytest.approx(1e-2)
