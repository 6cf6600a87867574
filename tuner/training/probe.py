"""Cooldown probes: what a trial would score if its run ended here.

A trial with warmup, a high LR or a schedule that has not decayed yet looks worse
mid-run than it will end, so a pruner that compares raw values at equal steps prunes
exactly those trials. At an evaluation rung a probe copies the trial's state, anneals
the LR from where it is to the schedule's floor over ``probe.fraction`` of the steps
done so far (a warmup-stable-decay cooldown), evaluates the branch and puts the copy
back: weights, optimizer state, schedule position and RNG are as before the branch.
The branch's metric is what the pruner sees, so two LRs are compared as they would
finish. A probe at step ``s`` of ``c`` cooldown steps is also a whole run of ``s + c``
steps, so one trial gives its score at several training lengths (see
:mod:`tuner.report.budgets`).

Rungs grow geometrically (``probe.growth``): the branches cost
``fraction * (s1 + s2 + ...)`` steps, about ``2 * fraction`` of a run at growth 2.
"""

from __future__ import annotations

import copy
import math
import random
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig
from torch import nn
from torch.nn import functional as F

from tuner.errors import UserError
from tuner.optimizer.factory import set_train_mode
from tuner.schedule.functions import COOLDOWN_SHAPES

PROBES = ("none", "cooldown")
#: Trial user attribute: ``[[run_length, value], ...]`` of its branches, for the report.
PROBES_ATTR = "tuner.probes"


@dataclass(frozen=True)
class ProbeSettings:
    """The ``probe`` config group (see ``conf/probe/cooldown.yaml``)."""

    fraction: float = 0.2
    growth: float = 2.0
    shape: str = "1-sqrt"
    min_steps: int = 10


def probe_settings(cfg: DictConfig) -> ProbeSettings | None:
    """The probe settings of a config, or None when probes are off."""
    node = cfg.get("probe")
    if node is None or node.get("name", "none") == "none":
        return None
    return ProbeSettings(
        fraction=float(node.fraction),
        growth=float(node.growth),
        shape=str(node.shape),
        min_steps=int(node.min_steps),
    )


def check_probe(cfg: DictConfig) -> None:
    """Validates the ``probe`` group (bad input: one line naming the key)."""
    node = cfg.get("probe")
    name = None if node is None else node.get("name", "none")
    if name not in PROBES:
        raise UserError("probe.name", name, f"use one of {', '.join(PROBES)}")
    if name == "none":
        return
    _number_in(node, "fraction", 0.0, 1.0, "a share of the steps done in (0, 1], e.g. 0.2")
    _number_in(node, "growth", 1.0, math.inf, "a factor >= 1 (2: probe at steps 1x, 2x, 4x... the first)")
    min_steps = node.get("min_steps")
    if isinstance(min_steps, bool) or not isinstance(min_steps, int) or min_steps < 1:
        raise UserError("probe.min_steps", min_steps, "give a whole number >= 1")
    if node.get("shape") not in COOLDOWN_SHAPES:
        raise UserError("probe.shape", node.get("shape"), f"use one of {', '.join(COOLDOWN_SHAPES)}")
    population = cfg.study.get("population", 1)
    if population != 1:
        raise UserError(
            "probe.name", name, "cooldown probes train one trial at a time: set study.population=1"
        )
    devices = cfg.trainer.get("devices", 1)
    if devices not in (1, "1", "auto"):
        raise UserError("probe.name", name, "cooldown probes run on one device: set trainer.devices=1")


def _number_in(node: DictConfig, key: str, low: float, high: float, fix: str) -> None:
    """``probe.<key>`` must be a number in ``(low, high]`` (``[low, high]`` for growth: 1 is every rung)."""
    value = node.get(key)
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    above = ok and (value >= low if key == "growth" else value > low)
    if not above or value > high:
        raise UserError(f"probe.{key}", value, f"give {fix}")


@dataclass
class Snapshot:
    """A trial's whole training state: weights and buffers, optimizer, schedule, RNGs.

    ``state_dict()`` of a module or an optimizer holds references to the live tensors,
    so both are copied: the branch must not write into the copy it returns to.
    """

    net: dict[str, torch.Tensor]
    optimizer: dict[str, Any]
    scheduler: dict[str, Any] | None
    rng: dict[str, Any]
    training: bool

    @classmethod
    def take(cls, net: nn.Module, optimizer: torch.optim.Optimizer, scheduler: Any) -> Snapshot:
        return cls(
            net={k: v.detach().clone() for k, v in net.state_dict().items()},
            optimizer=copy.deepcopy(optimizer.state_dict()),
            scheduler=copy.deepcopy(scheduler.state_dict()) if scheduler is not None else None,
            rng=_rng_state(),
            training=net.training,
        )

    def restore(self, net: nn.Module, optimizer: torch.optim.Optimizer, scheduler: Any) -> None:
        net.load_state_dict(self.net)
        optimizer.load_state_dict(copy.deepcopy(self.optimizer))
        if scheduler is not None and self.scheduler is not None:
            scheduler.load_state_dict(copy.deepcopy(self.scheduler))
        _set_rng_state(self.rng)
        net.train(self.training)


def _rng_state() -> dict[str, Any]:
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "python": random.getstate(),
        "numpy": np.random.get_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    if "cuda" in state:
        torch.cuda.set_rng_state_all(state["cuda"])


@dataclass
class ProbeResult:
    """One branch: taken at ``step``, ``length`` steps of cooldown, its validation metrics."""

    step: int
    length: int
    metrics: dict[str, float]

    @property
    def run_length(self) -> int:
        """The training length this branch is a whole run of."""
        return self.step + self.length


@dataclass
class CooldownProbe:
    """Branches cooldowns from a trial at growing rungs.

    Args:
        settings: The ``probe`` group.
        floor_ratio: The schedule's floor (``schedule.min_lr_ratio``) as a share of the peak LR.
        total_steps: The trial's length: no probe at its end (the schedule is done).
        train_batches: Makes a fresh iterable of training batches for a branch.
        every: Steps between two evaluations (``trainer.val_check_interval``).
        warmup_steps: No branch during the warmup: it would cool down from a rising LR.
        seed: The study seed; a branch at step s draws its batches with ``seed + s``.
        clip: Gradient-norm clipping of the trial (None: none).
    """

    settings: ProbeSettings
    floor_ratio: float
    total_steps: int
    train_batches: Callable[[], Iterable[Any]]
    every: int
    warmup_steps: int = 0
    seed: int = 0
    clip: float | None = None
    results: list[ProbeResult] = field(default_factory=list)

    def rungs(self) -> list[int]:
        """The evaluation steps that branch: the first, then each >= ``growth`` x the last.

        The same for every trial of a study, so the pruner compares branches taken at
        the same step (a trial skips the rungs inside its warmup).
        """
        out, rung = [], self.every
        while rung < self.total_steps:
            out.append(rung)
            rung = max(rung + self.every, math.ceil(self.settings.growth * rung / self.every) * self.every)
        return out

    def due(self, step: int) -> bool:
        """Whether the evaluation at ``step`` is a probe rung."""
        return step > self.warmup_steps and step in self.rungs()

    def length_at(self, step: int) -> int:
        """Cooldown steps of a branch taken at ``step``."""
        return max(self.settings.min_steps, math.ceil(self.settings.fraction * step))

    def run(
        self,
        net: nn.Module,
        optimizer: torch.optim.Optimizer,
        scheduler: Any,
        evaluate: Callable[[], dict[str, float]],
        *,
        step: int,
    ) -> ProbeResult:
        """Branches a cooldown at ``step``, evaluates it with ``evaluate`` and puts the state back."""
        length = self.length_at(step)
        # Lightning calls the validation hooks under inference mode; the branch trains, and
        # the copies it restores must be ordinary tensors that training may update in place.
        with torch.inference_mode(False), torch.enable_grad():
            snapshot = Snapshot.take(net, optimizer, scheduler)
            try:
                torch.manual_seed(self.seed + step)  # the branch's batches, the same on rerun
                self._cool_down(net, optimizer, length)
                set_train_mode(optimizer, False)
                metrics = evaluate()
            finally:
                snapshot.restore(net, optimizer, scheduler)
                set_train_mode(optimizer, True)
        result = ProbeResult(step, length, metrics)
        self.results.append(result)
        return result

    def _cool_down(self, net: nn.Module, optimizer: torch.optim.Optimizer, length: int) -> None:
        shape = COOLDOWN_SHAPES[self.settings.shape]
        start = [float(g["lr"]) for g in optimizer.param_groups]
        floors = [self.floor_ratio * float(g.get("initial_lr", g["lr"])) for g in optimizer.param_groups]
        net.train()
        set_train_mode(optimizer, True)
        for k, (x, y) in enumerate(_endless(self.train_batches, length)):
            for group, lr0, floor in zip(optimizer.param_groups, start, floors, strict=True):
                # From where the trial is to the floor: step 0 at the current LR.
                group["lr"] = floor + (lr0 - floor) * shape(k / length)
            device = next(net.parameters()).device
            loss = F.cross_entropy(net(x.to(device)), y.to(device))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if self.clip:
                torch.nn.utils.clip_grad_norm_(net.parameters(), self.clip)
            optimizer.step()


def _endless(make: Callable[[], Iterable[Any]], count: int) -> Iterator[Any]:
    """``count`` batches, starting new passes over the data as needed."""
    taken = 0
    while taken < count:
        empty = True
        for batch in make():
            empty = False
            yield batch
            taken += 1
            if taken == count:
                return
        if empty:
            raise ValueError("the training data loader yielded no batch")
