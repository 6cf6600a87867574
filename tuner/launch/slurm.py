"""``launcher=slurm``: N SLURM jobs (one array job, submitted with submitit) share one study."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from tuner import stopping
from tuner.config.nodes import plain
from tuner.errors import UserError
from tuner.launch.monitor import StudyMonitor, settle_trial_runs
from tuner.launch.worker import make_payload, slurm_worker
from tuner.report import study_report
from tuner.search.space import ParamSpec
from tuner.storage.resilience import no_result
from tuner.study.loop import StudyResult
from tuner.study.optuna_study import count_finished
from tuner.study.session import finish, open_tracked, storage_label, undo_if_fruitless, warn_unlogged


def executor_parameters(cfg: DictConfig) -> dict[str, Any]:
    """submitit's parameters for the worker jobs, from ``launcher.*``."""
    launcher = cfg.launcher
    params: dict[str, Any] = {
        "name": f"tuner-{cfg.study.name}",
        "timeout_min": int(launcher.time_min),
        "nodes": 1,
        "tasks_per_node": 1,
        "cpus_per_task": int(launcher.cpus_per_worker),
        "slurm_array_parallelism": int(launcher.workers),
        "slurm_use_srun": bool(launcher.use_srun),
    }
    if launcher.get("partition"):
        params["slurm_partition"] = str(launcher.partition)
    if launcher.get("gpus_per_worker"):
        params["gpus_per_node"] = int(launcher.gpus_per_worker)
    if launcher.get("mem_gb"):
        params["mem_gb"] = float(launcher.mem_gb)
    if launcher.get("sbatch"):
        params["slurm_additional_parameters"] = plain(launcher.sbatch)
    if launcher.get("setup"):
        params["slurm_setup"] = [str(line) for line in launcher.setup]
    return params


@contextlib.contextmanager
def _environment(extra: dict[str, str]) -> Iterator[None]:
    """Variables that sbatch passes on to the jobs (it exports the submitter's environment)."""
    saved = {k: os.environ.get(k) for k in extra}
    os.environ.update(extra)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _submit(cfg: DictConfig, folder: Path) -> list[Any]:
    try:
        import submitit
    except ImportError:
        raise UserError("launcher", "slurm", "submitit is missing: pip install 'tuner[slurm]'") from None
    if shutil.which("sbatch") is None:
        raise UserError("launcher", "slurm", "sbatch is not on PATH: run this on a SLURM login node")
    folder.mkdir(parents=True, exist_ok=True)
    folder.chmod(0o700)  # job scripts and logs of this study only
    executor = submitit.AutoExecutor(folder=folder, cluster="slurm")
    executor.update_parameters(**executor_parameters(cfg))
    text, secret_env = make_payload(cfg, finish_study=True)
    n = int(cfg.launcher.workers)
    try:
        with _environment(secret_env):
            return list(executor.map_array(slurm_worker, [text] * n, list(range(n))))
    except subprocess.CalledProcessError as exc:
        output = (
            exc.output.decode(errors="replace") if isinstance(exc.output, bytes) else str(exc.output or "")
        )
        first = (output.strip().splitlines() or [str(exc)])[-1]
        raise UserError("launcher", "slurm", f"sbatch refused the jobs ({first}); check launcher.*") from None


def _in_queue(job_ids: list[str]) -> bool:
    """Whether any of the jobs is still pending or running."""
    result = subprocess.run(
        ["squeue", "-h", "-o", "%i", "-j", ",".join(job_ids)], capture_output=True, text=True, check=False
    )
    # squeue exits non-zero for ids it no longer knows: they left the queue.
    return result.returncode == 0 and bool(result.stdout.strip())


# long: submit, say how to follow, then optionally follow the jobs: one command's steps
def run_slurm(cfg: DictConfig, specs: list[ParamSpec], *, quiet: bool) -> StudyResult | None:
    """Submits the worker jobs; with ``launcher.wait`` follows the study to its end.

    Returns:
        None once submitted (not waiting), else the finished study.
    """
    opened = open_tracked(cfg, specs)
    study, tracker, parent = opened.study, opened.tracker, opened.parent
    total = int(cfg.study.n_trials)
    done = count_finished(study)
    print(f"study {study.study_name}: {total} trials, {done} finished (storage {storage_label(cfg)})")
    folder = Path(str(cfg.launcher.folder))
    jobs: list[Any] = []
    if cfg.launcher.submit and done < total:
        try:
            jobs = _submit(cfg, folder)
        except UserError:
            if not undo_if_fruitless(opened):
                warn_unlogged(tracker.close(timeout=opened.flush))
            raise
        array = str(jobs[0].job_id).split("_")[0]
        print(f"submitted {len(jobs)} worker jobs to SLURM (array job {array}); logs in {folder}")
        print("follow the study:")
        print(f"  squeue -j {array}")
        print(f"  tail -f {folder}/{array}_*_log.out")
        print("  the same command with launcher.submit=false launcher.wait=true (progress, then the table)")
        print(f"  mlflow ui --backend-store-uri {tracker.uri}")
    if not cfg.launcher.wait:
        warn_unlogged(tracker.close(timeout=opened.flush))
        return None
    monitor = StudyMonitor(
        study, total=total, tracker=tracker, grace=cfg.storage.get("grace_period"), quiet=quiet
    )
    ids = [str(job.job_id) for job in jobs]
    stopped = None
    try:
        while not monitor.complete():
            monitor.poll()
            if ids and not _in_queue(ids):
                monitor.poll()
                if not monitor.complete():
                    stopped = (
                        f"the SLURM jobs ended with {count_finished(study)}/{total} trials; see {folder}"
                    )
                break
            time.sleep(float(cfg.launcher.poll_interval))
    except KeyboardInterrupt:
        print("stopped following; the jobs keep running (scancel stops them)", file=sys.stderr)
        warn_unlogged(tracker.close(timeout=min(opened.flush, 5.0)))
        return StudyResult(
            study, tracker.uri, parent, "stopped following (Ctrl-C)", experiment_id=tracker.experiment_id
        )
    monitor.poll()
    left = settle_trial_runs(study, tracker, parent, timeout=opened.flush)
    if left:
        print(
            f"warning: {len(left)} trial runs are still RUNNING in MLflow after {opened.flush:.0f} s "
            "(tracking.flush_timeout): their jobs have not sent their last writes yet",
            file=sys.stderr,
        )
    fault = no_result(study)  # jobs that failed every trial: exit 3, the first reason
    with stopping.graceful_stop():  # Ctrl-C: at the next safe point; a second one at once
        report = finish(cfg, specs, opened, stopped or fault, write_report=study_report)
    return StudyResult(
        study, tracker.uri, parent, stopped, report, fault, experiment_id=tracker.experiment_id
    )
