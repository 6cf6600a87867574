"""Screening (``search.screen``): the study's first trials train a short run each, the best
one is then trained in full.

Why: a search learns nothing until its first trials end, and full-length start-up trials
drawn at random are where most of a study's steps go (three of them before the median
pruner may prune at all). A short run whose schedule is compressed to its length (warmup,
decay and the other shares of ``trainer.max_steps`` scale with it) ends its decay, so
trials are compared as they would finish, at an equal phase of their schedules, not
mid-warmup or before their decay. Ranking learning rates needs far fewer steps than
training one to the end.

How:

* When the study is created, ``search.screen`` trials are queued, each with the user
  attribute ``screen``. Their learning rates are stratified over the LR range (one draw per
  equal slice of its log scale), so a handful of short runs covers every decade; the
  sampler draws everything else.
* Such a trial trains ``search.screen_fraction`` of ``trainer.max_steps`` (and validates
  once, at its end). It is told to Optuna as PRUNED at that step with its value as the
  intermediate value: samplers rank it below every complete trial, and among the
  screening trials by value, which is Optuna's own way of learning from shorter trials.
* Once every screening trial has ended, the best ``search.screen_promote`` are queued again
  as full trials (ties on the metric are broken by ``study.tie_break``); the sampler and the
  pruner take over from there.

Queued trials survive a restart and are shared by every worker of a study; a screening
trial that is interrupted is queued again with its attribute, so it stays a screening trial.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import replace
from typing import TYPE_CHECKING

import numpy as np
import optuna
from omegaconf import DictConfig, open_dict

from tuner.errors import UserError
from tuner.search.space import ParamSpec

if TYPE_CHECKING:
    from tuner.training.trial import Outcome

#: Trial attribute: the steps of a screening trial (set when it is queued: True until run).
SCREEN_ATTR = "screen"
#: Trial attribute: the value a screening trial is ranked by (the tie-broken one).
SCREEN_VALUE_ATTR = "screen_value"
#: Study attribute: the trial numbers promoted to full trials (set once).
PROMOTED_ATTR = "tuner.screen_promoted"
#: The search keys of screening (they act when a study is created, so they are not part of
#: what makes its trials comparable: ``tuner.study.optuna_study.fingerprint``).
SCREEN_KEYS = ("screen", "screen_fraction", "screen_promote")
#: The fewest steps a screening run trains, whatever the fraction.
MIN_STEPS = 10


def check_screen(cfg: DictConfig) -> None:
    """Validates ``search.screen``, ``search.screen_fraction`` and ``search.screen_promote``.

    Raises:
        UserError: naming the bad key.
    """
    count = cfg.search.get("screen", 8)
    if not isinstance(count, int) or isinstance(count, bool) or count < 0:
        raise UserError("search.screen", count, "give a whole number of short first trials >= 0 (0: off)")
    fraction = cfg.search.get("screen_fraction", 0.125)
    if not isinstance(fraction, (int, float)) or isinstance(fraction, bool) or not 0 < fraction < 1:
        raise UserError(
            "search.screen_fraction",
            fraction,
            "give the share of trainer.max_steps a screening trial trains, in (0, 1)",
        )
    promote = cfg.search.get("screen_promote", 2)
    if not isinstance(promote, int) or isinstance(promote, bool) or promote < 0:
        raise UserError(
            "search.screen_promote", promote, "give a whole number of screened trials to train in full (>= 0)"
        )


def screen_count(cfg: DictConfig) -> tuple[int, str | None]:
    """Screening trials this study queues, and why none where ``search.screen`` asks for some.

    None with a population (whose members share one training length) or for a grid (which
    fixes its own points); none either unless ``study.n_trials`` is at least twice
    ``search.screen``: at most half of a study's trials screen, so a short study keeps its
    full trials.
    """
    wanted = int(cfg.search.get("screen", 8) or 0)
    if not wanted:
        return 0, None
    if cfg.study.get("population", 1) != 1:
        return 0, "study.population trains its members for one length"
    if cfg.sampler.name == "grid":
        return 0, "sampler=grid fixes its own points"
    if int(cfg.study.n_trials) < 2 * wanted:
        return 0, f"it needs study.n_trials >= {2 * wanted} (at most half of the trials screen)"
    if screen_steps(cfg) >= int(cfg.trainer.max_steps):
        return 0, f"a screening run would be as long as a full one (trainer.max_steps={cfg.trainer.max_steps})"
    return wanted, None


def screen_steps(cfg: DictConfig) -> int:
    """Steps of one screening run: its share of ``trainer.max_steps``."""
    total = int(cfg.trainer.max_steps)
    return min(total, max(MIN_STEPS, round(total * float(cfg.search.get("screen_fraction", 0.125)))))


def lr_spec(specs: Sequence[ParamSpec]) -> ParamSpec | None:
    """The searched learning rate, when it is a log-scale float (what is stratified)."""
    for spec in specs:
        if spec.path == "optimizer.lr" and spec.kind == "float" and spec.log and not spec.when:
            return spec
    return None


def stratified(low: float, high: float, count: int, seed: int | None) -> list[float]:
    """One log-uniform draw in each of ``count`` equal slices of ``[low, high]``, shuffled
    (so a study cut short still spans the range)."""
    rng = np.random.default_rng(seed)
    lo, hi = math.log(low), math.log(high)
    draws = [math.exp(lo + (i + rng.uniform()) / count * (hi - lo)) for i in range(count)]
    return [draws[i] for i in rng.permutation(count)]


def queue_screening(cfg: DictConfig, specs: Sequence[ParamSpec], study: optuna.Study) -> int:
    """Queues the screening trials of a new study; how many."""
    count, why_not = screen_count(cfg)
    # Said where screening was plausible: not for a study shorter than the screening itself
    # (every quick try with a few trials would print it).
    wanted = int(cfg.search.get("screen", 8) or 0)  # a search file of your own may not name it
    if why_not and int(cfg.study.n_trials) >= wanted:
        print(f"note: no screening trials (search.screen={wanted}): {why_not}")
    if not count:
        return 0
    spec = lr_spec(specs)
    lrs: list[float | None] = [None] * count
    if spec is not None and spec.low and spec.high:
        seed = cfg.sampler.get("seed")
        lrs = list(stratified(float(spec.low), float(spec.high), count, None if seed is None else int(seed)))
    for lr in lrs:
        params = {} if lr is None or spec is None else {spec.name: lr}
        study.enqueue_trial(params, user_attrs={SCREEN_ATTR: True})
    return count


def awaiting_promotion(study: optuna.Study) -> bool:
    """Whether a worker should wait before asking: every screening trial has started, some
    still run, and the best are not yet queued again. A trial asked now would be drawn before
    the promoted ones and could take the slot one of them needs."""
    if PROMOTED_ATTR in study.user_attrs:
        return False
    screens = [t for t in study.get_trials(deepcopy=False) if t.user_attrs.get(SCREEN_ATTR)]
    states = {t.state for t in screens}
    return optuna.trial.TrialState.RUNNING in states and optuna.trial.TrialState.WAITING not in states


def is_screening(trial: optuna.Trial) -> bool:
    return bool(trial.user_attrs.get(SCREEN_ATTR))


def shorten(trial_cfg: DictConfig) -> DictConfig:
    """A screening trial's config: its run, and every share of it, compressed to the
    screening length; validated once, at the end."""
    steps = screen_steps(trial_cfg)
    short = trial_cfg.copy()
    with open_dict(short):
        short.trainer.max_steps = steps
        short.trainer.val_check_interval = steps
    return short


def screened(outcome: Outcome) -> Outcome:
    """A screening trial's outcome as told: a run that ended is PRUNED at its short length
    (a failure stays a failure; a guard's or pruner's reason is kept)."""
    if outcome.state == "FAIL":
        return outcome
    reason = outcome.reason or f"screened: a short run of {outcome.steps} steps (search.screen)"
    return replace(outcome, state="PRUNED", reason=reason, metrics={})


def promote_when_done(cfg: DictConfig, study: optuna.Study) -> list[int]:
    """Once every screening trial has ended, queues the best again as full trials (once per
    study); the numbers of the trials promoted."""
    wanted = int(cfg.search.get("screen_promote", 2) or 0)
    if not wanted or PROMOTED_ATTR in study.user_attrs:
        return []
    trials = study.get_trials(deepcopy=False)
    screens = [t for t in trials if t.user_attrs.get(SCREEN_ATTR)]
    if not screens or any(not t.state.is_finished() for t in screens):
        return []
    ranked = [t for t in screens if t.user_attrs.get(SCREEN_VALUE_ATTR) is not None]
    maximize = study.direction == optuna.study.StudyDirection.MAXIMIZE
    ranked.sort(key=lambda t: float(t.user_attrs[SCREEN_VALUE_ATTR]), reverse=maximize)
    best = ranked[:wanted]
    # Set before queuing: of two workers that finish the last screens together, at most a
    # second look at an unset attribute could queue twice (a repeated full trial, no harm).
    study.set_user_attr(PROMOTED_ATTR, [t.number for t in best])
    for trial in best:
        study.enqueue_trial(dict(trial.params), user_attrs={"promoted_from": trial.number})
    return [t.number for t in best]
