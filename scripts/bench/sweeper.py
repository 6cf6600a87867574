"""TPE without pruning, one trial per process: an imitation of how the Hydra Optuna sweeper
runs trials (the sweeper itself pins an older Optuna, so it is not installed here)."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from datetime import datetime

import optuna
from jobs import Job, Trace, compose_job, sampler_seed, steps_spent, trace_of


def _fresh_process(argv: list[str], home: str, *, cold: bool) -> int:
    """Runs ``python -m tuner argv`` in a new process; returns its exit code.

    ``cold``: a new interpreter (imports paid per trial). Otherwise a fork of this worker,
    which has imported the libraries already, as a reused launcher worker would have.
    """
    env = {**os.environ, "TUNER_HOME": home}
    if cold:
        done = subprocess.run(
            [sys.executable, "-m", "tuner", *argv], env=env, capture_output=True, text=True, check=False
        )
        return done.returncode
    pid = os.fork()
    if pid == 0:  # the child: run the command line and leave without running the parent's cleanup
        code = 1
        try:
            os.environ["TUNER_HOME"] = home
            from tuner.cli import main

            with open(os.devnull, "w") as sink, contextlib.redirect_stdout(sink):
                code = main(argv)
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


def tpe_per_process(job: Job) -> Trace:
    """TPE without pruning, one trial per process, imitating the Hydra Optuna sweeper.

    Each trial is a fresh process running ``python -m tuner ... pruner=none
    study.n_trials=<k>`` on one journal file: it composes the config, reopens the study,
    builds the data and the model, trains one trial and exits. The sampler is reseeded
    per process so its random start-up draws differ.
    """
    from tuner.storage.storages import build_storage

    cfg = compose_job(job)
    started, used, k = datetime.now(), 0, 0
    while used < job.budget:
        k += 1
        argv = [
            "--quiet",
            *job.overrides(),
            "pruner=none",
            "search.screen=0",  # the sweeper runs full trials only
            "study.name=bench",
            "report.enabled=false",
            f"study.n_trials={k}",
            f"sampler.seed={sampler_seed(job, k - 1)}",
        ]
        code = _fresh_process(argv, job.home, cold=job.cold_processes)
        if code != 0:
            raise RuntimeError(f"python -m tuner {' '.join(argv)} exited with {code}")
        study = optuna.load_study(study_name="bench", storage=build_storage(cfg))
        used = steps_spent(study)
    return trace_of(study, started)
