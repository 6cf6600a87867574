"""Following a study that other processes run: the wait for their last MLflow writes."""

from __future__ import annotations

import threading
import time

import optuna
from mlflow.tracking import MlflowClient

from tuner.launch.monitor import settle_trial_runs
from tuner.tracking.tracker import Tracker, local_uri


def _study_with_one_trial(tracker: Tracker, parent: str) -> tuple[optuna.Study, str]:
    """A finished Optuna trial whose MLflow run is still RUNNING, as a worker leaves it
    between telling Optuna and sending the run's end."""
    study = optuna.create_study()
    trial = study.ask()
    run = tracker.start_trial(parent, study_name="s", number=trial.number, params={"lr": 0.1}, config_yaml="")
    tracker.close()  # the run exists in the store, not yet ended
    run_id = run.mlflow_id
    assert run_id is not None
    trial.set_user_attr("mlflow_run_id", run_id)
    study.tell(trial, 0.5)
    return study, run_id


def test_waits_until_another_process_ends_the_trial_runs(tmp_path):
    uri = local_uri(tmp_path)
    tracker = Tracker(uri, experiment="s", artifact_root=tmp_path / "art", sidecar=False)
    parent = tracker.parent_run("s", params={})
    study, run_id = _study_with_one_trial(tracker, parent)
    # The worker's writer thread, late: it ends the run a second from now.
    other = MlflowClient(tracking_uri=uri)
    ender = threading.Timer(1.0, lambda: other.set_terminated(run_id, "FINISHED"))
    started = time.monotonic()
    ender.start()
    try:
        assert settle_trial_runs(study, tracker, parent, timeout=60) == []
    finally:
        ender.join()
    assert time.monotonic() - started >= 1.0
    assert other.get_run(run_id).info.status == "FINISHED"


def test_gives_up_after_the_timeout_and_names_the_runs_left(tmp_path):
    tracker = Tracker(local_uri(tmp_path), experiment="s", artifact_root=tmp_path / "art", sidecar=False)
    parent = tracker.parent_run("s", params={})
    study, run_id = _study_with_one_trial(tracker, parent)
    assert settle_trial_runs(study, tracker, parent, timeout=0.5) == [run_id]
