"""Ctrl-C and kill -9 at the moments around a trial's end lose nothing.

The process signals itself at a named point (``TUNER_TEST_SIGNAL``, :mod:`tuner._testpoint`):
before Optuna's tell, between the tell and the run's end, while the sidecar sends the
run's end, and during the report. Afterwards (after a rerun, for a kill) nothing is
RUNNING in Optuna or MLflow and every finished trial's run is ended as Optuna has it,
with its metrics and its LR curve.
"""

from __future__ import annotations

from pathlib import Path

import mlflow
import optuna
import pytest

from tests.conftest import TINY, logged_points, run_subprocess, running_anywhere
from tests.test_faults import load_study, trial_runs
from tuner.tracking.tracker import local_uri

#: The sidecar on, so that writes are held by it (it starts with the second trial).
ARGS = (*TINY, "tracking.sidecar=true", "report.enabled=false", "pruner=none")
_STATUS = {"COMPLETE": "FINISHED", "PRUNED": "FINISHED", "FAIL": "FAILED"}


def study_cli(tmp_path: Path, name: str, *args: str, signal_at: str = ""):
    done = run_subprocess(
        *ARGS, f"study.name={name}", *args, cwd=tmp_path, env={"TUNER_TEST_SIGNAL": signal_at}, timeout=300
    )
    assert "Traceback" not in done.stdout + done.stderr, done.stderr
    return done


def assert_whole(tmp_path: Path, name: str, *, finished: int) -> optuna.Study:
    """Nothing RUNNING; each finished trial's run ended as Optuna has it, with its records."""
    root = tmp_path / "runs"
    assert running_anywhere(root, name) == []
    study = load_study(root, name)
    assert sum(t.state.is_finished() for t in study.trials) == finished
    uri = local_uri(root)
    client = mlflow.MlflowClient(uri)
    runs = trial_runs(uri, name)
    for trial in study.trials:
        run = runs[trial.number]
        if str(trial.user_attrs.get("reason") or "").startswith("lost"):
            assert run.info.status == "KILLED"  # a trial killed in training: re-queued
            continue
        assert (run.info.status, run.data.tags["tuner.state"]) == (
            _STATUS[trial.state.name],
            trial.state.name,
        )
        if trial.state == optuna.trial.TrialState.COMPLETE:
            assert run.data.metrics["value"] == pytest.approx(trial.value)
            steps = trial.user_attrs["steps"]
            assert len(client.get_metric_history(run.info.run_id, "lr")) == logged_points(steps)
            assert len(client.get_metric_history(run.info.run_id, "val_acc")) == 3
            assert "lr_curve.png" in [a.path for a in client.list_artifacts(run.info.run_id)]
    return study


@pytest.mark.parametrize("point", ["before-tell", "after-tell", "store-write-end"])
def test_ctrl_c_around_a_trial_end_keeps_its_run(tmp_path, point):
    done = study_cli(tmp_path, "int", signal_at=f"{point}:2:INT")
    assert done.returncode == 130, done.stderr
    assert "interrupted: finished trials are kept" in done.stderr
    assert_whole(tmp_path, "int", finished=2)


@pytest.mark.parametrize("point", ["before-tell", "after-tell", "store-write-end"])
def test_kill_9_around_a_trial_end_is_mended_by_the_rerun(tmp_path, point):
    killed = study_cli(tmp_path, "kill", signal_at=f"{point}:2:KILL")
    assert killed.returncode == -9
    rerun = study_cli(tmp_path, "kill")
    assert rerun.returncode == 0, rerun.stderr
    study = assert_whole(tmp_path, "kill", finished=3 if point == "before-tell" else 2)
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(complete) == 2


def test_a_double_ctrl_c_in_the_report_stops_at_once_and_the_rerun_writes_it(tmp_path):
    args = ("report.enabled=true",)
    done = study_cli(tmp_path, "report", *args, signal_at="report:1:INT,report:1:INT")
    assert done.returncode == 130, done.stderr
    assert "interrupted" in done.stderr and "Error" not in done.stderr
    assert_whole(tmp_path, "report", finished=2)
    rerun = study_cli(tmp_path, "report", *args)
    assert rerun.returncode == 0, rerun.stderr
    assert (tmp_path / "runs" / "studies" / "report" / "report.md").exists()
    assert_whole(tmp_path, "report", finished=2)


def test_starting_over_keeps_the_old_studys_runs_apart_and_out_of_the_report(tmp_path, run_cli):
    first = (*TINY, "study.name=over")
    assert run_cli(*first, "report.enabled=false")[0] == 0
    code, out, err = run_cli(*TINY, "study.name=over", "trainer.max_steps=40", "study.resume=false")
    assert code == 0, out + err
    assert "kept apart, under the parent run 'over (replaced)'" in out
    uri = local_uri(tmp_path / "runs")
    client = mlflow.MlflowClient(uri)
    experiment = client.get_experiment_by_name("over").experiment_id
    parents = {
        r.data.tags["tuner.study"]: r for r in client.search_runs([experiment], "tags.`tuner.role` = 'study'")
    }
    assert set(parents) == {"over", "over (replaced)"}
    new, old = parents["over"], parents["over (replaced)"]
    assert new.data.params["trainer.max_steps"] == "40" and old.data.params["trainer.max_steps"] == "60"
    assert old.info.run_name == "over (replaced)"
    # Each study's trial runs sit under its own parent; the report names only the new ones.
    runs = client.search_runs([experiment], "tags.`tuner.role` = 'trial' and tags.`tuner.study` = 'over'")
    assert sorted(r.data.tags["tuner.trial"] for r in runs) == ["0", "1"]
    assert {r.data.tags["mlflow.parentRunId"] for r in runs} == {new.info.run_id}
    old_runs = client.search_runs([experiment], f"tags.`mlflow.parentRunId` = '{old.info.run_id}'")
    assert len(old_runs) == 2 and all(r.data.tags["tuner.replaced"] == "true" for r in old_runs)
    report = (tmp_path / "runs" / "studies" / "over" / "report.md").read_text()
    assert all(r.info.run_id not in report for r in [old, *old_runs])
    assert f"parent run `{new.info.run_id}`" in report
    assert "trainer.max_steps=40" in report  # "Reproduce the best trial" builds the new study's config
    assert running_anywhere(tmp_path / "runs", "over") == []


def test_a_trial_run_left_running_gets_optunas_result_and_reported_values(tmp_path):
    """What a rerun does when the spool lacked a run's end and its validation metrics."""
    from tuner.study.session import mend_trial_runs
    from tuner.tracking.tracker import Tracker

    study = optuna.create_study(direction="maximize")
    trial = study.ask()
    for step, value in ((20, 0.3), (40, 0.5)):
        trial.report(value, step)
    tracker = Tracker(local_uri(tmp_path), experiment="mend", spool_dir=tmp_path / "spool", sidecar=False)
    parent = tracker.parent_run("mend", params={})
    run = tracker.start_trial(parent, study_name="mend", number=0, params={"lr": 0.1}, config_yaml="")
    for key, value in {"steps": 40, "test_acc": 0.45, "reason": "done"}.items():
        trial.set_user_attr(key, value)
    study.tell(trial, 0.5)  # ... and the process is killed before the run's end
    assert tracker.drain(timeout=60)
    assert mend_trial_runs(study, tracker, parent, metric="val_acc") == [0]
    assert tracker.close(timeout=60) == []
    client = mlflow.MlflowClient(local_uri(tmp_path))
    ended = client.get_run(str(run.mlflow_id))
    assert (ended.info.status, ended.data.tags["tuner.state"]) == ("FINISHED", "COMPLETE")
    assert ended.data.metrics["value"] == 0.5 and ended.data.metrics["test_acc"] == 0.45
    assert ended.data.tags["tuner.reason"] == "done"
    history = client.get_metric_history(ended.info.run_id, "val_acc")
    assert sorted((m.step, m.value) for m in history) == [(20, 0.3), (40, 0.5)]
    assert mend_trial_runs(study, tracker, parent, metric="val_acc") == []  # nothing left RUNNING
