"""The LightningModule every trial trains: a classifier with the trial's optimizer and schedule."""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.plugins.precision import Precision
from pytorch_lightning.strategies import SingleDeviceStrategy
from torch import nn
from torch.nn import functional as F

from tuner.optimizer.factory import build_optimizer, set_train_mode
from tuner.schedule.functions import build_scheduler


class StepChunks:
    """An endless stream of lists of ``size`` batches: one Lightning step each.

    Lightning's bookkeeping costs about 0.5 ms per training step, as much as a small
    model's whole step on a CPU; taking several optimizer steps per Lightning step
    spreads that cost (the idea of Keras' ``steps_per_execution``). The stream runs
    across epochs, so every chunk has exactly ``size`` batches and validation falls
    on the configured optimizer steps.
    """

    def __init__(self, loader: Iterable[Any], size: int) -> None:
        self.loader, self.size = loader, size

    def __iter__(self) -> Iterator[list[Any]]:
        chunk: list[Any] = []
        while True:
            empty = True
            for batch in self.loader:  # each pass reshuffles, like a new epoch
                empty = False
                chunk.append(batch)
                if len(chunk) == self.size:
                    yield chunk
                    chunk = []
            if empty:
                raise ValueError("the training data loader yielded no batch")


def batch_sums(net: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    """Summed loss, correct predictions and sample count of one evaluation batch."""
    x, y = batch
    logits = net(x)
    loss = F.cross_entropy(logits, y, reduction="sum")
    correct = (logits.argmax(dim=1) == y).sum()
    return torch.stack(
        [loss, correct.to(loss.dtype), torch.tensor(len(y), device=loss.device, dtype=loss.dtype)]
    )


@torch.no_grad()
def evaluate(
    net: nn.Module, loader: Iterable[tuple[torch.Tensor, torch.Tensor]], split: str = "val"
) -> dict[str, float]:
    """``<split>_loss`` and ``<split>_acc`` of ``net`` on a loader, outside Lightning's loops
    (a cooldown probe's branch); the same sums as the module's own evaluation."""
    was_training = net.training
    net.eval()
    device = next(net.parameters()).device
    sums = torch.zeros(3, device=device)
    for x, y in loader:
        sums += batch_sums(net, (x.to(device), y.to(device)))
    net.train(was_training)
    loss, correct, count = (float(v) for v in sums)
    count = max(count, 1.0)
    return {f"{split}_loss": loss / count, f"{split}_acc": correct / count}


class TrialModule(pl.LightningModule):
    """Wraps any ``nn.Module`` classifier for one trial.

    Optimization is manual: each training step receives a list of batches (see
    :class:`StepChunks`) and takes one optimizer and one schedule step per batch, so
    ``trainer.global_step`` still counts optimizer steps.

    Args:
        net: The model; maps a batch of inputs to logits.
        optimizer: Optimizer spec (``optimizer`` config group).
        schedule: Schedule spec (``schedule`` config group).
        total_steps: Optimizer steps of the whole run, the schedule's horizon.
        gradient_clip_val: Clip the gradient norm to this value (None: no clipping).
    """

    def __init__(
        self,
        net: nn.Module,
        *,
        optimizer: Mapping[str, Any],
        schedule: Mapping[str, Any],
        total_steps: int,
        gradient_clip_val: float | None = None,
    ) -> None:
        super().__init__()
        self.automatic_optimization = False
        self.gradient_clip_val = gradient_clip_val
        self.net = net
        self.optimizer_spec = dict(optimizer)
        self.schedule_spec = dict(schedule)
        self.total_steps = total_steps
        self._direct = False  # see on_fit_start
        self._eval_sums = torch.zeros(3)  # summed loss, correct, count of the running evaluation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def training_step(
        self, batches: list[tuple[torch.Tensor, torch.Tensor]], batch_idx: int
    ) -> dict[str, Any]:
        optimizer = self.optimizers()
        scheduler = self.lr_schedulers()
        assert isinstance(optimizer, pl.core.optimizer.LightningOptimizer)
        steps: list[int] = []
        lrs: list[float] = []
        losses: list[torch.Tensor] = []
        chance: float | None = None
        direct = self._direct
        for x, y in batches:
            if self.trainer.global_step >= self.total_steps:
                break
            steps.append(self.trainer.global_step)
            lrs.append(float(optimizer.param_groups[0]["lr"]))
            logits = self.net(x)
            loss = F.cross_entropy(logits, y)
            if chance is None and logits.dim() >= 2:
                chance = math.log(logits.shape[1])  # the loss of a uniform guess
            optimizer.zero_grad(set_to_none=True)
            if direct:
                self._direct_step(loss, optimizer)
            else:
                self.manual_backward(loss)
                if self.gradient_clip_val:
                    self.clip_gradients(optimizer.optimizer, gradient_clip_val=self.gradient_clip_val)
                optimizer.step()
            scheduler.step()  # type: ignore[union-attr]
            losses.append(loss.detach())
        # Not self.log: it costs more per step than a small model's forward pass;
        # StepTrace takes these values and sends them on in windows.
        return {
            "steps": steps,
            "lrs": lrs,
            "losses": torch.stack(losses) if losses else None,
            "chance": chance,
        }

    def transfer_batch_to_device(self, batch: Any, device: torch.device, dataloader_idx: int) -> Any:
        # The loaders yield CPU tensors: on a CPU device Lightning's walk of a chunk of
        # batches to move them nowhere cost about 2% of a 1,000-step MLP trial.
        if device.type == "cpu":
            return batch
        return super().transfer_batch_to_device(batch, device, dataloader_idx)

    def on_fit_start(self) -> None:
        # One process in full precision: the strategy and precision plugin would only
        # call backward() and step() through four hook dispatches per optimizer step,
        # a tenth of a small model's step on a CPU. DDP, mixed precision and anything
        # else keep Lightning's path (gradient sync, loss scaling).
        strategy = self.trainer.strategy
        self._direct = (
            isinstance(strategy, SingleDeviceStrategy) and type(strategy.precision_plugin) is Precision
        )

    def _direct_step(self, loss: torch.Tensor, optimizer: pl.core.optimizer.LightningOptimizer) -> None:
        """backward() and step() without the strategy; the step still counts as Lightning's."""
        loss.backward()
        if self.gradient_clip_val:
            torch.nn.utils.clip_grad_norm_(self.net.parameters(), self.gradient_clip_val)
        optimizer._on_before_step()  # the manual-optimization loop's step counting
        optimizer.optimizer.step()
        optimizer._on_after_step()

    def configure_optimizers(self) -> Any:
        optimizer = build_optimizer(self.net, self.optimizer_spec)
        scheduler = build_scheduler(optimizer, self.schedule_spec, self.total_steps)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    def _optimizers(self) -> list[torch.optim.Optimizer]:
        if self._trainer is None:
            return []
        return [o.optimizer if hasattr(o, "optimizer") else o for o in self.trainer.optimizers]

    # Schedule-free optimizers evaluate at other weights than they train at.
    def on_train_epoch_start(self) -> None:
        for optimizer in self._optimizers():
            set_train_mode(optimizer, True)

    def on_validation_epoch_start(self) -> None:
        for optimizer in self._optimizers():
            set_train_mode(optimizer, False)
        self._eval_sums = torch.zeros(3, device=self.device)

    def on_validation_epoch_end(self) -> None:
        self._log_eval("val")
        scheduler = self.lr_schedulers()
        report = getattr(scheduler, "report", None)
        if report is not None and not self.trainer.sanity_checking:
            monitor = str(self.schedule_spec.get("monitor", "val_loss"))
            report(float(self.trainer.callback_metrics[monitor]))
        for optimizer in self._optimizers():
            set_train_mode(optimizer, True)

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        self._accumulate(batch)

    def on_test_epoch_start(self) -> None:
        self.on_validation_epoch_start()

    def test_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        self._accumulate(batch)

    def on_test_epoch_end(self) -> None:
        self._log_eval("test")

    def _accumulate(self, batch: tuple[torch.Tensor, torch.Tensor]) -> None:
        self._eval_sums += batch_sums(self.net, batch)

    def _log_eval(self, split: str) -> None:
        sums = self.trainer.strategy.reduce(self._eval_sums, reduce_op="sum")
        loss, correct, count = (float(v) for v in sums)
        count = max(count, 1.0)
        # sync_dist off: the sums above are already reduced across ranks.
        self.log(f"{split}_loss", loss / count, prog_bar=False)
        self.log(f"{split}_acc", correct / count, prog_bar=False)
