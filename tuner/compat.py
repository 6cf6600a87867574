"""Every private name of Optuna and MLflow that tuner uses, in this one module.

Neither library has a public way to do these things (checked against Optuna 5.1 and
MLflow 3): a study's storage and its id, a live trial's storage id, the heartbeat base class
and the ids of its stale trials, and MLflow's hard delete of a run. Each wrapper says why
it is needed; ``tests/test_compat.py`` fails when a library renames or reshapes one.
"""

from __future__ import annotations

from typing import Any

import optuna
from mlflow.tracking import MlflowClient
from optuna.storages import BaseStorage

# Optuna exports fail_stale_trials but not the heartbeat machinery: the journal storage with
# heartbeats (tuner.storage.coordination) subclasses BaseHeartbeat and records its beats on the
# thread that get_heartbeat_thread starts.
from optuna.storages._heartbeat import BaseHeartbeat, BaseHeartbeatThread, get_heartbeat_thread
from optuna.storages._heartbeat import is_heartbeat_enabled as heartbeat_enabled
from optuna.trial import FrozenTrial

__all__ = [
    "BaseHeartbeat",
    "BaseHeartbeatThread",
    "get_heartbeat_thread",
    "hard_delete",
    "heartbeat_enabled",
    "stale_trial_ids",
    "storage_of",
    "study_id",
    "trial_storage_id",
]


def storage_of(study: optuna.Study) -> BaseStorage:
    """The study's storage object: Optuna has no public accessor (``optuna.delete_study`` and the
    heartbeat helpers take the storage itself, and per-trial reads by id go through it)."""
    return study._storage


def study_id(study: optuna.Study) -> int:
    """The study's id in its storage: Optuna has no public accessor."""
    return study._study_id


def trial_storage_id(trial: optuna.Trial | FrozenTrial) -> int:
    """A trial's id in its storage (not its number): the storage's per-trial calls take it, and
    neither ``optuna.Trial`` nor ``FrozenTrial`` exposes it."""
    return trial._trial_id


def stale_trial_ids(storage: BaseHeartbeat, study: optuna.Study) -> list[int]:
    """The running trials whose heartbeat stopped. ``optuna.storages.fail_stale_trials`` fails them
    but does not say which ones this process failed, which the re-queue needs."""
    return storage._get_stale_trial_ids(study_id(study))


def hard_delete(client: MlflowClient, *, run_id: str | None = None, experiment_id: str | None = None) -> None:
    """Removes a deleted run or experiment from the store's tables, so that nothing of it is left.

    MLflow's public delete only marks it deleted (``mlflow gc``, a separate command, does the
    rest). A store without both methods (e.g. a REST store) keeps the soft delete.
    """
    store: Any = client._tracking_client.store
    if not all(hasattr(store, name) for name in ("_hard_delete_run", "_hard_delete_experiment")):
        return
    if run_id is not None:
        store._hard_delete_run(run_id)
    if experiment_id is not None:
        store._hard_delete_experiment(experiment_id)
