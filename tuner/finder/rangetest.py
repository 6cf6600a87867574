"""The LR range test: train briefly while the LR rises, record the loss at every step.

Written as a plain PyTorch loop driven by Lightning Fabric rather than as a Lightning fit:
the test needs the loss of every step, its own LR on every step and a stop decided
between steps, and Fabric still places it on the configured accelerator, precision and
(DDP) strategy.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from lightning_fabric import Fabric
from torch import nn
from torch.nn import functional as F

from tuner.errors import UserError
from tuner.finder.settings import RAMPS


@dataclass
class Curve:
    """What one range test saw.

    Attributes:
        lrs: The LR of every step taken.
        losses: The training loss of every step (averaged over DDP ranks).
        smoothed: Bias-corrected exponential moving average of ``losses``.
        stopped: Why the test ended before its last step (divergence), or None.
        seed: The seed of the model's initialisation and of the batch order.
    """

    lrs: np.ndarray
    losses: np.ndarray
    smoothed: np.ndarray
    stopped: str | None = None
    seed: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "seed": self.seed,
            "stopped": self.stopped,
            "lr": self.lrs.tolist(),
            "loss": self.losses.tolist(),
            "smoothed": self.smoothed.tolist(),
        }


def ramp(start_lr: float, end_lr: float, num_steps: int, *, mode: str = "exponential") -> np.ndarray:
    """The LR of each of ``num_steps`` steps, from ``start_lr`` to ``end_lr`` inclusive."""
    if mode == "exponential":
        return np.geomspace(start_lr, end_lr, num_steps)
    if mode == "linear":
        return np.linspace(start_lr, end_lr, num_steps)
    raise UserError("finder.mode", mode, f"use one of {', '.join(RAMPS)}")


def ema(values: np.ndarray, beta: float) -> np.ndarray:
    """Exponential moving average with bias correction (no pull towards the zero start)."""
    out = np.empty(len(values))
    average = 0.0
    for i, value in enumerate(values):
        average = beta * average + (1 - beta) * float(value)
        out[i] = average / (1 - beta ** (i + 1))
    return out


def cycle(batches: Iterable[Any], *, rank: int = 0, world_size: int = 1) -> Iterator[Any]:
    """Yields batches forever, starting a new pass (a new epoch) whenever one ends.

    Under DDP each rank keeps every ``world_size``-th batch, so the ranks see different data
    whatever the loader is.

    Raises:
        UserError: the loader yields no batch for this rank in a whole pass.
    """
    while True:
        given = 0
        for index, batch in enumerate(batches):
            if index % world_size == rank:
                given += 1
                yield batch
        if given == 0:
            raise UserError(
                "data.batch_size", None, "the training loader gave no batch; use a smaller batch size"
            )


def _loss(model: nn.Module, batch: Any) -> torch.Tensor:
    x, y = batch
    return F.cross_entropy(model(x), y)


# long: one training loop; its early stop, the rank-0 broadcast and the restore belong together
def range_test(
    net: nn.Module,
    optimizer: torch.optim.Optimizer,
    batches: Iterator[Any],
    *,
    lrs: np.ndarray,
    beta: float,
    diverge_factor: float,
    fabric: Fabric,
    loss_fn: Callable[[nn.Module, Any], torch.Tensor] = _loss,
    seed: int | None = None,
) -> Curve:
    """Trains ``net`` one batch per LR in ``lrs``; restores its weights and optimizer state after.

    Stops early once the smoothed loss passes ``diverge_factor`` times its best so far, or
    the loss stops being finite. Every rank takes the same decision: rank 0's, broadcast.

    Args:
        net: The model, not yet set up by Fabric.
        optimizer: Its optimizer, not yet set up; every param group gets the ramp's LR
            (times the group's own LR ratio to the first group's).
        batches: An endless batch iterator (see :func:`cycle`).
        lrs: The LR of each step.
        beta: Smoothing of the loss's moving average.
        diverge_factor: Stop when the smoothed loss exceeds this times its minimum.
        fabric: The launched Fabric that places the model and reduces across ranks.
        loss_fn: ``(model, batch) -> loss``.
        seed: Recorded on the curve.
    """
    saved_net = copy.deepcopy(net.state_dict())
    saved_optimizer = copy.deepcopy(optimizer.state_dict())
    was_training = net.training
    base = float(optimizer.param_groups[0]["lr"]) or 1.0
    ratios = [float(group["lr"]) / base for group in optimizer.param_groups]
    model, opt = fabric.setup(net, optimizer)
    model.train()
    losses: list[float] = []
    smoothed: list[float] = []
    average, best, stopped = 0.0, math.inf, None
    try:
        for step, lr in enumerate(lrs):
            for group, ratio in zip(opt.param_groups, ratios, strict=True):
                group["lr"] = float(lr) * ratio
            batch = fabric.to_device(next(batches))
            opt.zero_grad(set_to_none=True)
            with fabric.autocast():
                loss = loss_fn(model, batch)
            reduced = fabric.all_reduce(loss.detach(), reduce_op="mean")
            assert isinstance(reduced, torch.Tensor)
            value = float(reduced)
            losses.append(value)
            average = beta * average + (1 - beta) * value
            smoothed.append(average / (1 - beta ** (step + 1)))
            best = min(best, smoothed[-1])
            reason = None
            if not math.isfinite(value):
                reason = f"loss {value} at lr {lr:.3g}"
            elif step > 0 and smoothed[-1] > diverge_factor * best:
                reason = f"diverged at lr {lr:.3g} (smoothed loss > {diverge_factor:g} x best)"
            stopped = fabric.broadcast(reason, src=0)
            if stopped:
                break
            fabric.backward(loss)
            opt.step()
    finally:
        net.load_state_dict(saved_net)
        optimizer.load_state_dict(saved_optimizer)
        net.train(was_training)
    taken = len(losses)
    return Curve(
        lrs=np.asarray(lrs[:taken], dtype=float),
        losses=np.asarray(losses),
        smoothed=np.asarray(smoothed),
        stopped=stopped,
        seed=seed,
    )
