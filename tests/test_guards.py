"""The guards that stop a trial whatever the pruner says: divergence and not learning."""

from __future__ import annotations

import math

import pytest

from tuner.build import build_datamodule
from tuner.config import validate
from tuner.errors import UserError
from tuner.objective import run_trial
from tuner.training.guards import DivergenceGuard

SHORT = [
    "trainer.max_steps=60",
    "trainer.val_check_interval=20",
    "tracking.step_flush_every=10",
    "data.num_samples=600",
    "model=mlp",
]


def test_flat_loss_at_chance_is_not_learning_after_the_share():
    guard = DivergenceGuard(initial_steps=2, not_learning_after=6, tolerance=0.02)
    guard.chance = math.log(10)
    assert guard.check([2.31, 2.30]) is None
    assert guard.check([2.30, 2.30]) is None  # 4 steps seen: too early to judge
    reason = guard.check([2.29, 2.30]) or ""
    assert reason.startswith("not learning") and "after 6 steps" in reason


def test_a_falling_loss_is_learning():
    guard = DivergenceGuard(initial_steps=2, not_learning_after=4, tolerance=0.02)
    assert guard.check([2.3, 2.3]) is None
    assert guard.check([2.0, 1.9]) is None
    assert guard.check([1.5, 1.4]) is None


def test_chance_is_the_start_when_the_first_steps_jumped_above_it():
    # A too-high LR throws the loss to 9 at once, then it sits at chance: not learning.
    guard = DivergenceGuard(initial_steps=2, not_learning_after=2, tolerance=0.02)
    guard.chance = math.log(10)
    assert guard.check([9.0, 9.0]) is None
    assert (guard.check([2.30, 2.30]) or "").startswith("not learning")


def test_off_when_not_learning_after_is_null():
    guard = DivergenceGuard(initial_steps=1, not_learning_after=None)
    assert guard.check([2.3] * 50) is None


def test_a_trial_that_does_not_learn_is_stopped_with_its_reason(compose_cfg):
    # An LR of 1e-9 leaves the weights where they started: the loss stays at its start.
    cfg = compose_cfg(*SHORT, "optimizer=sgd", "optimizer.lr=1e-9", "trainer.not_learning_after=0.25")
    outcome = run_trial(cfg, build_datamodule(cfg), trial=None, run=None)
    assert outcome.state == "PRUNED"
    assert outcome.reason is not None and outcome.reason.startswith("not learning")
    assert outcome.steps < 60  # stopped early: at the first window after 15 steps
    learning = compose_cfg(*SHORT, "optimizer.lr=1e-2", "trainer.not_learning_after=0.25")
    assert run_trial(learning, build_datamodule(learning), trial=None, run=None).state == "COMPLETE"


@pytest.mark.parametrize("value", ["0", "1.5", "-0.1", "yes"])
def test_bad_share_names_the_key(compose_cfg, value):
    with pytest.raises(UserError, match=r"trainer\.not_learning_after"):
        validate(compose_cfg(f"trainer.not_learning_after={value}"))
