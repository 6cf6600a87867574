"""Riding out faults: a study storage that goes away, trials that keep failing."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import TypeVar

import optuna
from omegaconf import DictConfig

from tuner.errors import StudyStopped
from tuner.secrets import mask_secrets

T = TypeVar("T")


def storage_errors() -> tuple[type[BaseException], ...]:
    """Errors of a study storage that is away (worth retrying)."""
    from sqlalchemy.exc import DisconnectionError, InterfaceError, OperationalError

    return (optuna.exceptions.StorageInternalError, OperationalError, InterfaceError, DisconnectionError)


class StorageGuard:
    """Retries study-storage calls with an exponential backoff, then stops the study.

    Args:
        retries: Attempts after the first one.
        wait: Seconds before the first retry; doubled after each.
    """

    def __init__(self, *, retries: int = 5, wait: float = 2.0) -> None:
        self.retries = retries
        self.wait = wait
        self.errors = storage_errors()

    @classmethod
    def from_config(cls, cfg: DictConfig) -> StorageGuard:
        """Reads ``storage.retries`` and ``storage.retry_wait``."""
        return cls(retries=int(cfg.storage.get("retries", 5)), wait=float(cfg.storage.get("retry_wait", 2.0)))

    def __call__(self, what: str, call: Callable[[], T]) -> T:
        """Runs ``call``; on a storage error waits and retries, then raises :class:`StudyStopped`."""
        started = time.monotonic()
        for attempt in range(self.retries + 1):
            try:
                return call()
            except self.errors as exc:
                error = mask_secrets(f"{type(exc).__name__}: {str(exc).strip().splitlines()[0]}")
                if attempt == self.retries:
                    raise StudyStopped(
                        f"the study storage did not answer while {what} "
                        f"({self.retries + 1} attempts over {time.monotonic() - started:.0f} s; "
                        f"last error: {error}). Finished trials are kept in the storage; "
                        "run the same command once it is back to resume"
                    ) from exc
                pause = self.wait * 2**attempt
                print(
                    f"warning: the study storage did not answer while {what} ({error}); "
                    f"retry {attempt + 1}/{self.retries} in {pause:g} s",
                    file=sys.stderr,
                    flush=True,
                )
                time.sleep(pause)
        raise AssertionError("unreachable")


def failure_summary(study: optuna.Study, *, failures: int, limit_key: str) -> str:
    """Why a study stopped on failures: how many, which trials, the reasons, where the tracebacks are."""
    failed = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.FAIL,))[-failures:]
    reasons: dict[str, list[int]] = {}
    for trial in failed:
        reasons.setdefault(str(trial.user_attrs.get("reason", "unknown")), []).append(trial.number)
    lines = [f"{failures} trials failed in a row ({limit_key}); the budget left is not spent:"]
    for reason, numbers in reasons.items():
        lines.append(f"  trials {', '.join(map(str, numbers))}: {mask_secrets(reason)[:300]}")
    lines.append(
        "  each failed trial's MLflow run holds traceback.txt; fix the cause, then run the same "
        "command to resume"
    )
    return "\n".join(lines)


def no_result(study: optuna.Study) -> str | None:
    """Why a study that failed trials and completed none has no result (None: it has one).

    Such a study spent its budget on failures: it must not end as done (exit code 0)
    with an empty table. One line, with the first failure's reason. A study whose trials
    were all pruned (every LR diverged) has an answer, and is not one of these.
    """
    trials = study.get_trials(deepcopy=False)
    failed = [t for t in trials if t.state == optuna.trial.TrialState.FAIL]
    if not failed or any(t.state == optuna.trial.TrialState.COMPLETE for t in trials):
        return None
    first = failed[0]
    reason = mask_secrets(str(first.user_attrs.get("reason", "no reason recorded")).splitlines()[0])[:300]
    pruned = sum(t.state == optuna.trial.TrialState.PRUNED for t in trials)
    counts = f"{len(failed)} failed" + (f", {pruned} pruned" if pruned else "")
    return f"no trial completed ({counts}); the first failure, trial {first.number}: {reason}"
