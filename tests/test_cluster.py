"""SLURM worker jobs on one PostgreSQL-backed study, against real servers started by the tests."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import mlflow
import optuna
import pytest
from optuna.trial import TrialState

from tests.conftest import TINY
from tuner.storage.coordination import retried_numbers
from tuner.study.optuna_study import count_finished
from tuner.tracking.tracker import local_uri

pytestmark = pytest.mark.slow
CLUSTER = [
    "storage=postgres",
    "pruner=none",
    # Trials of 200 steps at a low LR may not fall 2% below their start by step 100: the
    # not-learning stop is beside the point of these tests, which count complete trials.
    "trainer.not_learning_after=null",
    "study.n_trials=9",
    "trainer.max_steps=200",
    "trainer.val_check_interval=50",
    "tracking.step_flush_every=50",
    "launcher=slurm",
    "launcher.workers=3",
    "launcher.wait=true",
    "launcher.poll_interval=1",
    "storage.heartbeat_interval=1",
    "storage.grace_period=5",
]


def start(tmp_path: Path, env: dict[str, str], *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "tuner", *TINY, *CLUSTER, *args],
        cwd=tmp_path,
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def load(url: str, name: str) -> optuna.Study:
    return optuna.load_study(study_name=name, storage=optuna.storages.RDBStorage(url))


def trial_runs(tmp_path: Path, name: str) -> tuple[list[Any], list[Any]]:
    mlflow.set_tracking_uri(local_uri(tmp_path / "runs"))
    found = mlflow.search_runs(experiment_names=[name], output_format="list")
    return (
        [r for r in found if r.data.tags.get("tuner.role") == "study"],
        [r for r in found if r.data.tags.get("tuner.role") == "trial"],
    )


def assert_whole(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    """Nine counted trials, all complete, none running or queued; returns them."""
    retried = retried_numbers(study.trials)
    counted = [t for t in study.trials if t.state.is_finished() and t.number not in retried]
    counted = [t for t in counted if not t.system_attrs.get("tuner.surplus")]
    assert count_finished(study) == 9
    assert [t.state for t in counted] == [TrialState.COMPLETE] * 9
    assert not study.get_trials(states=(TrialState.RUNNING, TrialState.WAITING))
    return counted


def assert_no_password(tmp_path: Path, url: str, *texts: str) -> None:
    """The storage password is in no output, log, job file, or MLflow record."""
    password = url.split(":")[2].split("@")[0]
    for text in texts:
        assert password not in text
    for path in (tmp_path / "runs").rglob("*"):
        if path.is_file():
            assert password.encode() not in path.read_bytes(), path


def test_three_slurm_jobs_finish_one_postgres_study(tmp_path, postgres_url, slurm_env):
    env = {**slurm_env, "TUNER_STORAGE_URL": postgres_url}
    # Submit and return at once, then follow the study from a second command.
    proc = start(tmp_path, env, "study.name=slurm-pg", "launcher.wait=false")
    submitted, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, submitted + err
    assert "submitted 3 worker jobs to SLURM" in submitted
    assert "launcher.submit=false launcher.wait=true" in submitted
    assert count_finished(load(postgres_url, "slurm-pg")) < 9  # it did not wait for the trials
    proc = start(tmp_path, env, "study.name=slurm-pg", "launcher.submit=false")
    out, err = proc.communicate(timeout=900)
    assert proc.returncode == 0, out + err
    assert "best trials of slurm-pg" in out
    counted = assert_whole(load(postgres_url, "slurm-pg"))
    workers = {t.user_attrs["worker"]["name"] for t in counted}
    assert all(name.startswith("slurm-") for name in workers)
    assert len(workers) >= 2  # the jobs ran side by side, each pulling trials
    parents, trials = trial_runs(tmp_path, "slurm-pg")
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    assert parents[0].data.params["storage.url"].startswith("postgresql+psycopg://tuner:***@")
    assert sorted(r.info.status for r in trials) == ["FINISHED"] * 9
    assert_no_password(tmp_path, postgres_url, submitted, out, err, str(parents[0].data.params))


def test_a_sigkilled_slurm_worker_leaves_the_study_whole(tmp_path, postgres_url, slurm_env):
    name = "slurm-kill"
    proc = start(tmp_path, {**slurm_env, "TUNER_STORAGE_URL": postgres_url}, f"study.name={name}")
    victim = None
    deadline = time.monotonic() + 600
    while victim is None and time.monotonic() < deadline:
        time.sleep(0.5)
        try:
            running = load(postgres_url, name).get_trials(states=(TrialState.RUNNING,))
        except KeyError:
            continue
        victim = next((t for t in running if {"worker", "mlflow_run_id"} <= set(t.user_attrs)), None)
    assert victim is not None, "no trial was caught running"
    os.kill(victim.user_attrs["worker"]["pid"], signal.SIGKILL)
    out, err = proc.communicate(timeout=900)
    assert proc.returncode == 0, out + err
    study = load(postgres_url, name)
    assert_whole(study)
    assert study.trials[victim.number].state == TrialState.FAIL
    retry = [t for t in study.trials if t.system_attrs.get("failed_trial") == victim.number]
    assert len(retry) == 1 and retry[0].state == TrialState.COMPLETE
    _, trials = trial_runs(tmp_path, name)
    status = {r.info.run_id: r.info.status for r in trials}
    assert status[victim.user_attrs["mlflow_run_id"]] == "KILLED"
    assert "RUNNING" not in status.values()
