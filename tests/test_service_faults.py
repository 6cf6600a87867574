"""Services that go away mid-study (a real MLflow server, a real PostgreSQL), and secrets.

The study runs as the real command line in a child process; the scripted model holds a
trial at a known point (``hold-<n>`` / ``go-<n>`` files) while the test stops or starts
a server by its process id.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import mlflow
import optuna
import pytest

from tests.conftest import REPO, TINY, missing_service
from tests.mlflow_server import MlflowServer
from tests.postgres_server import PostgresServer, postgres_bin
from tests.test_faults import SCRIPTED, assert_same_in_mlflow, load_study
from tuner.tracking.tracker import local_uri

pytestmark = pytest.mark.slow
PG_PASSWORD = "pg-Secret-7f3a9c"


class Study:
    """``python -m tuner`` in a child process, its output collected as it comes."""

    def __init__(self, tmp_path: Path, *args: str, env: dict[str, str] | None = None) -> None:
        self.gate = tmp_path / "script"
        self.gate.mkdir(exist_ok=True)
        full_env = {
            **os.environ,
            "TUNER_HOME": str(tmp_path / "runs"),
            "TUNER_TEST_DIR": str(self.gate),
            "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
            **(env or {}),
        }
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tuner", *args],
            cwd=tmp_path,
            env=full_env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.out: list[str] = []
        self.err: list[str] = []
        self._readers = [
            threading.Thread(target=self._read, args=(self.process.stdout, self.out), daemon=True),
            threading.Thread(target=self._read, args=(self.process.stderr, self.err), daemon=True),
        ]
        for reader in self._readers:
            reader.start()

    @staticmethod
    def _read(stream, sink: list[str]) -> None:
        for line in stream:
            sink.append(line)

    def hold(self, *numbers: int) -> None:
        """Model constructions that wait for the test (0: the check build, n: trial n-1)."""
        for n in numbers:
            (self.gate / f"hold-{n}").touch()

    def reached(self, n: int, timeout: float = 600) -> None:
        """Waits until construction ``n`` is waiting."""
        self._wait(lambda: (self.gate / f"built-{n}").exists(), f"construction {n}", timeout)

    def release(self, n: int) -> None:
        (self.gate / f"go-{n}").touch()

    def said(self, text: str, timeout: float = 600) -> None:
        """Waits until the study's stderr holds ``text``."""
        self._wait(lambda: text in "".join(self.err), repr(text), timeout)

    def _wait(self, ready, what: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not ready():
            if self.process.poll() is not None:
                raise AssertionError(f"the study ended before {what}:\n{''.join(self.err)}")
            if time.monotonic() > deadline:
                self.process.kill()
                raise AssertionError(f"no {what} after {timeout} s")
            time.sleep(0.05)

    def finish(self, timeout: float = 900) -> tuple[int, str, str]:
        code = self.process.wait(timeout=timeout)
        for reader in self._readers:
            reader.join()
        return code, "".join(self.out), "".join(self.err)


def run_study(tmp_path: Path, *args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    return Study(tmp_path, *args, env=env).finish()


# ---------------------------------------------------------------------------------- MLflow


def test_mlflow_server_stopped_and_restarted_mid_study(tmp_path):
    server = MlflowServer(tmp_path / "mlflow-server")
    server.start()
    try:
        args = [
            *TINY,
            *SCRIPTED,
            "study.name=outage",
            f"tracking.uri={server.uri}",
            "tracking.retry_max_wait=1",
        ]
        # 1. Gone for trials 1 and 2, back for trials 3 and 4: everything reaches the server.
        study = Study(tmp_path, *args, "study.n_trials=5")
        study.hold(2, 4)
        study.reached(2)
        server.stop()
        study.release(2)
        study.reached(4)
        server.start()
        study.release(4)
        code, _out, err = study.finish()
        assert code == 0, err
        assert "does not answer" in err and "the study goes on" in err
        assert "is back after" in err
        assert "not logged" not in err
        assert not list((tmp_path / "runs" / "spool").glob("*.jsonl"))
        stored = load_study(tmp_path / "runs", "outage")
        assert len(stored.trials) == 5 and all(t.state.is_finished() for t in stored.trials)
        assert_same_in_mlflow(stored, server.uri)

        # 2. Gone from trial 5 to the end: the person is told what was not logged, and where it is kept.
        study = Study(tmp_path, *args, "study.n_trials=7", "tracking.flush_timeout=2")
        study.hold(7)  # constructions 0-5 were the first run's; 6 is this run's check build
        study.reached(7)
        server.stop()
        study.release(7)
        code, _out, err = study.finish()
        assert code == 0, err
        assert "warning: not logged in MLflow" in err
        assert "did not come back" in err
        assert "trial-0005" in err and "trial-0006" in err and "metrics" in err
        spools = list((tmp_path / "runs" / "spool").glob("outage.*.jsonl"))
        assert len(spools) == 1 and str(spools[0]) in err

        # 3. The next run of the study, with the server back, sends what was kept.
        server.start()
        code, out, err = run_study(tmp_path, *args, "study.n_trials=7")
        assert code == 0, err
        assert "note: sending" in out
        assert not list((tmp_path / "runs" / "spool").glob("*.jsonl"))
        stored = load_study(tmp_path / "runs", "outage")
        assert len(stored.trials) == 7
        runs = assert_same_in_mlflow(stored, server.uri)
        assert sorted(runs) == list(range(7))
        client = mlflow.MlflowClient(server.uri)
        for run in runs.values():
            assert len(client.get_metric_history(run.info.run_id, "val_acc")) == 3
            assert {"trial_config.yaml", "lr_curve.png"} <= {
                a.path for a in client.list_artifacts(run.info.run_id)
            }
    finally:
        server.stop()


# ------------------------------------------------------------------------------ PostgreSQL


@pytest.fixture
def postgres():
    if postgres_bin() is None:
        message = "PostgreSQL is not installed (scripts/ci/setup-postgres.sh installs it)"
        missing_service(message)
    pytest.importorskip("psycopg")
    server = PostgresServer(password=PG_PASSWORD)
    server.start()
    yield server
    server.remove()


def _pg_study(postgres: PostgresServer, name: str) -> optuna.Study:
    return optuna.load_study(study_name=name, storage=postgres.url)


def test_no_password_in_any_output_log_or_mlflow_record(tmp_path, postgres, monkeypatch):
    monkeypatch.setenv("TUNER_TEST_SCRIPT", "ok,ok,raise,ok")
    env = {"TUNER_STORAGE_URL": postgres.url}
    base = [*TINY, *SCRIPTED, "storage=postgres", "study.name=secret"]
    outputs = []
    code, out, err = run_study(tmp_path, *base, "study.n_trials=3", env=env)
    assert code == 0, err
    outputs += [out, err]
    stored = _pg_study(postgres, "secret")
    assert len(stored.trials) == 3
    assert_same_in_mlflow(stored, local_uri(tmp_path / "runs"))
    # The config printed, with the URL given on the command line rather than in the environment.
    code, out, err = run_study(tmp_path, "--cfg", "storage=postgres", f"storage.url={postgres.url}")
    assert code == 0 and "postgresql+psycopg://tuner:***@127.0.0.1" in out
    outputs += [out, err]
    # Errors, with and without --debug: an unreachable server, a wrong password.
    wrong_port = postgres.url.replace(f":{postgres.port}/", ":1/")
    for extra in ([], ["--debug"]):
        for url in (wrong_port, postgres.url.replace(PG_PASSWORD, PG_PASSWORD + "x")):
            code, out, err = run_study(tmp_path, *extra, *base, f"storage.url={url}", "study.name=other")
            assert code == 2 and "error: storage.url='postgresql+psycopg://tuner:***@" in err
            outputs += [out, err]
    for text in outputs:
        assert PG_PASSWORD not in text
    # Every file the study wrote (MLflow's database, artifacts, spool) and the server's log.
    files = [p for p in (tmp_path / "runs").rglob("*") if p.is_file()]
    assert any(p.name == "traceback.txt" for p in files) and any(p.name == "trial_config.yaml" for p in files)
    for path in files:
        assert PG_PASSWORD.encode() not in path.read_bytes(), path
    assert PG_PASSWORD not in postgres.log()
    trial_config = next(p for p in files if p.name == "trial_config.yaml").read_text()
    assert "url: postgresql+psycopg://tuner:***@127.0.0.1" in trial_config
    # And every MLflow param, tag and metric name, read back through MLflow.
    client = mlflow.MlflowClient(local_uri(tmp_path / "runs"))
    for run in client.search_runs([client.get_experiment_by_name("secret").experiment_id]):
        assert PG_PASSWORD not in repr((run.data.params, run.data.tags, run.data.metrics))


def test_postgres_gone_briefly_is_ridden_out(tmp_path, postgres):
    args = [
        *TINY,
        *SCRIPTED,
        "storage=postgres",
        "study.name=blip",
        "study.n_trials=3",
        "storage.retry_wait=0.5",
    ]
    study = Study(tmp_path, *args, env={"TUNER_STORAGE_URL": postgres.url, "TUNER_TEST_SCRIPT": ""})
    study.hold(2)
    study.reached(2)  # trial 0 is stored; trial 1 is about to train
    postgres.stop()
    study.release(2)
    study.said("did not answer while")
    postgres.start()
    code, _out, err = study.finish()
    assert code == 0, err
    assert "retry 1/5" in err
    assert PG_PASSWORD not in err
    stored = _pg_study(postgres, "blip")
    assert [t.state for t in stored.trials] == [optuna.trial.TrialState.COMPLETE] * 3
    assert_same_in_mlflow(stored, local_uri(tmp_path / "runs"))


def test_postgres_gone_for_good_stops_cleanly_keeping_finished_trials(tmp_path, postgres):
    args = [
        *TINY, *SCRIPTED, "storage=postgres", "study.name=gone", "study.n_trials=4",
        "storage.retries=2", "storage.retry_wait=0.2",
    ]  # fmt: skip
    study = Study(tmp_path, *args, env={"TUNER_STORAGE_URL": postgres.url, "TUNER_TEST_SCRIPT": ""})
    study.hold(3)
    study.reached(3)  # trials 0 and 1 are stored; trial 2 is about to train
    postgres.stop()
    study.release(3)
    code, out, err = study.finish()
    assert code == 3, err
    assert "stopped: the study storage did not answer while saving a trial's result (3 attempts" in err
    assert "Finished trials are kept" in err
    assert "Traceback" not in out + err and PG_PASSWORD not in out + err
    postgres.start()
    stored = _pg_study(postgres, "gone")
    finished = [t for t in stored.trials if t.state.is_finished()]
    assert [t.number for t in finished] == [0, 1]
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in finished)
    uri = local_uri(tmp_path / "runs")
    runs = assert_same_in_mlflow(stored, uri)
    assert runs[2].info.status == "FAILED"
    assert runs[2].data.tags["tuner.reason"] == "not saved: the study storage did not answer"
    client = mlflow.MlflowClient(uri)
    parent = client.search_runs(
        [client.get_experiment_by_name("gone").experiment_id], filter_string="tags.`tuner.role` = 'study'"
    )[0]
    assert parent.info.status == "FAILED"
    assert "did not answer" in parent.data.tags["tuner.stopped"]
