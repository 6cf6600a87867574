"""Local workers on one journal-backed study: shared total, lost workers, Ctrl-C and resume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import mlflow
import optuna
import pytest
from optuna.storages.journal import JournalFileBackend, JournalStorage
from optuna.trial import TrialState

from tests.conftest import TINY
from tests.mlflow_server import free_port
from tuner.storage.coordination import retried_numbers
from tuner.study.optuna_study import count_finished
from tuner.tracking.tracker import local_uri

pytestmark = pytest.mark.slow
#: Trials long enough (a few seconds) to be caught in the middle.
LONGER = ["trainer.max_steps=300", "trainer.val_check_interval=100", "tracking.step_flush_every=100"]


def load(tmp_path: Path, name: str) -> optuna.Study:
    storage = JournalStorage(JournalFileBackend(str(tmp_path / "runs" / "optuna.journal")))
    return optuna.load_study(study_name=name, storage=storage)


def runs(tmp_path: Path, name: str) -> tuple[list[Any], list[Any]]:
    """The study's MLflow parent runs and trial runs."""
    mlflow.set_tracking_uri(local_uri(tmp_path / "runs"))
    found = mlflow.search_runs(experiment_names=[name], output_format="list")
    parents = [r for r in found if r.data.tags.get("tuner.role") == "study"]
    trials = [r for r in found if r.data.tags.get("tuner.role") == "trial"]
    return parents, trials


def start(tmp_path: Path, *args: str) -> subprocess.Popen[str]:
    """The real command line in a child process (so it can be signalled)."""
    return subprocess.Popen(
        [sys.executable, "-m", "tuner", *args],
        cwd=tmp_path,
        env=dict(os.environ),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def wait_for(tmp_path: Path, name: str, ready: Callable[[optuna.Study], Any], timeout: float = 300) -> Any:
    """Polls the study until ``ready`` returns something true; returns it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        time.sleep(0.5)
        try:
            found = ready(load(tmp_path, name))
        except (KeyError, FileNotFoundError):
            continue
        if found:
            return found
    raise AssertionError(f"study {name} never reached the awaited state")


def running_with_run(study: optuna.Study) -> optuna.trial.FrozenTrial | None:
    """A trial that is training now (it has its MLflow run and its worker)."""
    for trial in study.get_trials(states=(TrialState.RUNNING,)):
        if "mlflow_run_id" in trial.user_attrs and "worker" in trial.user_attrs:
            return trial
    return None


def test_four_workers_share_one_total_without_duplicates(tmp_path, run_cli):
    code, out, err = run_cli(
        *TINY, "study.name=four", "study.n_trials=8", "launcher=local", "launcher.workers=4"
    )
    assert code == 0, out + err
    study = load(tmp_path, "four")
    counted = [t for t in study.trials if t.state.is_finished() and not t.system_attrs.get("tuner.surplus")]
    assert count_finished(study) == 8
    assert len(counted) == 8
    assert not study.get_trials(states=(TrialState.RUNNING, TrialState.WAITING))
    # No trial ran twice: every counted trial drew its own parameters.
    assert len({json.dumps(t.params, sort_keys=True) for t in counted}) == 8
    assert len({t.user_attrs["worker"]["name"] for t in counted}) >= 2
    parents, trials = runs(tmp_path, "four")
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    assert sorted(int(r.data.tags["tuner.trial"]) for r in trials) == sorted(t.number for t in counted)
    logs = "".join(p.read_text() for p in (tmp_path / "runs" / "workers" / "four").glob("worker-*.log"))
    assert "database is locked" not in logs + out + err
    assert "Traceback" not in logs


def test_a_sigkilled_worker_trial_is_failed_requeued_and_its_run_killed(tmp_path):
    args = (*TINY, *LONGER, "study.name=kill", "study.n_trials=4", "pruner=none", "launcher=local",
            "launcher.workers=2", "launcher.poll_interval=1", "storage.heartbeat_interval=1",
            "storage.grace_period=4")  # fmt: skip
    proc = start(tmp_path, *args)
    victim = wait_for(tmp_path, "kill", running_with_run)
    os.kill(victim.user_attrs["worker"]["pid"], signal.SIGKILL)
    out, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, out
    study = load(tmp_path, "kill")
    assert count_finished(study) == 4
    assert not study.get_trials(states=(TrialState.RUNNING, TrialState.WAITING))
    killed = study.trials[victim.number]
    assert killed.state == TrialState.FAIL
    assert victim.number in retried_numbers(study.trials)
    retry = [t for t in study.trials if t.system_attrs.get("failed_trial") == victim.number]
    # Run again to its own end: complete, or stopped by a guard (the workers' samplers are
    # seeded at random, and a sampled LR may not learn or may diverge in 300 steps).
    assert len(retry) == 1 and retry[0].state in (TrialState.COMPLETE, TrialState.PRUNED)
    assert retry[0].params == killed.params
    _, trials = runs(tmp_path, "kill")
    by_id = {r.info.run_id: r for r in trials}
    assert by_id[victim.user_attrs["mlflow_run_id"]].info.status == "KILLED"
    # Either the heartbeat's grace ran out or a worker on this host saw the process gone
    # first (tuner.storage.coordination.reap_dead_owners): which comes first is timing.
    reason = by_id[victim.user_attrs["mlflow_run_id"]].data.tags["tuner.reason"]
    assert "no heartbeat" in reason or "worker lost: its process ended" in reason
    assert not [r for r in trials if r.info.status == "RUNNING"]
    assert f"trial {victim.number} FAIL" in out


def test_an_interrupted_study_resumes_to_exactly_its_total(tmp_path, run_cli):
    args = (*TINY, *LONGER, "study.name=resume", "study.n_trials=5", "launcher=local", "launcher.workers=2",
            "launcher.poll_interval=1")  # fmt: skip
    proc = start(tmp_path, *args)
    wait_for(tmp_path, "resume", lambda s: count_finished(s) >= 1 and running_with_run(s))
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 130, out
    study = load(tmp_path, "resume")
    assert count_finished(study) < 5
    # Every trial the workers held ended as interrupted and went back to the queue.
    assert not study.get_trials(states=(TrialState.RUNNING,))
    interrupted = [
        t
        for t in study.get_trials(states=(TrialState.FAIL,))
        if str(t.user_attrs.get("reason", "")).startswith("interrupted")
    ]
    assert interrupted
    queued = study.get_trials(states=(TrialState.WAITING,))
    assert sorted(t.system_attrs["failed_trial"] for t in queued) == sorted(t.number for t in interrupted)
    parents, trials = runs(tmp_path, "resume")
    assert [r.info.status for r in parents] == ["KILLED"]
    assert not [r for r in trials if r.info.status == "RUNNING"]

    code, out, err = run_cli(*args)
    assert code == 0, out + err
    study = load(tmp_path, "resume")
    assert count_finished(study) == 5
    assert not study.get_trials(states=(TrialState.RUNNING, TrialState.WAITING))
    parents, trials = runs(tmp_path, "resume")
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    assert not [r for r in trials if r.info.status == "RUNNING"]
    assert sum(r.info.status == "FINISHED" for r in trials) == 5

    # Once more on the complete study: nothing to run, the waiting workers are let go.
    code, out, err = run_cli(*args)
    assert code == 0, out + err
    assert "resuming with 5 finished" in out
    assert count_finished(load(tmp_path, "resume")) == 5
    assert len(runs(tmp_path, "resume")[0]) == 1


@pytest.mark.parametrize(
    ("overrides", "key"),
    [
        (["launcher=local", "storage=memory"], "storage"),
        (["launcher=local", "launcher.workers=0"], "launcher.workers"),
        (
            ["launcher=local", "launcher.trials_per_gpu=2", "launcher.gpus_per_worker=2"],
            "launcher.trials_per_gpu",
        ),
        (["launcher=slurm", "storage=sqlite"], "storage"),
        (["trainer.strategy=ddp"], "trainer.devices"),
        (["trainer.strategy=ddp_spawn", "trainer.devices=2"], "trainer.strategy"),
    ],
)
def test_bad_launcher_settings_are_one_line(tmp_path, run_cli, overrides, key):
    code, out, err = run_cli(*TINY, *overrides)
    assert code == 2
    assert err.strip().startswith(f"error: {key}=") and len(err.strip().splitlines()) == 1, err
    assert "Traceback" not in out + err
    assert not (tmp_path / "runs" / "optuna.journal").exists()


@pytest.mark.parametrize(
    ("overrides", "key"),
    [
        (["search.params.lr.low=0.5"], "search.params.lr.low"),  # found by validation
        # Found when the launcher opens the study, after validation.
        (["tracking.uri=http://127.0.0.1:{closed}"], "tracking.uri"),
    ],
)
def test_bad_input_stops_the_started_workers_and_removes_their_folder(tmp_path, run_cli, overrides, key):
    # The workers start before the config is checked (their imports overlap with it).
    filled = [o.format(closed=free_port()) for o in overrides]
    code, out, err = run_cli(*TINY, "launcher=local", "launcher.workers=2", *filled)
    assert code == 2, out + err
    assert err.strip().startswith(f"error: {key}") and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "runs" / "workers").exists()


def test_a_config_error_in_the_workers_is_one_line_and_leaves_nothing(tmp_path, run_cli):
    code, out, err = run_cli(
        *TINY, "study.name=bad", "study.metric=val_nope", "launcher=local", "launcher.workers=2"
    )
    assert code == 2, out + err
    assert err.strip().startswith("error: study.metric='val_nope'") and len(err.strip().splitlines()) == 1
    storage = JournalStorage(JournalFileBackend(str(tmp_path / "runs" / "optuna.journal")))
    assert "bad" not in {s.study_name for s in optuna.get_all_study_summaries(storage)}
    mlflow.set_tracking_uri(local_uri(tmp_path / "runs"))
    assert (
        mlflow.get_experiment_by_name("bad") is None
        or mlflow.get_experiment_by_name("bad").lifecycle_stage == "deleted"
    )
