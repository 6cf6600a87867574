"""The real command line on tiny studies: totals, MLflow records, divergence, user models."""

from __future__ import annotations

import textwrap
from pathlib import Path

import mlflow
import optuna
import pytest

from tests.conftest import TINY, logged_points
from tuner.study.optuna_study import count_finished
from tuner.tracking.tracker import local_uri


def _runs(tmp_path: Path, study: str):
    mlflow.set_tracking_uri(local_uri(tmp_path / "runs"))
    return mlflow.search_runs(experiment_names=[study], output_format="list")


def test_mlflow_has_parent_and_one_nested_run_per_trial(tmp_path, run_cli):
    code, out, _ = run_cli(*TINY, "study.n_trials=3", "study.name=e2e", "pruner=none")
    assert code == 0, out
    assert "mlflow ui --backend-store-uri sqlite:///" in out
    runs = _runs(tmp_path, "e2e")
    parents = [r for r in runs if r.data.tags.get("tuner.role") == "study"]
    trials = [r for r in runs if r.data.tags.get("tuner.role") == "trial"]
    assert len(parents) == 1
    assert len(trials) == 3
    assert {r.data.tags["mlflow.parentRunId"] for r in trials} == {parents[0].info.run_id}
    client = mlflow.MlflowClient()
    for run in trials:
        assert run.data.tags["tuner.state"] == "COMPLETE"
        assert run.info.status == "FINISHED"
        assert {"lr", "warmup_fraction", "schedule"} <= set(run.data.params)
        lr_history = client.get_metric_history(run.info.run_id, "lr")
        assert len(lr_history) == logged_points(60)  # one point per 10 optimizer steps, and the last
        assert len(client.get_metric_history(run.info.run_id, "val_acc")) == 3  # one per evaluation
        assert "trial_config.yaml" in {a.path for a in client.list_artifacts(run.info.run_id)}
    parent = parents[0]
    assert "best_value" in parent.data.metrics
    assert "best_config.yaml" in {a.path for a in client.list_artifacts(parent.info.run_id)}


def test_n_trials_is_a_total_across_runs(tmp_path, run_cli):
    args = (*TINY, "study.n_trials=6", "study.name=total")
    assert run_cli(*args)[0] == 0
    code, _out, _ = run_cli(*args)
    assert code == 0
    study = optuna.load_study(study_name="total", storage=_journal(tmp_path))
    assert count_finished(study) == 6
    assert len(study.trials) == 6
    parents = [r for r in _runs(tmp_path, "total") if r.data.tags.get("tuner.role") == "study"]
    assert len(parents) == 1


def _journal(tmp_path: Path):
    from optuna.storages.journal import JournalFileBackend, JournalStorage

    return JournalStorage(JournalFileBackend(str(tmp_path / "runs" / "optuna.journal")))


def test_lr_of_ten_diverges_and_the_study_goes_on(tmp_path, run_cli):
    code, out, _ = run_cli(
        *TINY,
        "optimizer=sgd",
        "study.name=diverge",
        "study.n_trials=2",
        "search.params.lr.low=10",
        "search.params.lr.high=10.0001",
        "trainer.divergence_factor=3",
        "pruner=none",
    )
    assert code == 0, out
    study = optuna.load_study(study_name="diverge", storage=_journal(tmp_path))
    assert [t.state for t in study.trials] == [optuna.trial.TrialState.PRUNED] * 2
    for trial in study.trials:
        assert "diverged" in trial.user_attrs["reason"]
        assert trial.user_attrs["steps"] < 60
    trials = [r for r in _runs(tmp_path, "diverge") if r.data.tags.get("tuner.role") == "trial"]
    assert len(trials) == 2
    assert all("diverged" in r.data.tags["tuner.reason"] for r in trials)
    assert all(r.data.tags["tuner.state"] == "PRUNED" for r in trials)


def test_user_model_outside_the_package(tmp_path, run_cli, monkeypatch):
    plugin = tmp_path / "plugins"
    plugin.mkdir()
    (plugin / "my_models.py").write_text(
        textwrap.dedent(
            """
            import torch
            from torch import nn

            class TinyNet(nn.Module):
                def __init__(self, input_shape, num_classes, width=16):
                    super().__init__()
                    self.body = nn.Sequential(nn.Flatten(), nn.Linear(input_shape[0], width), nn.Tanh(), nn.Linear(width, num_classes))

                def forward(self, x):
                    return self.body(x)
            """
        )
    )
    monkeypatch.syspath_prepend(str(plugin))
    code, _out, err = run_cli(
        *TINY, "study.name=user-model", "model._target_=my_models.TinyNet", "+model.width=8"
    )
    assert code == 0, err
    study = optuna.load_study(study_name="user-model", storage=_journal(tmp_path))
    assert count_finished(study) == 2


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ("optimizer.name=adamm", "optimizer.name"),
        ("search.params.lr.low=0.5", "search.params.lr.low"),  # low >= high (0.3)
        ("search.params.lr.low=0", "search.params.lr.low"),  # log scale bound <= 0
        ("search.params.lr.low=-1e-3", "search.params.lr.low"),
        ("optimizer=adamm", "optimizer"),
        ("study.n_trial=3", "study.n_trial"),
    ],
)
def test_bad_input_is_one_clear_line(tmp_path, run_cli, override, key):
    code, out, err = run_cli(*TINY, override)
    assert code == 2
    lines = [line for line in err.strip().splitlines() if line]
    assert len(lines) == 1, err
    assert lines[0].startswith(f"error: {key}=")
    assert "Traceback" not in err + out
    assert not (tmp_path / "runs" / "optuna.journal").exists()


def test_a_grid_study_ends_when_its_grid_is_done(run_cli):
    """Optuna's grid sampler stops the study itself only inside optimize(); ours stops here."""
    import optuna

    code, out, err = run_cli(
        *TINY, "sampler=grid", "sampler.grid_points=3", "search=lr", "study.n_trials=5", "study.name=grid"
    )
    assert code == 0, err
    assert "every point of the grid is tried (sampler.grid_points=3" in out
    storage = optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend("runs/optuna.journal")
    )
    trials = optuna.load_study(study_name="grid", storage=storage).trials
    assert sorted(t.params["lr"] for t in trials) == sorted({t.params["lr"] for t in trials})  # no repeats
    assert len(trials) == 3 and all(t.state == optuna.trial.TrialState.COMPLETE for t in trials)


def test_a_resumed_study_draws_new_points(run_cli):
    """A resumed study's sampler moves on from its seed: it does not repeat the first draws."""
    import optuna

    args = (*TINY, "sampler=random", "pruner=none", "search=lr", "study.name=resumed")
    assert run_cli(*args, "study.n_trials=2")[0] == 0
    assert run_cli(*args, "study.n_trials=4")[0] == 0
    storage = optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend("runs/optuna.journal")
    )
    lrs = [t.params["lr"] for t in optuna.load_study(study_name="resumed", storage=storage).trials]
    assert len(lrs) == 4 and len(set(lrs)) == 4
