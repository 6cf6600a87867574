"""Faults inside trials: user-code exceptions, CUDA out-of-memory, NaN losses, failure streaks.

Every test ends with each finished trial present, in the same state, in the study
storage and in MLflow.
"""

from __future__ import annotations

from pathlib import Path

import mlflow
import optuna
import pytest
from optuna.storages.journal import JournalFileBackend, JournalStorage

from tests.conftest import TINY, logged_points
from tuner.tracking.tracker import local_uri

SCRIPTED = ["model._target_=tests.scripted_model.Scripted", "pruner=none"]
_STATUS = {"COMPLETE": "FINISHED", "PRUNED": "FINISHED", "FAIL": "FAILED"}
C, P, F = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED, optuna.trial.TrialState.FAIL)


def load_study(root: Path, name: str) -> optuna.Study:
    return optuna.load_study(
        study_name=name, storage=JournalStorage(JournalFileBackend(str(root / "optuna.journal")))
    )


def trial_runs(uri: str, name: str) -> dict[int, mlflow.entities.Run]:
    """The study's nested MLflow runs by trial number."""
    client = mlflow.MlflowClient(uri)
    runs = client.search_runs(
        [client.get_experiment_by_name(name).experiment_id], filter_string="tags.`tuner.role` = 'trial'"
    )
    return {int(r.data.tags["tuner.trial"]): r for r in runs}


def assert_same_in_mlflow(study: optuna.Study, uri: str) -> dict[int, mlflow.entities.Run]:
    """Every finished trial has its MLflow run, in the same state, ended, with its trace."""
    runs = trial_runs(uri, study.study_name)
    finished = [t for t in study.trials if t.state.is_finished()]
    assert finished
    client = mlflow.MlflowClient(uri)
    for trial in finished:
        run = runs[trial.number]
        assert run.data.tags["tuner.state"] == trial.state.name
        assert run.info.status == _STATUS[trial.state.name]
        # Unknown to a trial that started while the MLflow server was away.
        assert trial.user_attrs.get("mlflow_run_id", run.info.run_id) == run.info.run_id
        if trial.state == C:
            assert run.data.metrics["value"] == pytest.approx(trial.value)
            assert len(client.get_metric_history(run.info.run_id, "lr")) == logged_points(
                trial.user_attrs["steps"]
            )
        if "reason" in trial.user_attrs:
            assert run.data.tags["tuner.reason"] == trial.user_attrs["reason"]
    return runs


def traceback_of(uri: str, run: mlflow.entities.Run) -> str:
    client = mlflow.MlflowClient(uri)
    path = client.download_artifacts(run.info.run_id, "traceback.txt")
    return Path(path).read_text()


def test_an_exception_in_user_code_fails_the_trial_and_the_study_goes_on(tmp_path, run_cli, script):
    script("ok", "raise", "ok", "raise")
    code, out, err = run_cli(*TINY, *SCRIPTED, "study.n_trials=4", "study.name=user-code")
    assert code == 0, err
    study = load_study(tmp_path / "runs", "user-code")
    assert [t.state for t in study.trials] == [C, F, C, F]
    uri = local_uri(tmp_path / "runs")
    runs = assert_same_in_mlflow(study, uri)
    for number in (1, 3):
        assert study.trials[number].user_attrs["reason"] == "RuntimeError: boom in user code"
        text = traceback_of(uri, runs[number])
        assert text.startswith("Traceback")
        assert "in forward" in text and "RuntimeError: boom in user code" in text
    assert "trial 1 FAIL" in out and "[RuntimeError: boom in user code]" in out


def test_out_of_memory_and_nan_loss_end_their_trials_only(tmp_path, run_cli, script):
    script("oom", "nan", "ok")
    code, _out, err = run_cli(*TINY, *SCRIPTED, "study.n_trials=3", "study.name=oom-nan")
    assert code == 0, err
    study = load_study(tmp_path / "runs", "oom-nan")
    assert [t.state for t in study.trials] == [F, P, C]
    oom, nan = study.trials[0].user_attrs["reason"], study.trials[1].user_attrs["reason"]
    assert oom.startswith("out of GPU memory; lower data.batch_size or the model size")
    assert "OutOfMemoryError: CUDA out of memory" in oom
    assert "diverged" in nan and "nan" in nan.lower()
    uri = local_uri(tmp_path / "runs")
    runs = assert_same_in_mlflow(study, uri)
    assert "torch.OutOfMemoryError" in traceback_of(uri, runs[0]) or "OutOfMemoryError" in traceback_of(
        uri, runs[0]
    )


def test_failures_in_a_row_stop_the_study_with_a_summary(tmp_path, run_cli, script):
    script("raise", "raise", "raise", "raise")
    code, out, err = run_cli(
        *TINY, *SCRIPTED, "study.n_trials=6", "study.name=streak", "study.max_consecutive_failures=2"
    )
    assert code == 3
    assert "stopped: 2 trials failed in a row (study.max_consecutive_failures=2)" in err
    assert "trials 0, 1: RuntimeError: boom in user code" in err
    assert "traceback.txt" in err
    assert "Traceback" not in out + err
    study = load_study(tmp_path / "runs", "streak")
    assert [t.state for t in study.trials] == [F, F]  # the other 4 trials were not spent
    uri = local_uri(tmp_path / "runs")
    assert_same_in_mlflow(study, uri)
    client = mlflow.MlflowClient(uri)
    parent = client.search_runs(
        [client.get_experiment_by_name("streak").experiment_id], filter_string="tags.`tuner.role` = 'study'"
    )[0]
    assert "2 trials failed in a row" in parent.data.tags["tuner.stopped"]
    assert parent.info.status == "FINISHED"


def test_stop_on_failure_stops_at_the_first_failed_trial(tmp_path, run_cli, script):
    script("ok", "raise", "ok")
    code, _out, err = run_cli(
        *TINY, *SCRIPTED, "study.n_trials=3", "study.name=strict", "study.stop_on_failure=true"
    )
    assert code == 3
    assert "study.stop_on_failure=true" in err
    study = load_study(tmp_path / "runs", "strict")
    assert [t.state for t in study.trials] == [C, F]
    assert_same_in_mlflow(study, local_uri(tmp_path / "runs"))
