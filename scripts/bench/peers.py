"""The peers of the suite: ways to tune a learning rate, each run on one task, seed and budget.

Every peer searches until its trials have spent ``Job.budget`` training steps (optimizer
steps over all its trials, pruned ones for the steps they took, plus any range test before
them; the figures count only trials that ended within the budget) and returns a trace
(``jobs.py``). All train the same network the same way: the project's data tensors, model,
optimizer and schedule builders, seeded alike; what differs is the search, the pruning and
the harness.

Adding a peer: write ``def my_peer(job: Job) -> Trace`` and add a :class:`Peer` to ``PEERS``;
``needs`` names a config key the peer depends on, so it runs only once that feature exists.
"""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import optuna
import torch
from jobs import Job, Trace, compose_job, run_study, sampler_seed, steps_spent, trace_of
from rawloop import LitClassifier, raw_trial
from sweeper import tpe_per_process
from tasks import Space


def _fits_any(_space: Space) -> str | None:
    """A peer that can search any space (a module function: peers travel to pool workers)."""
    return None


@dataclass(frozen=True)
class Peer:
    """A named peer: how it runs, what it is in a line, and the config key it needs."""

    name: str
    run: Callable[[Job], Trace]
    what: str
    needs: str | None = None
    #: Why the peer cannot search a space (None: it can); such a task runs without it.
    unfit: Callable[[Space], str | None] = _fits_any


# --- hand-written: plain Optuna and a raw PyTorch loop ---------------------------------------


def _raw_study(job: Job, sampler: optuna.samplers.BaseSampler, pruner: optuna.pruners.BasePruner) -> Trace:
    """A hand-written Optuna study: the task's space sampled and written as the project
    writes it (``tuner.search.space``), each trial a raw PyTorch loop, run to the step budget."""
    from tuner.data.factory import build_datamodule
    from tuner.search.space import apply, parse_space, suggest

    cfg = compose_job(job)
    specs = parse_space(cfg.search.params, cfg)
    datamodule = build_datamodule(cfg)
    study = optuna.create_study(direction="maximize", sampler=sampler, pruner=pruner)

    def objective(trial: optuna.Trial) -> float:
        return raw_trial(apply(cfg, specs, suggest(trial, specs, cfg)), datamodule, trial)

    def stop_at_budget(study: optuna.Study, _trial: optuna.trial.FrozenTrial) -> None:
        if steps_spent(study) >= job.budget:
            study.stop()

    started = datetime.now()
    study.optimize(objective, callbacks=[stop_at_budget])
    return trace_of(study, started)


def random_search(job: Job) -> Trace:
    """Optuna's RandomSampler over the space, no pruning, each trial a raw PyTorch loop."""
    return _raw_study(job, optuna.samplers.RandomSampler(seed=sampler_seed(job)), optuna.pruners.NopPruner())


def optuna_median(job: Job) -> Trace:
    """Optuna's TPE and MedianPruner (their defaults) reporting from a raw PyTorch loop."""
    return _raw_study(job, optuna.samplers.TPESampler(seed=sampler_seed(job)), optuna.pruners.MedianPruner())


def optuna_hyperband(job: Job) -> Trace:
    """Optuna's TPE and HyperbandPruner (resource: training steps, from one evaluation to a
    full trial, reduction factor 3) reporting from a raw PyTorch loop."""
    pruner = optuna.pruners.HyperbandPruner(
        min_resource=job.val_every, max_resource=job.steps, reduction_factor=3
    )
    return _raw_study(job, optuna.samplers.TPESampler(seed=sampler_seed(job)), pruner)


# --- Lightning's Tuner.lr_find, used once ------------------------------------------------------


def lightning_lr_find(job: Job) -> Trace:
    """Lightning's ``Tuner.lr_find`` (its defaults, over the space's LR range) picks the LR; one
    trial trains it with the task's base config (its optimizer and schedule)."""
    import pytorch_lightning as pl
    from pytorch_lightning.tuner import Tuner

    from tuner.config.nodes import plain
    from tuner.data.factory import build_datamodule
    from tuner.models.factory import build_model
    from tuner.training.trial import run_trial

    cfg = compose_job(job)
    datamodule = build_datamodule(cfg)
    started = datetime.now()
    pl.seed_everything(job.seed, verbose=False)
    module = LitClassifier(build_model(cfg, datamodule), optimizer=plain(cfg.optimizer))
    trainer = pl.Trainer(
        accelerator="cpu",
        devices=1,
        max_epochs=-1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=job.home,
    )
    with open(os.devnull, "w") as sink, contextlib.redirect_stderr(sink):  # lr_find's own progress bar
        found = Tuner(trainer).lr_find(
            module,
            train_dataloaders=datamodule.train_dataloader(),
            min_lr=float(job.space.lr["low"]),
            max_lr=float(job.space.lr["high"]),
        )
    suggestion = found.suggestion() if found is not None else None
    lr = float(suggestion) if suggestion else float(cfg.optimizer.lr)  # no suggestion: the config's LR
    searched = len(found.results["lr"]) if found is not None else 0
    outcome = run_trial(compose_job(job, f"optimizer.lr={lr}"), datamodule, trial=None, run=None)
    value = float(outcome.value) if outcome.state == "COMPLETE" and outcome.value is not None else None
    seconds = (datetime.now() - started).total_seconds()
    trial = {"steps": searched + outcome.steps, "seconds": seconds, "value": value, "params": {"lr": lr}}
    return {"trials": [trial], "setup_steps": searched}


# --- the project -------------------------------------------------------------------------------


def _tune_rounds(job: Job, *more: str, setup_steps: Callable[[optuna.Study], int] | None = None) -> Trace:
    """The project's study, in-process, run to the step budget.

    ``study.n_trials`` is a total, so the study is run again with a larger total until its
    trials have spent the budget; each round reseeds the sampler (a sampler rebuilt with the
    same seed would repeat the random start-up draws of the first round).
    """
    started, total, attempt = datetime.now(), 0, 0
    # Screening (search.screen) runs only in a study of at least twice as many trials: the
    # first round asks for that many (the budget ends the study anyway).
    total = 2 * int(compose_job(job, *more).search.get("screen", 0) or 0) - math.ceil(job.budget / job.steps)
    total = max(0, total)
    study: optuna.Study | None = None
    while True:
        used = 0 if study is None else steps_spent(study) + (setup_steps(study) if setup_steps else 0)
        if used >= job.budget:
            break
        done = len(study.trials) if study else 0
        mean = steps_spent(study) / done if study and done else job.steps
        remaining = job.budget - used
        total += max(1, math.ceil(remaining / max(mean, 1)))
        cfg = compose_job(
            job,
            *more,
            "study.name=bench",
            "report.enabled=false",
            # The suite runs one job per core: no core is free for a tracking sidecar, and
            # this in-process study cannot see the other jobs (the launcher decides the same).
            "tracking.sidecar=false",
            f"study.n_trials={total}",
            f"sampler.seed={sampler_seed(job, attempt)}",
        )
        result, study = run_study(cfg)
        if len(study.trials) <= done:
            raise RuntimeError(f"the study ran no trial: {result.stopped_because}")
        attempt += 1
    assert study is not None
    return trace_of(study, started, setup_steps=setup_steps(study) if setup_steps else 0)


def tuner_default(job: Job) -> Trace:
    """The project's default study: screening (8 short trials, the best 2 in full), then TPE
    and median pruning."""
    return _tune_rounds(job)


def _finder_steps(study: optuna.Study) -> int:
    record = study.user_attrs.get("tuner.finder") or {}
    return sum(int(s.get("steps", 0)) for s in record.get("result", {}).get("per_seed", []))


def _switches_optimizer(space: Space) -> str | None:
    """The range test runs the configured optimizer; a space that samples the optimizer
    family is refused by the project (``search.from_finder``)."""
    paths = {spec.get("path") for spec in space.params.values()}
    return "the range test needs a fixed optimizer" if "optimizer.name" in paths else None


def tuner_finder(job: Job) -> Trace:
    """The default study with ``search.from_finder=true`` (range-test steps count)."""
    return _tune_rounds(job, "search.from_finder=true", setup_steps=_finder_steps)


def tuner_probe(job: Job) -> Trace:
    """The default study with cooldown probes (``probe=cooldown``): pruner and sampler see a
    short anneal branched from each trial at its evaluations, not the mid-flight value."""
    return _tune_rounds(job, "probe=cooldown")


def tuner_no_screen(job: Job) -> Trace:
    """The default study without screening (``search.screen=0``, the default before it)."""
    return _tune_rounds(job, "search.screen=0")


def tuner_plateau(job: Job) -> Trace:
    """The default study with the plateau rule until half of each trial."""
    return _tune_rounds(job, "pruner.plateau_share=0.5")


def tuner_population(job: Job) -> Trace:
    """The default study with ``study.population=4`` (each member's steps count)."""
    return _tune_rounds(job, "study.population=4")


PEERS: list[Peer] = [
    Peer("random", random_search, "Optuna RandomSampler, no pruning, raw PyTorch loop"),
    Peer(
        "tpe-per-process",
        tpe_per_process,
        "TPE without pruning, a fresh `python -m tuner` process per trial (imitates the Hydra Optuna sweeper)",
    ),
    Peer("optuna+median", optuna_median, "hand-written: Optuna TPE + MedianPruner around a raw PyTorch loop"),
    Peer(
        "optuna+hyperband",
        optuna_hyperband,
        "hand-written: Optuna TPE + HyperbandPruner around a raw PyTorch loop",
    ),
    Peer("lr_find", lightning_lr_find, "Lightning Tuner.lr_find once, its suggestion trained once"),
    Peer("tuner", tuner_default, "this project's default study: TPE + median pruning"),
    Peer(
        "tuner+finder",
        tuner_finder,
        "the default study with search.from_finder=true",
        "search.from_finder",
        _switches_optimizer,
    ),
    Peer("tuner+probe", tuner_probe, "the default study with cooldown probes (probe=cooldown)", "probe"),
    Peer("tuner-screen", tuner_no_screen, "the default study without screening (search.screen=0)", "search.screen"),
    Peer("tuner+plateau", tuner_plateau, "the default study with pruner.plateau_share=0.5"),
    Peer(
        "tuner+population", tuner_population, "the default study with study.population=4", "study.population"
    ),
]


def available(peers: list[Peer]) -> tuple[list[Peer], list[str]]:
    """The peers whose feature is in this checkout, and the names of those left out."""
    from tuner.cli import compose

    cfg = compose([])
    keep, skipped = [], []
    for peer in peers:
        if peer.needs is None or _has(cfg, peer.needs):
            keep.append(peer)
        else:
            skipped.append(f"{peer.name} (needs {peer.needs})")
    return keep, skipped


def _has(cfg: Any, key: str) -> bool:
    from omegaconf import OmegaConf

    return OmegaConf.select(cfg, key, default=_ABSENT) is not _ABSENT


_ABSENT = object()


def worker_init() -> None:
    """A pool worker: one torch thread, quiet libraries, the project's modules imported once."""
    torch.set_num_threads(1)
    from tuner._quiet import quiet_libraries

    quiet_libraries()
    # imported before any fork, like a reused launcher worker
    import tuner.study.loop
    import tuner.validate  # noqa: F401
