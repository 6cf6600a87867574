"""A worker: the study loop in its own process (local) or SLURM job, on a shared study.

A launcher hands each worker a payload: the composed config, already resolved, and the
directory to run in. A storage URL with a password is replaced by a reference to the
environment variable ``TUNER_WORKER_STORAGE_URL``, which the launcher sets for the
worker, so that no file it writes holds the password.
"""

from __future__ import annotations

import contextlib
import ctypes
import faulthandler
import json
import os
import signal
import socket
import sys
import traceback
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from tuner.errors import UserError
from tuner.secrets import mask_secrets

URL_ENV = "TUNER_WORKER_STORAGE_URL"


def has_password(url: str) -> bool:
    """Whether a storage URL carries a password."""
    from sqlalchemy.engine import make_url

    try:
        return bool(make_url(url).password)
    except Exception:
        return False


def secret_env(cfg: DictConfig) -> dict[str, str]:
    """The environment that carries a storage URL's password to a worker (empty without one)."""
    url = str(cfg.storage.get("url") or "")
    return {URL_ENV: url} if url and has_password(url) else {}


def make_payload(cfg: DictConfig, *, finish_study: bool) -> tuple[str, dict[str, str]]:
    """The payload text and the environment a worker needs besides it.

    Args:
        cfg: The composed config.
        finish_study: Whether a worker that sees the study complete ends its MLflow
            parent run (when no launcher waits to do it).
    """
    config = OmegaConf.to_container(cfg, resolve=True)
    assert isinstance(config, dict)
    env = secret_env(cfg)
    if env:
        config["storage"]["url"] = "${oc.env:" + URL_ENV + "}"
    text = OmegaConf.to_yaml(
        OmegaConf.create({"config": config, "cwd": os.getcwd(), "finish_study": finish_study})
    )
    return text, env


def error_path(log: Path) -> Path:
    """Where a worker leaves the user error that stopped it, for the launcher to show."""
    return log.with_suffix(".error.json")


def _die_with_parent() -> None:
    """Linux: a local worker gets SIGTERM (a clean stop) if its launcher is killed."""
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def work(payload: str, *, name: str, threads: int | None = None, error_file: Path | None = None) -> int:
    """Runs the study loop as one worker until the study reaches its total; the exit code.

    Its output, the worker's log, is masked as the command's is.
    """
    from tuner.secrets import masked_output

    with masked_output():
        return _work(payload, name=name, threads=threads, error_file=error_file)


def _work(payload: str, *, name: str, threads: int | None, error_file: Path | None) -> int:
    from tuner._quiet import quiet_libraries
    from tuner.report import study_report
    from tuner.secrets import mask_stored
    from tuner.stopping import raise_interrupt
    from tuner.study.loop import tune
    from tuner.study.progress import StudyProgress
    from tuner.validate import validate

    quiet_libraries()
    data = OmegaConf.create(payload)
    os.chdir(str(data.cwd))
    cfg = data.config
    assert isinstance(cfg, DictConfig)
    if threads:
        cfg.trainer.num_threads = threads
    for sig in (signal.SIGTERM, signal.SIGUSR2):
        signal.signal(sig, raise_interrupt)
    worker: dict[str, Any] = {"name": name, "host": socket.gethostname(), "pid": os.getpid()}
    print(f"worker {name} (pid {worker['pid']} on {worker['host']})", flush=True)
    try:
        specs = validate(cfg)
        with StudyProgress(live=False) as progress:
            result = tune(
                cfg,
                specs,
                progress=progress,
                write_report=study_report,
                worker=worker,
                finish_study=bool(data.finish_study),
            )
    except KeyboardInterrupt:
        print(f"worker {name}: stopped; its trial was re-queued", flush=True)
        return 130
    except UserError as error:
        print(f"error: {error}", file=sys.stderr, flush=True)
        if error_file is not None:
            error_file.write_text(
                json.dumps(
                    mask_stored({"key": error.key, "value": error.value, "fix": error.fix}), default=str
                )
            )
        return 2
    except Exception as exc:
        # A fault, not bad input: the traceback goes to the log, its last line to the
        # launcher, which shows the first worker's on the console.
        print(mask_secrets(traceback.format_exc()), file=sys.stderr, flush=True)
        if error_file is not None:
            cause = f"{type(exc).__name__}: {exc}".strip().splitlines()[0]
            error_file.write_text(json.dumps({"error": mask_secrets(cause)[:500]}))
        return 1
    if result.stopped_because:
        print(f"worker {name}: stopped early: {result.stopped_because}", flush=True)
    return 0


def slurm_worker(payload: str, index: int) -> int:
    """The function each SLURM job runs (through submitit)."""
    job = os.environ.get("SLURM_ARRAY_JOB_ID") or os.environ.get("SLURM_JOB_ID", "?")
    cpus = int(os.environ.get("SLURM_CPUS_PER_TASK") or 0)
    # The job's CPUs, at most the threads a trial asks for (trainer.num_threads).
    asked = int(OmegaConf.create(payload).config.trainer.get("num_threads") or cpus)
    code = work(payload, name=f"slurm-{job}_{index}", threads=min(cpus, asked) or None)
    if code not in (0, 130):
        raise SystemExit(code)
    return code


def main(argv: list[str]) -> int:
    """``python -m tuner.launch.worker FOLDER INDEX THREADS``: a local worker.

    It loads the heavy libraries, then waits for its payload on stdin (the launcher
    sends it once the study exists); an empty payload means there is nothing to do.
    """
    folder, index, threads = Path(argv[0]), int(argv[1]), int(argv[2])
    _die_with_parent()
    faulthandler.enable()  # a native crash (a segfault in a library) leaves its stack in the log
    # torch, Lightning, MLflow and its SQL store: loaded while the launcher sets up.
    import mlflow.store.tracking.sqlalchemy_store  # noqa: F401

    import tuner.study.loop  # noqa: F401

    payload = sys.stdin.read()
    if not payload:
        return 0
    return work(
        payload,
        name=f"local-{index}",
        threads=threads,
        error_file=error_path(folder / f"worker-{index}.log"),
    )


if __name__ == "__main__":
    from tuner._exit import exit_now

    exit_now(main(sys.argv[1:]))
