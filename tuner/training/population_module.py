"""Training K trials in one Lightning fit: the population module and its optimizer.

Every member is a trial with its own optimizer, schedule and warmup; all see the same
batches. Members that stop (pruned, diverged) are dropped from the stack at once, so
they cost nothing afterwards. :class:`~tuner.training.control.PopulationControl`
reports, prunes and traces the members; this module only trains and evaluates them.
"""

from __future__ import annotations

import ctypes
import sys
from collections.abc import Mapping, Sequence
from typing import Any

import pytorch_lightning as pl
import torch
from torch import Tensor, nn

from tuner.optimizer.factory import build_optimizer, set_train_mode
from tuner.schedule.functions import build_scheduler
from tuner.training.fused import FusedStep, fusable
from tuner.training.stacked import StackedNets


class PopulationOptimizer(torch.optim.Optimizer):
    """The members' optimizers as the one optimizer Lightning steps.

    Its parameters are the stacked tensors, which receive the gradients. A step runs
    the vectorised :class:`FusedStep` when it reproduces the members' optimizers, and
    otherwise hands each member its rows of the gradients and steps its own optimizer.
    """

    def __init__(self, module: PopulationModule) -> None:
        assert module.stack is not None
        super().__init__(list(module.stack.params.values()), {})
        self.module = module

    def step(self, closure: Any = None) -> Any:  # type: ignore[override]
        loss = None
        if closure is not None:  # Lightning's hooks around the step
            with torch.enable_grad():
                loss = closure()
        module = self.module
        assert module.stack is not None
        if module.fused is not None:
            module.fused.step()
        else:
            module.stack.share_grads()
            for index in module.alive:
                module.member_optimizers[index].step()
            module.stack.clear_member_grads()
        return loss

    def track(self, stack: StackedNets) -> None:
        """Follows a restacked population (in place: Lightning's wrapper shares the list)."""
        self.param_groups[0]["params"][:] = list(stack.params.values())


class PopulationModule(pl.LightningModule):
    """Trains K copies of a classifier, each member with its own optimizer and schedule.

    Optimization is manual, as in :class:`~tuner.training.TrialModule`: each training step
    receives a list of batches (``StepChunks``) and takes one optimizer step of every
    member per batch, so ``trainer.global_step`` counts optimizer steps.

    Args:
        nets: One network per member, identical in architecture.
        optimizers: Each member's optimizer spec (``optimizer`` config group).
        schedules: Each member's schedule spec (``schedule`` config group).
        total_steps: Optimizer steps of the whole run, every schedule's horizon.
        clip_norms: Each member's ``trainer.gradient_clip_val`` (None: no clipping).
    """

    def __init__(
        self,
        nets: Sequence[nn.Module],
        *,
        optimizers: Sequence[Mapping[str, Any]],
        schedules: Sequence[Mapping[str, Any]],
        total_steps: int,
        clip_norms: Sequence[float | None] | None = None,
    ) -> None:
        super().__init__()
        self.automatic_optimization = False
        self.nets = nn.ModuleList(nets)
        self.optimizer_specs = [dict(o) for o in optimizers]
        self.schedule_specs = [dict(s) for s in schedules]
        self.total_steps = total_steps
        self.clip_norms = list(clip_norms or [None] * len(nets))
        self.alive: list[int] = list(range(len(nets)))
        self.stack: StackedNets | None = None
        self.fused: FusedStep | None = None
        self.member_optimizers: list[torch.optim.Optimizer] = []
        self.schedulers: list[Any] = []
        self._optimizer: PopulationOptimizer | None = None
        #: Metrics of the last evaluation, by member index: ``val_loss``, ``val_acc``...
        self.metrics: dict[int, dict[str, float]] = {}
        self._sums = torch.zeros(0)

    def on_fit_start(self) -> None:
        if self.device.type == "cpu":
            keep_freed_memory()

    def configure_optimizers(self) -> Any:
        # Lightning has moved the nets to the device by now: stack them there.
        self.stack = StackedNets(list(self.nets))
        self.member_optimizers = [
            build_optimizer(net, spec) for net, spec in zip(self.nets, self.optimizer_specs, strict=True)
        ]
        self.schedulers = [
            build_scheduler(opt, spec, self.total_steps)
            for opt, spec in zip(self.member_optimizers, self.schedule_specs, strict=True)
        ]
        self.fused = None
        if fusable(self.member_optimizers):
            self.fused = FusedStep(self.stack, self.member_optimizers)
            for optimizer in self.member_optimizers:
                # They never step themselves; tell their schedulers not to warn about it.
                optimizer._opt_called = True  # type: ignore[attr-defined]
        self._optimizer = PopulationOptimizer(self)
        return self._optimizer

    @property
    def uses_fused_step(self) -> bool:
        """Whether the members step together (SGD/Adam/AdamW) rather than one optimizer each."""
        return self.fused is not None

    def lr(self, index: int) -> float:
        """The LR member ``index`` trains with at this step."""
        return float(self.member_optimizers[index].param_groups[0]["lr"])

    def drop(self, indices: Sequence[int]) -> None:
        """Stops training these members: the stack shrinks to the others."""
        gone = set(indices) & set(self.alive)
        if not gone or self.stack is None:
            return
        keep = [j for j, index in enumerate(self.alive) if index not in gone]
        self.alive = [index for index in self.alive if index not in gone]
        for index in gone:
            self.member_optimizers[index].state.clear()
        if not self.alive:
            return
        self.stack.restack(self.alive)
        if self.fused is not None:
            self.fused.keep(keep)
        if self._optimizer is not None:
            self._optimizer.track(self.stack)

    # ------------------------------------------------------------------ training

    def training_step(self, batches: list[tuple[Tensor, Tensor]], batch_idx: int) -> dict[str, Any]:
        """Several optimizer steps of every member, one per batch (see ``StepChunks``)."""
        assert self.stack is not None
        optimizer = self.optimizers()
        assert isinstance(optimizer, pl.core.optimizer.LightningOptimizer)
        steps: list[int] = []
        lrs: list[list[float]] = []
        losses: list[Tensor] = []
        for x, y in batches:
            if self.trainer.global_step >= self.total_steps:
                break
            steps.append(self.trainer.global_step)
            lrs.append([self.lr(index) for index in self.alive])
            member_losses = self.stack.losses(x, y)
            optimizer.zero_grad(set_to_none=True)
            # The members are independent: the gradient of the sum is each member's own.
            self.manual_backward(member_losses.sum())
            # Each member clips its own norm with its own limit, as its single trial would.
            self.stack.clip_grad_norm_([self.clip_norms[i] for i in self.alive])
            optimizer.step()
            for index in self.alive:
                self.schedulers[index].step()
            losses.append(member_losses.detach())
        # Per step: its global step, each member's LR, and each member's loss (by stack row).
        return {"steps": steps, "lrs": lrs, "losses": torch.stack(losses) if losses else None}

    def on_train_epoch_start(self) -> None:
        self._train_mode(True)

    def _train_mode(self, training: bool) -> None:
        # Schedule-free optimizers evaluate at other weights than they train at.
        for index in self.alive:
            set_train_mode(self.member_optimizers[index], training)

    # ------------------------------------------------------------------ evaluation

    def on_validation_epoch_start(self) -> None:
        self._start_eval()

    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        self._accumulate(batch)

    def on_validation_epoch_end(self) -> None:
        self._end_eval("val")
        if self.trainer.sanity_checking:
            return
        for index in self.alive:
            report = getattr(self.schedulers[index], "report", None)
            if report is not None:
                monitor = str(self.schedule_specs[index].get("monitor", "val_loss"))
                report(self.metrics[index][monitor])

    def on_test_epoch_start(self) -> None:
        self._start_eval()

    def test_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        self._accumulate(batch)

    def on_test_epoch_end(self) -> None:
        self._end_eval("test")

    def _start_eval(self) -> None:
        self._train_mode(False)
        self._sums = torch.zeros(len(self.alive), 3, device=self.device)

    def _accumulate(self, batch: tuple[Tensor, Tensor]) -> None:
        assert self.stack is not None
        x, y = batch
        sums = self.stack.eval_sums(x, y)
        count = torch.full((len(sums), 1), len(y), dtype=sums.dtype, device=sums.device)
        self._sums += torch.cat([sums, count], dim=1)

    def _end_eval(self, split: str) -> None:
        self.metrics = {}
        for index, (loss, correct, count) in zip(self.alive, self._sums.tolist(), strict=True):
            count = max(count, 1.0)
            self.metrics[index] = {
                f"{split}_loss": _logged(loss / count),
                f"{split}_acc": _logged(correct / count),
            }
        self._train_mode(True)

    @torch.no_grad()
    def evaluate(self, loader: Any) -> dict[int, dict[str, float]]:
        """Validation metrics of every member still training, outside Lightning's loop."""
        was_training = self.training
        self.eval()
        self._start_eval()
        for x, y in loader:
            self._accumulate((x.to(self.device), y.to(self.device)))
        self._end_eval("val")
        self.train(was_training)
        return self.metrics


def _logged(value: float) -> float:
    # A single trial's metrics go through self.log, which stores them as float32.
    return float(torch.tensor(value, dtype=torch.float32))


def keep_freed_memory() -> None:
    """Stops glibc from handing freed activation memory back to the OS after every step.

    A population's activations are megabytes; glibc serves blocks that large with mmap,
    or trims them off the top of the heap, and gives them back when freed, so each step
    page-faults them in again (about 500 faults a step for 16 MLPs, a tenth of the step's
    time here). Raising both thresholds keeps them in the heap for reuse; the process
    keeps its peak memory instead.
    """
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:  # not glibc (musl...): nothing to tune
        return
    m_trim_threshold, m_mmap_threshold = -1, -3
    libc.mallopt(m_mmap_threshold, 32 * 2**20)  # glibc's largest allowed value
    libc.mallopt(m_trim_threshold, 2**30)
