"""How workers sharing one study stay consistent: slots of the total, heartbeats, lost trials.

Several processes (local workers, SLURM jobs) run the same loop against one storage.
Three rules keep the study exact:

* ``claim_slot``: after ``ask``, a trial runs only if fewer than ``study.n_trials`` trials
  are ahead of it, so racing workers never overshoot the total.
* heartbeats: the worker that holds a trial records a heartbeat every few seconds
  (Optuna's heartbeat on RDB storage; ``JournalHeartbeatStorage`` for the journal file).
* ``reap_stale``: a RUNNING trial silent for longer than the grace period lost its worker;
  it is marked FAIL, re-queued (Optuna's ``RetryHeartbeatStaleTrialCallback``) and its MLflow run
  is ended as KILLED by whoever notices first.
* ``reap_dead_owners``: a RUNNING trial whose process (``owner``, recorded on the trial) was
  on this machine and has ended (killed, a second Ctrl-C) is lost at once, heartbeat or not.
"""

from __future__ import annotations

import contextlib
import copy
import os
import socket
import time
from collections.abc import Callable, Iterable

import optuna
from optuna.exceptions import UpdateFinishedTrialError
from optuna.storages import BaseStorage
from optuna.storages.journal import BaseJournalBackend, JournalStorage
from optuna.trial import FrozenTrial, TrialState

from tuner.compat import (
    BaseHeartbeat,
    BaseHeartbeatThread,
    get_heartbeat_thread,
    stale_trial_ids,
    storage_of,
    trial_storage_id,
)
from tuner.compat import heartbeat_enabled as _heartbeat_enabled
from tuner.processes import process_alive

HEARTBEAT_ATTR = "tuner.heartbeat"
SURPLUS_ATTR = "tuner.surplus"
StaleCallback = Callable[[optuna.Study, FrozenTrial], None]


class JournalHeartbeatStorage(JournalStorage, BaseHeartbeat):
    """Optuna's journal storage with heartbeats, which Optuna gives only to RDB storage.

    The heartbeat is a trial system attribute holding the writer's clock (workers of one
    journal file share a machine or a file system, and so a clock).

    Args:
        backend: The journal backend (a file).
        heartbeat_interval: Seconds between heartbeats of a running trial.
        grace_period: Seconds of silence after which a running trial is stale.
        stale_callback: Called with each trial failed for staleness (the retry).
    """

    def __init__(
        self,
        backend: BaseJournalBackend,
        *,
        heartbeat_interval: int,
        grace_period: int,
        stale_callback: StaleCallback | None = None,
    ) -> None:
        super().__init__(backend)
        self.heartbeat_interval = heartbeat_interval
        self.grace_period = grace_period
        self.stale_callback = stale_callback

    def record_heartbeat(self, trial_id: int) -> None:
        # Another worker may have declared this trial lost; its owner finds out at tell.
        with contextlib.suppress(UpdateFinishedTrialError):
            self.set_trial_system_attr(trial_id, HEARTBEAT_ATTR, time.time())

    # Optuna's hook (see tuner.compat.stale_trial_ids): fail_stale_trials asks it.
    def _get_stale_trial_ids(self, study_id: int) -> list[int]:
        now = time.time()
        stale = []
        for trial in self.get_all_trials(study_id, deepcopy=False, states=(TrialState.RUNNING,)):
            if now - last_seen(trial) > self.grace_period:
                stale.append(trial_storage_id(trial))
        return stale

    def get_heartbeat_interval(self) -> int | None:
        return self.heartbeat_interval

    def get_heartbeat_stale_trial_callback(self) -> StaleCallback | None:
        return self.stale_callback


def last_seen(trial: FrozenTrial) -> float:
    """When the worker of a running trial last showed it was alive (epoch seconds)."""
    beat = trial.system_attrs.get(HEARTBEAT_ATTR)
    start = trial.datetime_start.timestamp() if trial.datetime_start else 0.0
    # A re-queued trial inherits its predecessor's heartbeat; its own start is later.
    return max(float(beat or 0.0), start)


def heartbeat_enabled(storage: BaseStorage) -> bool:
    """Whether the storage records heartbeats (journal and RDB stores with an interval)."""
    return _heartbeat_enabled(storage)


def heartbeat(study: optuna.Study, trial_id: int) -> BaseHeartbeatThread:
    """A context that records the trial's heartbeat on a thread while the trial runs."""
    return get_heartbeat_thread(trial_id, storage_of(study))


def reap_stale(
    study: optuna.Study, *, on_lost: Callable[[FrozenTrial], None] | None = None
) -> list[FrozenTrial]:
    """Fails the trials whose worker stopped beating, re-queues them, reports each once.

    Several workers may notice the same trial; the storage lets exactly one of them
    change its state, and only that one re-queues it and calls ``on_lost``.
    """
    storage = storage_of(study)
    if not isinstance(storage, BaseHeartbeat) or not heartbeat_enabled(storage):
        return []
    lost: list[FrozenTrial] = []
    for trial_id in stale_trial_ids(storage, study):
        try:
            if storage.set_trial_state_values(trial_id, state=TrialState.FAIL):
                lost.append(copy.deepcopy(storage.get_trial(trial_id)))
        except UpdateFinishedTrialError:
            continue
    retry = storage.get_heartbeat_stale_trial_callback()
    for trial in lost:
        if retry is not None:
            retry(study, trial)
        if on_lost is not None:
            on_lost(trial)
    return lost


def this_process(name: str = "main") -> dict[str, object]:
    """Who runs a trial (its ``worker`` user attribute): a name, the host and the pid."""
    return {"name": name, "host": socket.gethostname(), "pid": os.getpid()}


def reap_dead_owners(
    study: optuna.Study, *, max_retry: int, on_lost: Callable[[FrozenTrial], None] | None = None
) -> list[FrozenTrial]:
    """Fails and re-queues the RUNNING trials whose process, on this machine, has ended.

    Without a heartbeat (or before its grace period) nothing else would: a study killed
    mid-trial kept that trial RUNNING for good, and its MLflow run with it.
    """
    host = socket.gethostname()
    lost = []
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        owner = trial.user_attrs.get("worker") or {}
        pid = owner.get("pid")
        if owner.get("host") != host or not isinstance(pid, int) or pid == os.getpid() or process_alive(pid):
            continue
        try:
            storage_of(study).set_trial_user_attr(
                trial_storage_id(trial), "reason", f"lost: its process {pid} ended"
            )
            if not storage_of(study).set_trial_state_values(trial_storage_id(trial), state=TrialState.FAIL):
                continue
        except UpdateFinishedTrialError:
            continue  # another process reaped it first
        requeue(study, trial_storage_id(trial), max_retry=max_retry)
        lost.append(trial)
        if on_lost is not None:
            on_lost(trial)
    return lost


def requeue(study: optuna.Study, trial_id: int, *, max_retry: int) -> None:
    """Queues a failed trial again with the same parameters (an interrupted trial)."""
    frozen = storage_of(study).get_trial(trial_id)
    optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=max_retry)(study, frozen)


def retried_numbers(trials: Iterable[FrozenTrial]) -> set[int]:
    """Numbers of failed trials that were queued again (they no longer count)."""
    out: set[int] = set()
    for trial in trials:
        out.update(int(n) for n in trial.system_attrs.get("retry_history", ()))
        if "failed_trial" in trial.system_attrs:
            out.add(int(trial.system_attrs["failed_trial"]))
    return out


class TrialLost(Exception):
    """A trial this worker held was failed by another one (its heartbeat came too late)."""

    def __init__(self, number: int) -> None:
        super().__init__(f"trial {number} was declared lost by another worker")
        self.number = number


def claim_slot(study: optuna.Study, number: int, total: int) -> bool:
    """Whether the just-asked trial ``number`` may run without the study passing ``total``.

    Counted ahead of it: every trial that counts toward the total and either finished or
    has a smaller number (created earlier, whatever its state). Of several workers that
    race for the last slots the lowest numbers win; the others give their trial up as
    surplus. This never lets more than ``total`` trials run: at the check of the
    highest-numbered trial that runs, every other one that runs already exists and is
    counted.
    """
    trials = study.get_trials(deepcopy=False)
    retried = retried_numbers(trials)
    ahead = 0
    for trial in trials:
        if trial.number == number or trial.number in retried or trial.system_attrs.get(SURPLUS_ATTR):
            continue
        if trial.state.is_finished() or trial.number < number:
            ahead += 1
    return ahead < total


def give_up_surplus(study: optuna.Study, trial: optuna.Trial) -> None:
    """Ends a trial that lost the race for the last slot; it never counts."""
    storage_of(study).set_trial_system_attr(trial_storage_id(trial), SURPLUS_ATTR, True)
    study.tell(trial, state=TrialState.FAIL)
