"""``search.screen``: short first trials with their schedules compressed, the best trained in full."""

from __future__ import annotations

import math
from pathlib import Path

import optuna
import pytest

from tests.conftest import TINY
from tuner.cli import compose
from tuner.errors import UserError
from tuner.study.screen import PROMOTED_ATTR, SCREEN_ATTR, SCREEN_VALUE_ATTR, screen_steps, stratified
from tuner.validate import validate

PRUNED = optuna.trial.TrialState.PRUNED
COMPLETE = optuna.trial.TrialState.COMPLETE


def _journal(tmp_path: Path):
    from optuna.storages.journal import JournalFileBackend, JournalStorage

    return JournalStorage(JournalFileBackend(str(tmp_path / "runs" / "optuna.journal")))


def test_one_draw_in_each_slice_of_the_log_range():
    lrs = stratified(1e-4, 1.0, 8, seed=0)
    slices = sorted(math.floor((math.log10(lr) + 4) / 0.5) for lr in lrs)
    assert slices == list(range(8))  # 4 decades in 8 slices of half a decade, one draw each
    assert stratified(1e-4, 1.0, 8, seed=0) == lrs  # seeded
    assert sorted(lrs) != lrs  # shuffled: a study cut short still spans the range


def test_the_screening_length_is_a_share_of_the_trial_with_a_floor():
    cfg = compose(["trainer.max_steps=3000", "search.screen_fraction=0.125"])
    assert screen_steps(cfg) == 375
    assert screen_steps(compose(["trainer.max_steps=40", "trainer.val_check_interval=20"])) == 10


@pytest.mark.parametrize(
    ("key", "value", "fix"),
    [
        ("search.screen", "-1", "whole number of short first trials"),
        ("search.screen", "true", "whole number of short first trials"),
        ("search.screen_fraction", "1.5", "share of trainer.max_steps"),
        ("search.screen_fraction", "0", "share of trainer.max_steps"),
        ("search.screen_promote", "-2", "screened trials to train in full"),
    ],
)
def test_bad_screening_settings_name_their_key(key, value, fix):
    with pytest.raises(UserError) as err:
        validate(compose([f"{key}={value}"]))
    assert err.value.key == key and fix in str(err.value)


def test_screening_trials_run_short_and_the_best_is_trained_in_full(tmp_path: Path, run_cli):
    args = (
        *TINY,
        "trainer.max_steps=80",
        "model=mlp",
        "optimizer=sgd",
        "schedule=constant",
        "search=lr",
        "search.params.lr.low=1e-3",
        "search.params.lr.high=1.0",
        "search.screen=4",
        "search.screen_fraction=0.25",
        "search.screen_promote=1",
        "pruner=none",
        "trainer.not_learning_after=null",
        "study.name=screen",
        "study.n_trials=8",
    )
    code, out, _ = run_cli(*args)
    assert code == 0, out
    assert "screening done: trial(s)" in out
    study = optuna.load_study(study_name="screen", storage=_journal(tmp_path))
    trials = sorted(study.trials, key=lambda t: t.number)
    screens = [t for t in trials if t.user_attrs.get(SCREEN_ATTR)]
    assert [t.number for t in screens] == [0, 1, 2, 3]
    for t in screens:
        assert t.state == PRUNED
        assert t.user_attrs["steps"] == 20  # a quarter of 80 steps
        assert list(t.intermediate_values) == [20]  # validated once, at its end
        assert "screened" in t.user_attrs["reason"]
    # One draw in each quarter of the 3 decades of LR.
    assert sorted(math.floor((math.log10(t.params["lr"]) + 3) / 0.75) for t in screens) == [0, 1, 2, 3]
    best = max(screens, key=lambda t: t.user_attrs[SCREEN_VALUE_ATTR])
    promoted = trials[4]
    assert study.user_attrs[PROMOTED_ATTR] == [best.number]
    assert promoted.params == best.params and promoted.user_attrs["promoted_from"] == best.number
    assert promoted.state == COMPLETE and promoted.user_attrs["steps"] == 80
    # Run again with a larger total: nothing is screened or promoted twice.
    code, out, _ = run_cli(*args[:-1], "study.n_trials=9")
    assert code == 0, out
    again = optuna.load_study(study_name="screen", storage=_journal(tmp_path))
    assert sum(1 for t in again.trials if t.user_attrs.get(SCREEN_ATTR)) == 4
    assert sum(1 for t in again.trials if "promoted_from" in t.user_attrs) == 1
    assert len(again.trials) == 9


@pytest.mark.parametrize(
    ("overrides", "why"),
    [
        (["study.n_trials=3"], "it needs study.n_trials >= 4 (at most half of the trials screen)"),
        (["sampler=grid", "sampler.grid_points=2", "study.n_trials=4"], "sampler=grid fixes its own points"),
    ],
)
def test_a_short_study_or_a_grid_screens_nothing_and_says_why(tmp_path: Path, run_cli, overrides, why):
    code, out, _ = run_cli(*TINY, "search=lr", "search.screen=2", *overrides, "study.name=g")
    assert code == 0, out
    assert f"note: no screening trials (search.screen=2): {why}" in out
    study = optuna.load_study(study_name="g", storage=_journal(tmp_path))
    assert not any(t.user_attrs.get(SCREEN_ATTR) for t in study.trials)
    assert all(t.user_attrs.get("steps") == 60 for t in study.trials)


def test_screening_keys_never_block_resuming_a_study(tmp_path: Path, run_cli):
    """Screening acts when a study is created: changing its keys later reopens the same study."""
    args = (*TINY, "search=lr", "study.name=again", "study.n_trials=4", "search.screen=2")
    code, out, _ = run_cli(*args)
    assert code == 0, out
    code, out, _ = run_cli(*args[:-2], "study.n_trials=5", "search.screen=0", "search.screen_promote=1")
    assert code == 0, out
    assert len(optuna.load_study(study_name="again", storage=_journal(tmp_path)).trials) == 5


def test_a_screening_run_as_long_as_the_trial_is_skipped(tmp_path: Path, run_cli):
    code, out, _ = run_cli(
        *TINY,
        "trainer.max_steps=8",
        "trainer.val_check_interval=4",
        "search=lr",
        "search.screen=2",
        "study.n_trials=4",
        "study.name=short",
    )
    assert code == 0, out
    assert "a screening run would be as long as a full one (trainer.max_steps=8)" in out


def test_workers_wait_for_the_promoted_trials_before_drawing_new_ones(tmp_path: Path, run_cli):
    """Two workers, two screening trials: the worker that finishes first waits for the other's
    screening trial, so the promoted trials are drawn first and none is left waiting."""
    code, out, _ = run_cli(
        *TINY,
        "search=lr",
        "search.screen=2",
        "study.n_trials=4",
        "launcher=local",
        "launcher.workers=2",
        "study.name=pair",
    )
    assert code == 0, out
    study = optuna.load_study(study_name="pair", storage=_journal(tmp_path))
    # A worker that asks when the total is already claimed gives its trial up as surplus
    # (tuner.storage.coordination): that is the total working, not a lost trial.
    counted = [t for t in study.trials if not t.system_attrs.get("tuner.surplus")]
    states = sorted(t.state.name for t in counted)
    assert states.count("WAITING") == 0 and len(counted) == 4, states
    promoted = [t for t in study.trials if "promoted_from" in t.user_attrs]
    assert sorted(t.user_attrs["promoted_from"] for t in promoted) == sorted(study.user_attrs[PROMOTED_ATTR])
    assert len(promoted) == 2 and all(t.state == COMPLETE for t in promoted)
