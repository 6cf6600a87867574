"""``launcher=local``: N worker processes on this machine share one study."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

from omegaconf import DictConfig

from tuner import stopping
from tuner.devices import cpu_cores
from tuner.errors import UserError
from tuner.launch.monitor import StudyMonitor
from tuner.launch.plan import WorkerPlan, plan_local
from tuner.launch.spawn import Workers, abandon, hand_out, start_workers
from tuner.launch.worker import error_path, make_payload
from tuner.report import study_report
from tuner.search.space import ParamSpec
from tuner.storage.coordination import reap_dead_owners
from tuner.storage.resilience import no_result
from tuner.study.arms import run_arms
from tuner.study.loop import StudyResult
from tuner.study.optuna_study import count_finished
from tuner.study.progress import StudyProgress
from tuner.study.session import (
    Tracked,
    end_lost_run,
    finish,
    open_tracked,
    storage_label,
    undo_if_fruitless,
    warn_unlogged,
)

#: Seconds workers get to end their trial cleanly after Ctrl-C before they are killed.
STOP_WAIT = 60


# long: start, hand-off, progress and shutdown of the workers, under one error handler
def run_local(
    cfg: DictConfig, specs: list[ParamSpec], *, quiet: bool, workers: Workers | None = None
) -> StudyResult:
    """Starts the workers (unless ``prestart`` did), creates the study and its MLflow parent
    run, shows progress.

    The workers start first but wait for their payload on stdin, which they get only
    once the study and the parent run exist: they never race to create them, and their
    start-up (importing torch, Lightning, MLflow) overlaps with the launcher's own.

    Raises:
        UserError: a bad launcher setting, or the config error that stopped the workers.
        KeyboardInterrupt: after the workers stopped and re-queued their trials.
    """
    workers = workers or start_workers(cfg, plan_local(cfg))
    plans, procs, folder = workers.plans, workers.procs, workers.folder
    if _cores_filled(plans) and cfg.tracking.get("sidecar", "auto") == "auto":
        # A sidecar per worker would only take CPU from the other workers (tracking.sidecar).
        cfg.tracking.sidecar = False
    text, _env = make_payload(cfg, finish_study=False)
    try:
        opened = open_tracked(cfg, specs)
    except BaseException:
        abandon(workers)
        raise
    study, tracker, parent = opened.study, opened.tracker, opened.parent
    total = int(cfg.study.n_trials)
    done = count_finished(study)
    resumed = f", resuming with {done} finished" if done else ""
    print(f"study {study.study_name}: {total} trials{resumed} (storage {storage_label(cfg)})")
    stopped = fault = None
    if done >= total:
        abandon(workers)  # nothing to run: they have only imported, no need to wait for that
    else:
        print(f"{len(plans)} workers ({_describe(plans[0])} each); logs in {folder}/worker-*.log", flush=True)
        monitor = StudyMonitor(
            study, total=total, tracker=tracker, grace=cfg.storage.get("grace_period"), quiet=quiet
        )
        hand_out(workers, text)
        try:
            while not _all_exited(procs, within=float(cfg.launcher.poll_interval)):
                monitor.poll()
        except KeyboardInterrupt:
            _stop(procs)
            monitor.poll()
            tracker.set_tags(parent, {"tuner.interrupted": "true"})
            tracker.end_run(parent, "KILLED")
            warn_unlogged(tracker.close(timeout=min(opened.flush, 5.0)))
            raise
        # A worker that crashed left its trial RUNNING: failed and re-queued, its run ended.
        reap_dead_owners(
            study,
            max_retry=int(cfg.storage.get("max_retry") or 1),
            on_lost=lambda t: end_lost_run(tracker, t),
        )
        monitor.poll()
        stopped, fault = _check_exits(opened, procs, folder)
        if stopped and monitor.complete():
            # A worker died, yet the others ran its re-queued trial: the study is whole.
            print(f"note: {stopped}; its trial was re-queued and the study completed")
            stopped = fault = None
    # From here a Ctrl-C stops at the next safe point, a second one at once (tuner.stopping).
    with stopping.graceful_stop():
        if not stopped:  # the LR-free arms (study.lr_free_arms) train here, once
            with StudyProgress(live=False, quiet=quiet) as progress:
                run_arms(cfg, specs, study, opened.datamodule, tracker, parent, progress)
        fault = fault or no_result(study)
        report = finish(cfg, specs, opened, stopped or fault, write_report=study_report)
    # A fault is said once, as the command's last line (exit code 3).
    return StudyResult(
        study,
        tracker.uri,
        parent,
        None if fault else stopped,
        report,
        fault,
        experiment_id=tracker.experiment_id,
    )


def _all_exited(procs: list[subprocess.Popen[bytes]], *, within: float) -> bool:
    """Waits up to ``within`` seconds for every worker to exit; whether they all have.

    Waiting on the processes, not sleeping: the launcher goes on the moment the last
    worker ends rather than up to a whole poll interval later.
    """
    deadline = time.monotonic() + within
    for proc in procs:
        try:
            proc.wait(timeout=max(deadline - time.monotonic(), 0.0))
        except subprocess.TimeoutExpired:
            return False
    return True


def _cores_filled(plans: list[WorkerPlan]) -> bool:
    """Whether CPU workers' threads take every core of this machine."""
    if any(plan.gpus is not None for plan in plans):
        return False
    return sum(plan.threads for plan in plans) >= cpu_cores()


def _describe(plan: WorkerPlan) -> str:
    where = f"GPU {','.join(plan.gpus)}" if plan.gpus else "CPU"
    return f"{where}, {plan.threads} thread{'s' if plan.threads > 1 else ''}"


def _stop(procs: list[subprocess.Popen[bytes]]) -> None:
    print("stopping the workers: each ends its trial and re-queues it", file=sys.stderr, flush=True)
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
    deadline = time.monotonic() + STOP_WAIT
    for proc in procs:
        try:
            proc.wait(timeout=max(deadline - time.monotonic(), 0.1))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _check_exits(
    opened: Tracked, procs: list[subprocess.Popen[bytes]], folder: Path
) -> tuple[str | None, str | None]:
    """Raises the workers' config error, or says which workers failed and the first one's
    error (None, None: all ended well)."""
    errors = [error_path(folder / f"worker-{i}.log") for i in range(len(procs))]
    found = [json.loads(p.read_text()) for p in errors if p.exists()]
    if found and all(proc.returncode == 2 for proc in procs):
        if not undo_if_fruitless(opened):
            warn_unlogged(opened.tracker.close(timeout=opened.flush))
        raise UserError(found[0]["key"], found[0]["value"], found[0]["fix"])
    bad = [(i, proc.returncode) for i, proc in enumerate(procs) if proc.returncode != 0]
    if not bad:
        return None, None
    stopped = "; ".join(
        f"worker {i} exited with code {code} (see {folder}/worker-{i}.log)" for i, code in bad
    )
    first, code = bad[0]
    log = folder / f"worker-{first}.log"
    fault = f"{len(bad)} of {len(procs)} workers failed; worker {first}: {_cause(log, code)} (its log: {log})"
    return stopped, fault


def _cause(log: Path, code: int) -> str:
    """Why a worker ended badly: its error, the signal that killed it, or its exit code."""
    error = error_path(log)
    if error.exists():
        found = json.loads(error.read_text())
        if "error" in found:
            return str(found["error"])
        return f"error: {found['key']}={found['value']!r}: {found['fix']}"
    if code < 0:
        return f"killed by {signal.Signals(-code).name}"
    return f"exited with code {code}"
