"""``study.tie_break``: ties on the metric are ordered by a second one, and never more than ties."""

from __future__ import annotations

from pathlib import Path

import mlflow
import optuna
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from omegaconf import OmegaConf

from tests.conftest import TINY
from tuner.study.ties import RAW_ATTR, TIE_SCALE, plateau, raw_value, told_value
from tuner.tracking.tracker import local_uri


def _cfg(direction="maximize", metric="val_acc", tie_break="val_loss"):
    return OmegaConf.create({"study": {"metric": metric, "direction": direction, "tie_break": tie_break}})


@settings(max_examples=200, deadline=None)
@given(
    n=st.integers(min_value=10, max_value=1_000_000),
    correct=st.integers(min_value=0, max_value=999_999),
    losses=st.tuples(st.floats(0, 1e6), st.floats(0, 1e6)),
)
def test_distinct_accuracies_keep_their_order_whatever_the_losses(n, correct, losses):
    correct = min(correct, n - 1)
    worse, better = correct / n, (correct + 1) / n
    told_worse, _ = told_value(_cfg(), worse, {"val_loss": losses[0]})
    told_better, _ = told_value(_cfg(), better, {"val_loss": losses[1]})
    assert told_better > told_worse
    assert abs(told_worse - worse) < TIE_SCALE


@pytest.mark.parametrize("direction", ["maximize", "minimize"])
def test_a_tie_goes_to_the_lower_loss_and_the_raw_value_is_kept(direction):
    low_loss, attrs = told_value(_cfg(direction), 0.5, {"val_loss": 0.3})
    high_loss, _ = told_value(_cfg(direction), 0.5, {"val_loss": 3.0})
    assert (low_loss > high_loss) == (direction == "maximize")
    assert attrs == {RAW_ATTR: 0.5, "tie_break": "val_loss", "val_loss": 0.3}
    # Large losses still order (tanh would be 1.0 for both).
    a, _ = told_value(_cfg(), 0.5, {"val_loss": 40.0})
    b, _ = told_value(_cfg(), 0.5, {"val_loss": 41.0})
    assert a is not None and b is not None and a > b


def test_off_or_missing_the_value_is_told_as_measured():
    assert told_value(_cfg(tie_break=None), 0.5, {"val_loss": 0.3}) == (0.5, {})
    assert told_value(_cfg(), 0.5, {}) == (0.5, {})
    assert told_value(_cfg(metric="val_loss", direction="minimize"), 0.5, {"val_loss": 0.5}) == (0.5, {})
    assert told_value(_cfg(), 0.5, {"val_loss": float("nan")}) == (0.5, {})


def _complete(values):
    dist = optuna.distributions.FloatDistribution(1e-4, 1.0, log=True)
    return [
        optuna.trial.create_trial(
            params={"lr": 0.01},
            distributions={"lr": dist},
            value=v + i * 1e-10,
            user_attrs={RAW_ATTR: v, "tie_break": "val_loss"},
        )
        for i, v in enumerate(values)
    ]


def test_a_plateau_is_said_only_when_many_trials_tie():
    line = plateau(_complete([0.113] * 6 + [0.5, 0.6]), "val_acc")
    assert line == "plateau: 6 of 8 complete trials tie at val_acc 0.1130; ties broken by val_loss"
    assert plateau(_complete([0.113] * 3 + [0.5, 0.6, 0.7]), "val_acc") is None  # three are no plateau
    assert plateau(_complete([0.113] * 4 + [0.5 + i / 100 for i in range(9)]), "val_acc") is None
    assert (
        plateau(_complete([0.1, 0.2, 0.3] + [0.4] * 3 + [0.5 + i / 100 for i in range(10)]), "val_acc")
        is None
    )
    assert raw_value(_complete([0.113])[0]) == 0.113


def test_a_study_on_a_plateau_tells_optuna_apart_and_prints_the_raw_value(tmp_path: Path, run_cli):
    """LRs too small to change any prediction: every trial ends at the same accuracy."""
    args = (
        *TINY,
        "model=mlp",
        "optimizer=sgd",
        "schedule=constant",
        "search=lr",
        "search.params.lr.low=1e-6",
        "search.params.lr.high=1e-5",
        "search.widen=false",
        "pruner=none",
        "study.n_trials=4",
    )
    code, out, _ = run_cli(*args, "study.name=ties")
    assert code == 0, out
    from optuna.storages.journal import JournalFileBackend, JournalStorage

    storage = JournalStorage(JournalFileBackend(str(tmp_path / "runs" / "optuna.journal")))
    study = optuna.load_study(study_name="ties", storage=storage)
    raws = {t.user_attrs[RAW_ATTR] for t in study.trials}
    assert len(raws) == 1  # a plateau
    assert len({t.value for t in study.trials}) == 4  # Optuna sees them apart
    best = min(study.trials, key=lambda t: t.user_attrs["val_loss"])
    assert study.best_trial.number == best.number
    [raw] = raws
    assert f"value={raw:.4g}" in out
    report = (tmp_path / "runs" / "studies" / "ties" / "report.md").read_text()
    assert f"plateau: 4 of 4 complete trials tie at val_acc {raw:.4f}; ties broken by val_loss" in report
    mlflow.set_tracking_uri(local_uri(tmp_path / "runs"))
    runs = mlflow.search_runs(experiment_names=["ties"], output_format="list")
    values = {r.data.metrics["value"] for r in runs if r.data.tags.get("tuner.role") == "trial"}
    assert values == {raw}  # MLflow keeps the measured metric
    [parent] = [r for r in runs if r.data.tags.get("tuner.role") == "study"]
    assert parent.data.metrics["best_value"] == raw
    code, out, _ = run_cli(*args, "study.name=ties-off", "study.tie_break=null")
    assert code == 0, out
    study = optuna.load_study(study_name="ties-off", storage=storage)
    assert len({t.value for t in study.trials}) == 1 and RAW_ATTR not in study.trials[0].user_attrs
    report = (tmp_path / "runs" / "studies" / "ties-off" / "report.md").read_text()
    assert "no tie-break (study.tie_break)" in report
