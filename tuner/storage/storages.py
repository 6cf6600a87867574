"""Building the Optuna storage of ``conf/storage``: in memory, a journal file (with heartbeats)
or a database, its attributes masked."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import optuna
from omegaconf import DictConfig

from tuner.errors import UserError
from tuner.secrets import masked_storage
from tuner.storage.coordination import JournalHeartbeatStorage

STORAGES = ("memory", "journal", "rdb")


def build_storage(cfg: DictConfig) -> optuna.storages.BaseStorage | None:
    """The study storage; None means in-memory (gone when the process ends).

    Attributes written to it are masked: a trial's failure reason may quote a password.
    """
    storage = _open_storage(cfg)
    return None if storage is None else masked_storage(storage)


def _open_storage(cfg: DictConfig) -> optuna.storages.BaseStorage | None:
    backend = str(cfg.storage.backend)
    if backend == "memory":
        return None
    if backend == "journal":
        path = Path(str(cfg.storage.path))
        path.parent.mkdir(parents=True, exist_ok=True)
        from optuna.storages.journal import JournalFileBackend, JournalFileOpenLock, JournalStorage

        # The open-lock works on every file system, NFS included.
        backend_file = JournalFileBackend(str(path), lock_obj=JournalFileOpenLock(str(path)))
        beats = _heartbeat_kwargs(cfg)
        if not beats:
            return JournalStorage(backend_file)
        return JournalHeartbeatStorage(
            backend_file,
            heartbeat_interval=beats["heartbeat_interval"],
            grace_period=beats["grace_period"],
            stale_callback=beats["heartbeat_stale_trial_callback"],
        )
    if backend == "rdb":
        url = str(cfg.storage.url)
        if url.startswith("sqlite:///"):
            Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        kwargs = _heartbeat_kwargs(cfg)
        try:
            return optuna.storages.RDBStorage(
                url, engine_kwargs=dict(cfg.storage.get("engine_kwargs") or {}), **kwargs
            )
        except Exception as exc:
            raise UserError(
                "storage.url",
                mask_password(url),
                f"cannot open the storage ({type(exc).__name__}); check the URL and that the server is up",
            ) from None
    raise UserError("storage.backend", backend, f"use one of {', '.join(STORAGES)}")


def _heartbeat_kwargs(cfg: DictConfig) -> dict[str, Any]:
    """Heartbeat settings: a dead worker's trial is failed and re-queued after the grace period."""
    if not cfg.storage.get("heartbeat_interval"):
        return {}
    interval = int(cfg.storage.heartbeat_interval)
    return {
        "heartbeat_interval": interval,
        "grace_period": int(cfg.storage.get("grace_period") or 3 * interval),
        "heartbeat_stale_trial_callback": optuna.storages.RetryHeartbeatStaleTrialCallback(
            max_retry=int(cfg.storage.get("max_retry", 1))
        ),
    }


def mask_password(url: str) -> str:
    """The URL with any password replaced by ``***``."""
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return url
