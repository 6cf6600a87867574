"""Per-step curves thinned before MLflow: the LR at the point, the loss averaged since the last."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tuner.tracking.thinning import StepThinner


def test_points_fall_on_multiples_with_the_lr_sampled_and_the_loss_averaged():
    thinner = StepThinner(4)
    steps = list(range(1, 11))
    lrs = [0.1 * s for s in steps]
    losses = [float(s) for s in steps]
    got_steps, got = thinner.add(steps[:6], {"lr": lrs[:6], "train_loss": losses[:6]})
    more_steps, more = thinner.add(steps[6:], {"lr": lrs[6:], "train_loss": losses[6:]})
    assert got_steps + more_steps == [4, 8]
    assert got["lr"] + more["lr"] == pytest.approx([0.4, 0.8])
    assert got["train_loss"] + more["train_loss"] == pytest.approx([2.5, 6.5])  # mean of 1..4, 5..8
    rest_steps, rest = thinner.rest()
    assert rest_steps == [10] and rest["lr"] == pytest.approx([1.0]) and rest["train_loss"] == [9.5]
    assert thinner.rest() == ([], {})


def test_every_step_is_kept_with_one():
    steps, series = StepThinner(1).add([3, 4], {"lr": [0.1, 0.2]})
    assert steps == [3, 4] and series == {"lr": [0.1, 0.2]}


@given(
    every=st.integers(1, 7),
    n=st.integers(1, 60),
    cuts=st.lists(st.integers(0, 60), max_size=5),
)
def test_windows_cover_every_step_once_whatever_the_flush_boundaries(every, n, cuts):
    steps = list(range(n))
    losses = [float(s % 5) for s in steps]
    thinner = StepThinner(every)
    bounds = sorted({0, n, *(c for c in cuts if c < n)})
    out_steps, out_losses = [], []
    for a, b in itertools.pairwise(bounds):
        got_steps, got = thinner.add(steps[a:b], {"train_loss": losses[a:b]})
        out_steps += got_steps
        out_losses += got.get("train_loss", [])
    rest_steps, rest = thinner.rest()
    out_steps += rest_steps
    out_losses += rest.get("train_loss", [])
    assert out_steps == sorted(set(out_steps)) and out_steps[-1] == n - 1
    assert all(s % every == 0 for s in out_steps[:-1])
    # Each point averages the steps after the previous point: the weighted sum is the whole sum.
    previous = -1
    total = 0.0
    for step, loss in zip(out_steps, out_losses, strict=True):
        total += loss * (step - previous)
        previous = step
    assert total == pytest.approx(sum(losses))
