"""The private names of Optuna and MLflow that ``tuner.compat`` wraps still exist, in the shape
it uses: a library upgrade that renames or reshapes one fails here, not mid-study."""

from __future__ import annotations

import inspect

import optuna
from mlflow.entities import ViewType
from mlflow.tracking import MlflowClient
from optuna.storages._heartbeat import BaseHeartbeat

from tuner import compat


def _params(func: object) -> list[str]:
    return list(inspect.signature(func).parameters)  # type: ignore[arg-type]


def test_optuna_study_and_trial_ids(tmp_path):
    study = optuna.create_study(storage=f"sqlite:///{tmp_path / 'o.db'}", study_name="s")
    trial = study.ask()
    storage = compat.storage_of(study)
    assert isinstance(storage, optuna.storages.BaseStorage)
    assert storage.get_study_id_from_name("s") == compat.study_id(study)
    assert storage.get_trial(compat.trial_storage_id(trial)).number == trial.number
    frozen = study.get_trials(deepcopy=False)[0]
    assert compat.trial_storage_id(frozen) == compat.trial_storage_id(trial)


def test_optuna_heartbeat_hook():
    assert _params(BaseHeartbeat._get_stale_trial_ids) == ["self", "study_id"]
    assert _params(compat.get_heartbeat_thread) == ["trial_id", "storage"]
    assert _params(compat.heartbeat_enabled) == ["storage"]
    assert compat.BaseHeartbeat is BaseHeartbeat


def test_optuna_reaps_stale_trials(tmp_path):
    storage = optuna.storages.RDBStorage(f"sqlite:///{tmp_path / 'o.db'}", heartbeat_interval=60)
    study = optuna.create_study(storage=storage)
    study.ask()
    assert compat.stale_trial_ids(storage, study) == []


def test_mlflow_hard_delete(tmp_path):
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'm.db'}")
    store = client._tracking_client.store
    assert _params(store._hard_delete_run) == ["run_id"]
    assert _params(store._hard_delete_experiment) == ["experiment_id"]
    experiment = client.create_experiment("e", artifact_location=str(tmp_path / "a"))
    run = client.create_run(experiment)
    client.delete_run(run.info.run_id)
    compat.hard_delete(client, run_id=run.info.run_id)
    assert not client.search_runs([experiment], run_view_type=ViewType.ALL)
