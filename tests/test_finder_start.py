"""``search.from_finder``: the bracket ends at the divergence point, first trials are enqueued once."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest

from tests.conftest import TINY
from tuner.finder.run import divergence_point
from tuner.study.narrow import FINDER_ATTR, bracket, first_lrs


def test_the_median_seed_gives_the_divergence_point():
    assert divergence_point([1.0, 2.0, 4.0]) == 2.0
    assert divergence_point([1.0, None, None]) is None  # the median seed reached end_lr
    assert divergence_point([1.0, 4.0, None]) == 4.0
    assert divergence_point([1.0, 4.0]) == pytest.approx(2.0)  # geometric mean of the middle two
    assert divergence_point([]) is None


def test_the_bracket_ends_at_the_divergence_point():
    assert bracket(1e-5, 1.0, 1e-3, 3.0, 0.1) == pytest.approx((1e-3 / 3, 0.1))
    assert bracket(1e-5, 0.05, 1e-3, 3.0, 0.1) == pytest.approx((1e-3 / 3, 0.05))  # configured high
    assert bracket(1e-5, 1.0, 1e-3, 3.0, None) == pytest.approx((1e-3 / 3, 3e-3))  # no divergence
    # A suggestion at or past the divergence point keeps a window below it.
    assert bracket(1e-5, 1.0, 0.3, 3.0, 0.1) == pytest.approx((0.1 / 3, 0.1))
    assert bracket(1e-3, 1.0, 1e-2, 3.0, 1e-4) == pytest.approx((1e-2 / 3, 3e-2))  # below the range


def test_first_lrs_take_the_suggestion_a_third_of_divergence_and_around():
    assert first_lrs(0.01, 0.3, 1e-4, 0.3, 3) == pytest.approx([0.01, 0.1, 0.01 * 3**0.5])
    assert first_lrs(0.01, None, 1e-4, 1.0, 3) == pytest.approx([0.01, 0.01 * 3**0.5, 0.01 / 3**0.5])
    # d/3 next to the suggestion would repeat it, and so would sqrt(3) x it clipped to the top.
    assert first_lrs(0.01, 0.032, 1e-4, 0.012, 3) == pytest.approx([0.01, 0.01 / 3**0.5])
    assert first_lrs(0.01, 0.3, 1e-4, 0.3, 0) == []


def _journal(tmp_path: Path):
    from optuna.storages.journal import JournalFileBackend, JournalStorage

    return JournalStorage(JournalFileBackend(str(tmp_path / "runs" / "optuna.journal")))


@pytest.mark.slow
def test_the_first_trials_run_at_the_finder_lrs_and_are_not_enqueued_twice(tmp_path: Path, run_cli):
    args = [
        *TINY,
        "search=lr",
        "search.from_finder=true",
        "search.finder_enqueue=2",
        "finder.num_steps=40",
        "finder.seeds=[0]",
        "study.name=start",
        "pruner=none",
        "study.n_trials=3",
    ]
    code, out, err = run_cli(*args)
    assert code == 0, err
    study = optuna.load_study(study_name="start", storage=_journal(tmp_path))
    record = study.user_attrs[FINDER_ATTR]
    assert len(record["enqueued"]) == 2
    assert f"finder: first trials at lr {record['enqueued'][0]:.3g}" in out
    first = [t.params["lr"] for t in study.trials[:2]]
    assert first == pytest.approx(record["enqueued"])
    assert [t.user_attrs.get("enqueued") for t in study.trials] == ["finder", "finder", None]
    divergence = record["result"]["divergence"]
    if divergence is not None:
        assert record["high"] <= divergence
    code, out, err = run_cli(*[a.replace("study.n_trials=3", "study.n_trials=4") for a in args])
    assert code == 0, err
    study = optuna.load_study(study_name="start", storage=_journal(tmp_path))
    assert len(study.trials) == 4
    assert [t.user_attrs.get("enqueued") for t in study.trials].count("finder") == 2
