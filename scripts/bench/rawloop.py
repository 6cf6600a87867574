"""What a person writes by hand instead of the framework: a raw PyTorch training loop that
reports to Optuna, and the plain LightningModule that Lightning's ``lr_find`` needs.

Both build the network, optimizer and schedule with the project's builders from the
trial's config, so they train exactly what a project trial trains (same initial weights
for a seed, same batches in the same order); only the loop around them differs.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import optuna
import pytorch_lightning as pl
import torch
from omegaconf import DictConfig
from torch import nn
from torch.nn import functional as F

from tuner.config.nodes import plain
from tuner.models.factory import build_model
from tuner.optimizer.factory import build_optimizer
from tuner.schedule.functions import build_scheduler


@torch.no_grad()
def accuracy(net: nn.Module, loader: Iterable[tuple[torch.Tensor, torch.Tensor]]) -> float:
    """Share of correctly classified samples of a loader."""
    net.eval()
    correct = count = 0
    for x, y in loader:
        correct += int((net(x).argmax(1) == y).sum())
        count += len(y)
    net.train()
    return correct / max(count, 1)


def raw_trial(cfg: DictConfig, datamodule: Any, trial: optuna.Trial | None) -> float:
    """Trains one trial config; reports validation accuracy every ``val_check_interval`` steps.

    Returns the final validation accuracy. Raises ``optuna.TrialPruned`` when the study's
    pruner says so; the steps taken are in the trial's ``steps`` user attribute either way.
    """
    torch.manual_seed(int(cfg.seed))
    net = build_model(cfg, datamodule)
    optimizer = build_optimizer(net, plain(cfg.optimizer))
    total, every = int(cfg.trainer.max_steps), int(cfg.trainer.val_check_interval)
    scheduler = build_scheduler(optimizer, plain(cfg.schedule), total)
    loader = datamodule.train_dataloader()  # one loader: each pass is a new shuffle, as in a trial
    step, value = 0, 0.0
    while step < total:
        for x, y in loader:
            loss = F.cross_entropy(net(x), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            step += 1
            if step % every == 0 or step == total:
                value = accuracy(net, datamodule.val_dataloader())
                if trial is not None:
                    trial.set_user_attr("steps", step)
                    trial.report(value, step)
                    if trial.should_prune():
                        raise optuna.TrialPruned()
            if step >= total:
                break
    return value


class LitClassifier(pl.LightningModule):
    """The LightningModule a Lightning user writes: automatic optimization, an ``lr`` attribute.

    Args:
        net: The classifier.
        optimizer: Optimizer spec (``optimizer`` config group); its ``lr`` is the start value.
    """

    def __init__(self, net: nn.Module, *, optimizer: Mapping[str, Any]) -> None:
        super().__init__()
        self.net = net
        self.optimizer_spec = dict(optimizer)
        self.lr = float(self.optimizer_spec["lr"])

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        x, y = batch
        return F.cross_entropy(self.net(x), y)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return build_optimizer(self.net, {**self.optimizer_spec, "lr": self.lr})
