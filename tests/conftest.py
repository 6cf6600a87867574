"""Shared fixtures: every test writes under its own tmp_path and runs on one thread."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import torch
from omegaconf import DictConfig

from tuner.cli import compose, main

REPO = Path(__file__).resolve().parent.parent
#: Overrides that shrink a study to seconds; tests add their own after these.
TINY = [
    "trainer.max_steps=60",
    "trainer.val_check_interval=20",
    "tracking.step_flush_every=20",
    "study.n_trials=2",
    "data.num_samples=600",
]


@pytest.fixture(autouse=True)
def _one_thread_and_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    torch.set_num_threads(1)
    monkeypatch.setenv("TUNER_HOME", str(tmp_path / "runs"))
    monkeypatch.setenv("TUNER_CACHE", str(REPO / ".cache" / "data"))
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def compose_cfg() -> Callable[..., DictConfig]:
    """Composes the real config tree with overrides (outputs under the test's tmp_path)."""
    return lambda *overrides: compose(list(overrides))


@pytest.fixture
def run_cli(capsys: pytest.CaptureFixture[str]) -> Callable[..., tuple[int, str, str]]:
    """Runs ``python -m tuner`` in this process; returns (exit code, stdout, stderr)."""

    def run(*args: str) -> tuple[int, str, str]:
        code = main(list(args))
        out, err = capsys.readouterr()
        return code, out, err

    return run


@pytest.fixture
def script(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[..., None]:
    """Sets what each construction of the scripted model does (0 is the tuner's check build)."""
    folder = tmp_path / "script"
    folder.mkdir()
    monkeypatch.setenv("TUNER_TEST_DIR", str(folder))
    return lambda *modes: monkeypatch.setenv("TUNER_TEST_SCRIPT", ",".join(("ok", *modes)))


def run_subprocess(
    *args: str, cwd: Path, env: dict[str, str] | None = None, timeout: float = 600
) -> subprocess.CompletedProcess[str]:
    """Runs the real command line in a child process."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "tuner", *args],
        cwd=cwd,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def missing_service(reason: str) -> None:
    """Skips where a developer lacks a service; in CI, which installs them, that is a failure."""
    if os.environ.get("CI"):
        pytest.fail(reason)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A real PostgreSQL server for the session (tests/services.py); its URL has a password."""
    from tests.services import postgres_available, postgres_server

    reason = postgres_available()
    if reason:
        missing_service(reason)
    with postgres_server() as url:
        yield url


@pytest.fixture(scope="session")
def slurm_env() -> Iterator[dict[str, str]]:
    """A real one-node SLURM cluster for the session; the environment its clients need."""
    from tests.services import slurm_available, slurm_cluster

    reason = slurm_available()
    if reason:
        missing_service(reason)
    with slurm_cluster() as env:
        yield env


def logged_points(steps: int, every: int = 10) -> int:
    """Points a run of ``steps`` steps logs per curve (``tracking.log_every_n_steps``)."""
    return len({s for s in range(steps) if s % every == 0} | {steps - 1})


def running_anywhere(root: Path, name: str) -> list[str]:
    """What a study left RUNNING: its Optuna trials and the MLflow runs of its experiment."""
    import mlflow
    import optuna
    from optuna.storages.journal import JournalFileBackend, JournalStorage

    from tuner.tracking.tracker import local_uri

    left = []
    storage = JournalStorage(JournalFileBackend(str(root / "optuna.journal")))
    if name in [s.study_name for s in optuna.get_all_study_summaries(storage)]:
        study = optuna.load_study(study_name=name, storage=storage)
        left += [
            f"optuna trial {t.number}" for t in study.trials if t.state == optuna.trial.TrialState.RUNNING
        ]
    client = mlflow.MlflowClient(local_uri(root))
    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        runs = client.search_runs([experiment.experiment_id], filter_string="attributes.status = 'RUNNING'")
        left += [f"mlflow run {r.info.run_name}" for r in runs]
    return left
