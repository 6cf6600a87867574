"""A study with LR-free arms ends with the tuned-versus-LR-free table, printed and logged."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import mlflow
import optuna
import pytest

from tests.conftest import logged_points
from tuner.errors import UserError
from tuner.tracking.tracker import local_uri

SMALL = [
    "data=digits",
    "model=mlp",
    "model.hidden=[32]",
    "trainer.max_steps=40",
    "trainer.val_check_interval=20",
    "tracking.step_flush_every=20",
    "study.n_trials=3",
    "search=optimizer_family",
    "study.name=arms",
    "study.lr_free_arms=[schedulefree_adamw,prodigy]",
]


@pytest.mark.slow
def test_arms_train_once_on_the_same_budget_and_end_in_a_comparison(tmp_path: Path, run_cli):
    code, out, err = run_cli(*SMALL)
    assert code == 0, out + err
    assert "arm prodigy (LR-free) running" in out
    table = out[out.index("tuned vs LR-free on the same budget (40 steps per run)") :]
    rows = [line for line in table.splitlines() if "(LR-free)" in line or "tuned (best" in line]
    assert len(rows) == 3

    storage = optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(tmp_path / "runs" / "optuna.journal"))
    )
    study = optuna.load_study(study_name="arms", storage=storage)
    assert len(study.trials) == 3  # arms are not Optuna trials and do not count in n_trials

    mlflow.set_tracking_uri(local_uri(tmp_path / "runs"))
    client = mlflow.MlflowClient()
    runs = mlflow.search_runs(experiment_names=["arms"], output_format="list")
    (parent,) = [r for r in runs if r.data.tags.get("tuner.role") == "study"]
    arms = {r.data.params["optimizer"]: r for r in runs if r.data.tags.get("tuner.arm") == "lr_free"}
    assert set(arms) == {"schedulefree_adamw", "prodigy"}
    best = study.best_trial
    assert parent.data.metrics["tuned.best_value"] == pytest.approx(best.value)
    for name, run in arms.items():
        assert run.data.tags["mlflow.parentRunId"] == parent.info.run_id
        assert run.data.tags["tuner.state"] == "COMPLETE"
        # Same budget: every step of trainer.max_steps (one LR point per 10 steps).
        assert len(client.get_metric_history(run.info.run_id, "lr")) == logged_points(40)
        assert run.data.metrics["steps"] == 40
        value = run.data.metrics["value"]
        assert parent.data.metrics[f"lr_free.{name}.value"] == pytest.approx(value)
        assert parent.data.metrics[f"lr_free.{name}.vs_tuned"] == pytest.approx(value - best.value)
        assert {"lr_curve.png", "trial_config.yaml"} <= {
            a.path for a in client.list_artifacts(run.info.run_id)
        }
        row = next(line for line in rows if f"{name} (LR-free)" in line)
        assert f"{value:.4g}" in row
    assert arms["schedulefree_adamw"].data.params["schedule"] == "constant"  # it is its own schedule

    artifacts = {a.path for a in client.list_artifacts(parent.info.run_id)}
    assert {"lr_free_comparison.md", "lr_free_comparison.csv"} <= artifacts
    text = Path(client.download_artifacts(parent.info.run_id, "lr_free_comparison.csv")).read_text()
    logged = list(csv.DictReader(io.StringIO(text)))
    assert [r["optimizer"] for r in logged][1:] == ["schedulefree_adamw", "prodigy"]
    assert float(logged[0]["value"]) == pytest.approx(best.value)

    # Resuming the finished study trains neither a trial nor an arm again.
    code, out, _ = run_cli(*SMALL)
    assert code == 0
    assert "running" not in out
    assert "tuned vs LR-free" in out
    runs = mlflow.search_runs(experiment_names=["arms"], output_format="list")
    assert sum(r.data.tags.get("tuner.arm") == "lr_free" for r in runs) == 2


@pytest.mark.parametrize(
    ("arms", "fix"),
    [
        ("[sgd]", "not an LR-free optimizer"),
        ("prodigy", "give a list"),
        ("[prodigy,prodigy]", "name each arm once"),
    ],
)
def test_bad_arms_are_refused_up_front(compose_cfg, arms, fix):
    from tuner.validate import validate

    with pytest.raises(UserError) as info:
        validate(compose_cfg(f"study.lr_free_arms={arms}"))
    assert info.value.key == "study.lr_free_arms"
    assert fix in info.value.fix


def test_a_missing_lr_free_package_stops_the_command_before_anything_runs(tmp_path, run_cli, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "prodigyopt", None)  # makes the import raise ImportError
    code, _out, err = run_cli("study.lr_free_arms=[prodigy]")
    assert code == 2
    assert err.strip() == "error: optimizer.name='prodigy': pip install 'tuner[lr-free]'"
    assert not (tmp_path / "runs").exists()  # nothing half-made
