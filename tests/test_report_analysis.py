"""The report's numbers on studies of known shape, and the reproduce command's overrides."""

from __future__ import annotations

import math

import optuna
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from omegaconf import OmegaConf

from tuner.cli import compose, config_dir
from tuner.report.analysis import importances, robust_lr, sensitivity
from tuner.report.gather import StudyData
from tuner.report.reproduce import GROUPS, hydra_value, reproduce_overrides

LR = optuna.distributions.FloatDistribution(1e-5, 1.0, log=True)
WD = optuna.distributions.FloatDistribution(0.0, 0.1)
COMPLETE, PRUNED = optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED


def _study(points, *, direction: str = "maximize", extra: bool = False) -> StudyData:
    """A real in-memory study holding trials ``(lr, value, state)``."""
    study = optuna.create_study(direction=direction)
    for i, (lr, value, state) in enumerate(points):
        params, dists = {"lr": lr}, {"lr": LR}
        if extra:
            params["wd"], dists["wd"] = 0.01 * (i % 5), WD
        study.add_trial(
            optuna.trial.create_trial(
                params=params,
                distributions=dists,
                value=value if state == COMPLETE else None,
                intermediate_values={10: value},
                state=state,
            )
        )
    return StudyData(study=study, metric="val_acc")


def test_the_recommendation_is_the_log_centre_of_the_contiguous_basin():
    data = _study(
        [
            (1e-4, 0.50, COMPLETE),
            (1e-3, 0.89, COMPLETE),
            (3e-3, 0.90, COMPLETE),  # the best
            (1e-2, 0.895, COMPLETE),
            (3e-2, 0.60, COMPLETE),  # the ground drops here...
            (1e-1, 0.891, COMPLETE),  # ...so this lucky one is not part of the basin
        ]
    )
    basin = robust_lr(data, tolerance=0.02, kind="relative")
    assert basin is not None
    assert (basin.low, basin.high, basin.best_lr) == (1e-3, 1e-2, 3e-3)
    assert basin.recommended == pytest.approx(math.sqrt(1e-3 * 1e-2))
    assert basin.threshold == pytest.approx(0.90 - 0.018)
    assert basin.excluded == (5,)
    assert basin.width_decades == pytest.approx(1.0)


def test_a_pruned_trial_ends_the_basin_and_minimize_uses_an_absolute_tolerance():
    data = _study(
        [(1e-3, 0.30, COMPLETE), (2e-3, 0.31, PRUNED), (4e-3, 0.28, COMPLETE), (8e-3, 0.29, COMPLETE)],
        direction="minimize",
    )
    basin = robust_lr(data, tolerance=0.05, kind="absolute")
    assert basin is not None
    assert (basin.low, basin.high) == (4e-3, 8e-3)  # 1e-3 is good too, but beyond the pruned trial
    assert basin.excluded == (0,)


def test_a_single_good_trial_is_a_single_point_and_no_lr_means_no_range():
    lone = robust_lr(_study([(1e-3, 0.9, COMPLETE), (1e-2, 0.1, COMPLETE)]), tolerance=0.01, kind="relative")
    assert lone is not None and lone.low == lone.high == lone.recommended == 1e-3
    study = optuna.create_study()
    study.add_trial(optuna.trial.create_trial(params={"wd": 0.1}, distributions={"wd": WD}, value=1.0))
    assert robust_lr(StudyData(study=study, metric="val_loss"), tolerance=0.1, kind="relative") is None


def test_importances_say_why_when_they_are_missing_or_trivial():
    assert (
        importances(_study([(1e-3, 0.9, COMPLETE)]))[1]
        == "needs at least 2 complete trials (the study has 1)"
    )
    found, note = importances(_study([(1e-3, 0.9, COMPLETE), (1e-2, 0.5, COMPLETE), (1e-1, 0.2, COMPLETE)]))
    assert found == {"lr": 1.0} and "only one parameter" in (note or "")
    found, note = importances(_study([(10 ** -(i % 5 + 1), i / 20, COMPLETE) for i in range(12)], extra=True))
    assert set(found) == {"lr", "wd"} and note is None and sum(found.values()) == pytest.approx(1.0)


def test_sensitivity_buckets_hold_every_complete_trial():
    data = _study([(10 ** -(i % 5 + 1), i / 20, COMPLETE) for i in range(12)], extra=True)
    table = sensitivity(data)
    assert set(table) == {"lr", "wd"}
    for buckets in table.values():
        assert sum(b.count for b in buckets) == 12
        assert max(b.best for b in buckets) == pytest.approx(11 / 20)


def _sections(cfg) -> dict:
    full = OmegaConf.to_container(cfg, resolve=True)
    return {k: full[k] for k in (*GROUPS, "seed")}


@pytest.mark.parametrize(
    "overrides",
    [
        [],
        ["optimizer=sgd", "optimizer.lr=0.0123", "schedule=step", "model=mlp", "data=digits", "seed=7"],
        [
            "optimizer=adamw",
            "schedule=onecycle",
            "trainer.max_steps=77",
            "~optimizer.amsgrad",
            "+model.extra=[1,2]",
        ],
        ["experiment=cnn_sgd_cosine", "optimizer.nesterov=true", "model.channels=[8,16]"],
    ],
)
def test_the_overrides_compose_back_to_the_trial_config(overrides):
    trial_cfg = _sections(compose(overrides))
    args = reproduce_overrides(trial_cfg, conf=config_dir())
    assert _sections(compose(args)) == trial_cfg, args
    if not overrides:
        assert args == []


@settings(max_examples=60, deadline=None)
@given(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(-(10**9), 10**9),
        st.floats(allow_nan=False, allow_infinity=False, width=64),
        st.text(alphabet=st.characters(codec="ascii", exclude_categories=("Cc",)), max_size=12),
        st.lists(st.integers(-5, 5) | st.floats(0, 1), max_size=4),
    )
)
def test_hydra_values_parse_back_to_the_same_value(value):
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parsed = OverridesParser.create().parse_override(f"key={hydra_value(value)}").value()
    assert parsed == value or (isinstance(value, float) and math.isclose(parsed, value))
