"""Population trials (``study.population=K``): K trials asked together and trained in one fit.

An LR search trains the same network again and again with other optimizer settings;
a small network leaves most of a GPU, and much of a CPU core, idle. A population
stacks the K trials' copies of the network and trains them with ``torch.func.vmap`` on
the same batches, each with its own optimizer, LR, schedule and warmup; each trial is
still reported, pruned, told and recorded in MLflow on its own, as a single trial is.

Members share the network's shapes, the data and the training length, so only
``optimizer.*``, ``schedule.*`` and a few ``trainer`` keys may be searched; any other
search space, or a network ``vmap`` refuses, runs one trial at a time with a notice.
"""

from __future__ import annotations

import math
import traceback
from collections.abc import Sequence
from functools import partial

import optuna
import pytorch_lightning as pl
import torch
from omegaconf import DictConfig, OmegaConf

from tuner.config.nodes import plain
from tuner.devices import world_size
from tuner.errors import UserError
from tuner.models.factory import build_model
from tuner.schedule.functions import warmup_length
from tuner.search.space import ParamSpec
from tuner.storage.coordination import this_process
from tuner.storage.resilience import StorageGuard
from tuner.study.progress import StudyProgress
from tuner.study.trials import is_surplus, record_outcome, start_trial
from tuner.tracking.tracker import Tracker, TrialRun
from tuner.training.control import MemberLink, PopulationControl
from tuner.training.guards import guard_from_config, stop_reason
from tuner.training.population_module import PopulationModule
from tuner.training.stacked import StackedNets, vectorise_problem
from tuner.training.trial import Outcome, fit_in_chunks, make_trainer

#: Config keys members of one population may differ in: prefixes, then single keys.
MEMBER_PREFIXES = ("optimizer.", "schedule.")
MEMBER_KEYS = (
    "trainer.gradient_clip_val",
    "trainer.divergence_factor",
    "trainer.not_learning_after",
    "trainer.not_learning_tolerance",
)
#: ``auto`` puts at most this share of ``study.n_trials`` in one population, so the
#: sampler still learns from earlier populations.
AUTO_SHARE = 4
#: ``auto`` on CPU: members per torch thread.
CPU_MEMBERS_PER_THREAD = 8


def notice(text: str) -> None:
    print(f"note: {text}", flush=True)


def shared_param(specs: Sequence[ParamSpec]) -> ParamSpec | None:
    """The first searched parameter that members of one population cannot differ in."""
    for spec in specs:
        if not (spec.path.startswith(MEMBER_PREFIXES) or spec.path in MEMBER_KEYS):
            return spec
    return None


def population_size(cfg: DictConfig, specs: Sequence[ParamSpec], datamodule: pl.LightningDataModule) -> int:
    """The number of trials to train together: 1, with a one-line notice, when not possible."""
    requested = cfg.study.get("population", 1)
    if requested == 1:
        return 1
    head = f"study.population={requested} runs one trial at a time"
    spec = shared_param(specs)
    if spec is not None:
        notice(
            f"{head}: search.params.{spec.name} sets {spec.path}, which all members of a population "
            f"share; they may differ only in {', '.join(p + '*' for p in MEMBER_PREFIXES)}, "
            f"{', '.join(MEMBER_KEYS)}"
        )
        return 1
    x, y = _sample(datamodule)
    problem = vectorise_problem(build_model(cfg, datamodule), x, y)
    if problem is not None:
        notice(f"{head}: the model cannot be vectorised with torch.func.vmap ({problem})")
        return 1
    if world_size(cfg) > 1:
        notice(
            f"study.population trains each population on one device, not trainer.devices={cfg.trainer.devices}"
        )
    if requested != "auto":
        return int(requested)
    size, why = auto_size(cfg, datamodule)
    notice(f"study.population=auto: {size} trials per population ({why})")
    return size


def _sample(datamodule: pl.LightningDataModule, n: int = 4) -> tuple[torch.Tensor, torch.Tensor]:
    x, y = next(iter(datamodule.train_dataloader()))
    return x[:n], y[:n]


def _uses_cuda(cfg: DictConfig) -> bool:
    return str(cfg.trainer.accelerator) in ("auto", "gpu", "cuda") and torch.cuda.is_available()


def auto_size(cfg: DictConfig, datamodule: pl.LightningDataModule) -> tuple[int, str]:
    """K for ``study.population=auto``: what free GPU memory or the CPU threads allow.

    Returns:
        K and a few words on how it was chosen.
    """
    cap = max(2, math.ceil(int(cfg.study.n_trials) / AUTO_SHARE))
    if _uses_cuda(cfg):
        free, _total = torch.cuda.mem_get_info()
        per_member = _member_bytes(cfg, datamodule)
        # Half the free memory: evaluation batches and the allocator need room too.
        fits = max(1, int(free // 2 // per_member))
        why = f"{free / 2**30:.1f} GiB free on the GPU, about {per_member / 2**20:.1f} MiB per member"
        size = min(fits, cap)
    else:
        threads = torch.get_num_threads()
        why = f"{threads} CPU thread{'s' if threads > 1 else ''} x {CPU_MEMBERS_PER_THREAD}"
        size = min(CPU_MEMBERS_PER_THREAD * threads, cap)
    if size == cap:
        why += f", at most study.n_trials/{AUTO_SHARE}"
    return size, why


def _member_bytes(cfg: DictConfig, datamodule: pl.LightningDataModule) -> int:
    """GPU memory one more member takes: activations of a training batch, gradients, optimizer state."""
    x, y = (t.cuda() for t in next(iter(datamodule.train_dataloader())))
    peaks = []
    for k in (2, 4):
        nets = [build_model(cfg, datamodule).cuda() for _ in range(k)]
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        start = torch.cuda.memory_allocated()
        stack = StackedNets(nets)
        stack.losses(x, y).sum().backward()
        torch.cuda.synchronize()
        peaks.append(torch.cuda.max_memory_allocated() - start)
        del stack, nets
        torch.cuda.empty_cache()
    param_bytes = sum(p.numel() * p.element_size() for p in build_model(cfg, datamodule).parameters())
    # Two state tensors per parameter (Adam) on top of what the passes used.
    return max(1, (peaks[1] - peaks[0]) // 2 + 2 * param_bytes)


# long: the members' build, fit and per-member verdicts share one set of locals
def run_population(
    cfgs: Sequence[DictConfig],
    datamodule: pl.LightningDataModule,
    *,
    trials: Sequence[optuna.Trial | None],
    runs: Sequence[TrialRun | None],
) -> list[Outcome]:
    """Trains the trial configs together and says how each member ended; the caller tells Optuna.

    Each member starts from the weights its single trial would (every trial reseeds
    with ``seed`` before building its model) and sees the same batches.
    """
    base = cfgs[0]
    total = int(base.trainer.max_steps)
    nets = []
    for cfg in cfgs:
        pl.seed_everything(int(cfg.seed), workers=False, verbose=False)
        nets.append(build_model(cfg, datamodule))
    schedules = [plain(cfg.schedule) for cfg in cfgs]
    links = [
        MemberLink(
            trial,
            warmup_steps=warmup_length(schedule, total),
            guard=guard_from_config(cfg),
            sink=run.log_steps if run is not None else None,
            on_report=run.log_metrics if run is not None else None,
        )
        for cfg, schedule, trial, run in zip(cfgs, schedules, trials, runs, strict=True)
    ]
    module = PopulationModule(
        nets,
        optimizers=[plain(cfg.optimizer) for cfg in cfgs],
        schedules=schedules,
        total_steps=total,
        clip_norms=[cfg.trainer.get("gradient_clip_val") for cfg in cfgs],
    )
    control = PopulationControl(
        links,
        monitor=str(base.study.metric),
        flush_every=int(base.tracking.step_flush_every),
        val_every=int(base.trainer.val_check_interval),
        val_loader=datamodule.val_dataloader,
    )
    one_device = OmegaConf.merge(base, {"trainer": {"devices": 1, "strategy": "auto"}})
    assert isinstance(one_device, DictConfig)
    trainer = make_trainer(one_device, [control])
    try:
        fit_in_chunks(trainer, module, datamodule, base)
    except UserError:
        raise
    except Exception as exc:
        if isinstance(exc, torch.cuda.OutOfMemoryError):
            torch.cuda.empty_cache()
        error, reason = traceback.format_exc(), f"{type(exc).__name__}: {exc}"
        return [
            _outcome(link, trainer.global_step)
            if link.stopped_at is not None
            else Outcome("FAIL", link.last_value, reason, trainer.global_step, error=error)
            for link in links
        ]
    outcomes = [_outcome(link, trainer.global_step) for link in links]
    if any(o.state == "COMPLETE" for o in outcomes):
        datamodule.setup("test")
        trainer.test(module, dataloaders=datamodule.test_dataloader(), verbose=False)
        for index, outcome in enumerate(outcomes):
            if outcome.state == "COMPLETE":
                outcome.metrics = dict(module.metrics[index])
    return outcomes


def _outcome(link: MemberLink, steps: int) -> Outcome:
    """How one member ended, in the words a single trial would use."""
    steps = link.stopped_at if link.stopped_at is not None else steps
    if link.diverged is not None:
        return Outcome("PRUNED", link.last_value, stop_reason(link.diverged, steps), steps)
    if link.pruned_at is not None:
        return Outcome("PRUNED", link.last_value, f"pruned at step {link.pruned_at} by the pruner", steps)
    value = link.last_value
    if value is None or not math.isfinite(value):
        return Outcome("FAIL", value, "no finite validation value", steps)
    return Outcome("COMPLETE", value, None, steps)


def population_step(
    cfg: DictConfig,
    specs: list[ParamSpec],
    study: optuna.Study,
    datamodule: pl.LightningDataModule,
    tracker: Tracker,
    parent: str,
    progress: StudyProgress,
    *,
    size: int,
    guard: StorageGuard | None = None,
) -> list[Outcome]:
    """Asks Optuna for up to ``size`` trials, trains them as one population, records each.

    Calls to the study storage go through ``guard`` (retries, then the study stops), as a
    single trial's do.

    Returns:
        The outcomes, one per trial asked (empty when the study was already full).
    """
    guard = guard or StorageGuard()
    members: list[tuple[optuna.Trial, DictConfig, TrialRun]] = []
    try:
        for _ in range(size):
            trial = guard("asking for a trial", study.ask)
            if is_surplus(cfg, study, trial):
                break
            # Who runs it: a later run on this machine sees when this process is gone.
            guard("saving the trial's worker", partial(trial.set_user_attr, "worker", this_process()))
            try:
                trial_cfg, run = start_trial(cfg, specs, trial, tracker, parent, progress, guard=guard)
            except UserError:
                study.tell(trial, state=optuna.trial.TrialState.FAIL)
                raise
            members.append((trial, trial_cfg, run))
        if not members:
            return []
        outcomes = run_population(
            [m[1] for m in members], datamodule, trials=[m[0] for m in members], runs=[m[2] for m in members]
        )
    except (KeyboardInterrupt, UserError) as exc:
        state, reason = (
            ("KILLED", "interrupted (Ctrl-C)")
            if isinstance(exc, KeyboardInterrupt)
            else ("FAIL", "configuration error")
        )
        for trial, _cfg, run in members:
            study.tell(trial, state=optuna.trial.TrialState.FAIL)
            run.end(state, value=None, reason=reason)
        raise
    for (trial, trial_cfg, run), outcome in zip(members, outcomes, strict=True):
        record_outcome(study, trial, trial_cfg, run, outcome, progress, guard=guard)
    return outcomes
