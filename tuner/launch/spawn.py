"""Starting, feeding and abandoning the worker processes of ``launcher=local``.

Kept free of torch, Lightning and MLflow: the command line starts its workers right
after composing the config (``prestart``), so that their imports (seconds each) overlap
with the launcher's own validation and set-up instead of following them.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from omegaconf import DictConfig

from tuner.launch.plan import WorkerPlan, plan_local
from tuner.launch.settings import check_launcher
from tuner.launch.worker import error_path, secret_env
from tuner.study.name import check_study_name


@dataclass
class Workers:
    """Started worker processes, each waiting for its payload on stdin."""

    plans: list[WorkerPlan]
    procs: list[subprocess.Popen[bytes]]
    folder: Path
    #: Folders and log files this start made: removed again if the study never opens.
    created: list[Path] = field(default_factory=list)
    handed: bool = False


def worker_folder(cfg: DictConfig) -> Path:
    """Where a study's workers keep their logs."""
    return Path(str(cfg.paths.root)) / "workers" / str(cfg.study.name)


def start_workers(cfg: DictConfig, plans: list[WorkerPlan]) -> Workers:
    """Starts one waiting worker per plan, its output going to ``worker-<i>.log``."""
    folder = worker_folder(cfg)
    created = [p for p in (folder, *folder.parents) if not p.exists()]
    folder.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, **secret_env(cfg)}
    procs = []
    for plan in plans:
        log = folder / f"worker-{plan.index}.log"
        error_path(log).unlink(missing_ok=True)
        if not log.exists():
            created.insert(0, log)
        with log.open("a") as out:  # a resumed study adds to the logs of the earlier runs
            procs.append(
                subprocess.Popen(
                    [
                        sys.executable,
                        "-m",
                        "tuner.launch.worker",
                        str(folder),
                        str(plan.index),
                        str(plan.threads),
                    ],
                    env={**env, **plan.env()},
                    stdin=subprocess.PIPE,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    # Its own session: Ctrl-C reaches the launcher only, which stops each
                    # worker once (a second SIGINT would cut a worker's cleanup short).
                    start_new_session=True,
                )
            )
    return Workers(plans, procs, folder, created)


def prestart(cfg: DictConfig) -> Workers | None:
    """Starts the workers of a ``launcher=local`` study before the config is validated.

    None when the launcher settings fail ``check_launcher`` (or cannot be read): those
    are reported by the checks that follow, with no worker started.
    """
    if cfg.mode != "tune" or cfg.launcher.get("name") != "local":
        return None
    try:
        check_study_name(cfg.study.name)  # the log folder is made under it
        check_launcher(cfg)
        plans = plan_local(cfg)
    except Exception:  # reported, with its key, by the checks that follow
        return None
    return start_workers(cfg, plans)


def hand_out(workers: Workers, payload: str) -> None:
    """Gives each waiting worker its payload."""
    workers.handed = True
    for proc in workers.procs:
        assert proc.stdin is not None
        try:
            proc.stdin.write(payload.encode())
            proc.stdin.close()
        except BrokenPipeError:
            pass  # the worker is gone already; its exit code tells why


def abandon(workers: Workers) -> None:
    """Stops workers that never got a payload and removes the logs and folders made for them.

    They have only imported libraries, so killing them loses nothing. Does nothing once
    a payload was handed out: those workers belong to a study.
    """
    if workers.handed:
        return
    workers.handed = True
    for proc in workers.procs:
        proc.kill()
        proc.wait()
        if proc.stdin is not None:
            proc.stdin.close()
    for path in workers.created:
        if path.is_dir():
            if not any(path.iterdir()):
                path.rmdir()
        else:
            path.unlink(missing_ok=True)
