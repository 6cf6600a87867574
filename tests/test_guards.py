"""The guards that stop a trial whatever the pruner says: divergence and not learning."""

from __future__ import annotations

import math

import pytest

from tuner.data.factory import build_datamodule
from tuner.errors import UserError
from tuner.training.guards import MIN_JUDGED_STEPS, DivergenceGuard, not_learning_step
from tuner.training.trial import run_trial
from tuner.validate import validate

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
    steps = [*SHORT, "trainer.max_steps=200", "trainer.val_check_interval=50"]
    cfg = compose_cfg(*steps, "optimizer=sgd", "optimizer.lr=1e-9", "trainer.not_learning_after=0.25")
    outcome = run_trial(cfg, build_datamodule(cfg), trial=None, run=None)
    assert outcome.state == "PRUNED"
    assert outcome.reason is not None and outcome.reason.startswith("not learning")
    assert outcome.steps < 200  # stopped at the first window after step 100 (MIN_JUDGED_STEPS)
    learning = compose_cfg(*steps, "optimizer.lr=1e-2", "trainer.not_learning_after=0.25")
    assert run_trial(learning, build_datamodule(learning), trial=None, run=None).state == "COMPLETE"


def test_the_share_counts_after_the_warmup_and_never_before_100_steps():
    assert not_learning_step(0.25, 3000, 0) == 750
    assert not_learning_step(0.25, 3000, 600) == 600 + 600  # a quarter of the 2,400 after warmup
    assert not_learning_step(0.25, 60, 0) == MIN_JUDGED_STEPS  # a short run: a run of 60 never is
    assert not_learning_step(None, 3000, 0) is None


@pytest.mark.parametrize("value", ["0", "1.5", "-0.1", "yes"])
def test_bad_share_names_the_key(compose_cfg, value):
    with pytest.raises(UserError, match=r"trainer\.not_learning_after"):
        validate(compose_cfg(f"trainer.not_learning_after={value}"))
