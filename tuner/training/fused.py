"""One optimizer step for every member at once, on the stacked tensors (SGD, Adam, AdamW).

Stepping K torch optimizers costs K times their Python overhead, which on a small
model is more than the whole vectorised forward and backward pass. For the three
element-wise optimizers that most studies use, this module does the same arithmetic
as torch's single-tensor implementation on the ``[members, ...]`` tensors, with each
member's hyper-parameters (LR, weight decay, betas, momentum...) read from the
member's own torch optimizer, where its scheduler writes the LR. Any other optimizer,
or members whose optimizers differ in kind, step their own torch optimizers instead.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from tuner.training.stacked import StackedNets

# Group keys that must be equal across members for one vectorised step to be exact.
_SHARED: dict[str, tuple[str, ...]] = {
    "sgd": ("nesterov", "maximize"),
    "adam": ("amsgrad", "maximize", "decoupled_weight_decay"),
}
# Implementations whose arithmetic differs from the single-tensor one (foreach does not).
_OTHER_PATHS = ("fused", "capturable", "differentiable")


def _kind(optimizer: torch.optim.Optimizer) -> str | None:
    if type(optimizer) is torch.optim.SGD:
        return "sgd"
    if type(optimizer) in (torch.optim.Adam, torch.optim.AdamW):
        return "adam"
    return None


def fusable(optimizers: Sequence[torch.optim.Optimizer]) -> bool:
    """Whether one vectorised step reproduces every member's own optimizer step."""
    kinds = {_kind(o) for o in optimizers}
    if len(kinds) != 1 or None in kinds:
        return False
    kind = str(kinds.pop())
    groups = [g for o in optimizers for g in o.param_groups]
    for key in _SHARED[kind]:
        if len({bool(g.get(key, False)) for g in groups}) > 1:
            return False
    if any(g.get(key) for g in groups for key in _OTHER_PATHS):
        return False
    # Torch keeps no momentum buffer at momentum 0; mixing both would need two code paths.
    return kind != "sgd" or len({g["momentum"] == 0 for g in groups}) == 1


class FusedStep:
    """Vectorised SGD / Adam / AdamW over the stacked parameters of a population.

    Args:
        stack: The stacked members.
        optimizers: Each member's own torch optimizer, by member index; they hold the
            hyper-parameters (and, after each scheduler step, the LR) but never step.
    """

    def __init__(self, stack: StackedNets, optimizers: Sequence[torch.optim.Optimizer]) -> None:
        self.stack = stack
        self.optimizers = optimizers
        self.kind = str(_kind(optimizers[0]))
        self.steps = 0
        self.state: dict[str, dict[str, Tensor]] = {name: {} for name in stack.params}
        self._groups: dict[str, list[dict[str, Any]]] = {}
        # Member columns sent to the device, kept while a step still uses them.
        self._columns: dict[tuple[Any, ...], Tensor] = {}
        self._last_columns: dict[tuple[Any, ...], Tensor] = {}
        self.keep(range(len(stack.rows)))

    def keep(self, positions: Sequence[int]) -> None:
        """Keeps the state of these stack rows (after the stack dropped the others)."""
        index = list(positions)
        for state in self.state.values():
            for key, tensor in state.items():
                state[key] = tensor[index]
        # The param group of each member that holds each parameter, in stack row order.
        self._groups, self._columns, self._last_columns = {}, {}, {}
        for name in self.stack.params:
            groups = []
            for member in self.stack.rows:
                param = dict(self.stack.nets[member].named_parameters())[name]
                groups.append(next(g for g in self.optimizers[member].param_groups if _holds(g, param)))
            self._groups[name] = groups

    def _per_member(self, name: str, values: list[float], like: Tensor) -> float | Tensor:
        """One Python float when every member has the same value (torch's own scalar path), else a column."""
        if all(v == values[0] for v in values):
            return values[0]
        key = (*values, like.dtype, like.device)
        column = self._columns.get(key)
        if column is None:
            column = self._last_columns.get(key)
            if column is None:
                column = torch.tensor(values, dtype=like.dtype)
                if like.device.type == "cuda":
                    # Pinned and asynchronous: a plain copy would wait for the GPU every step.
                    column = column.pin_memory().to(like.device, non_blocking=True)
                else:
                    column = column.to(like.device)
            self._columns[key] = column
        return column.view(-1, *([1] * (like.dim() - 1)))

    @torch.no_grad()
    def step(self) -> None:
        """One optimizer step of every stacked member, from the stacked gradients."""
        self.steps += 1
        self._last_columns, self._columns = self._columns, {}
        for name, param in self.stack.params.items():
            if param.grad is None:
                continue
            groups = self._groups[name]
            grad = -param.grad if groups[0].get("maximize") else param.grad
            if self.kind == "sgd":
                self._sgd(name, param, grad, groups)
            else:
                self._adam(name, param, grad, groups)

    def _sgd(self, name: str, param: Tensor, grad: Tensor, groups: list[dict[str, Any]]) -> None:
        col = lambda key: self._per_member(name, [float(g[key]) for g in groups], param)  # noqa: E731
        decay = col("weight_decay")
        if not _is_zero(decay):
            grad = grad.add(param, alpha=decay) if isinstance(decay, float) else grad + param * decay
        if groups[0]["momentum"] != 0:
            momentum = col("momentum")
            state = self.state[name]
            if "momentum_buffer" not in state:
                state["momentum_buffer"] = grad.detach().clone()
            else:
                keep = self._per_member(name, [1 - float(g["dampening"]) for g in groups], param)
                buf = state["momentum_buffer"].mul_(momentum)
                buf.add_(grad, alpha=keep) if isinstance(keep, float) else buf.add_(grad * keep)
            buf = state["momentum_buffer"]
            if groups[0]["nesterov"]:
                grad = grad.add(buf, alpha=momentum) if isinstance(momentum, float) else grad + buf * momentum
            else:
                grad = buf
        lr = self._per_member(name, [-float(g["lr"]) for g in groups], param)
        param.add_(grad, alpha=lr) if isinstance(lr, float) else param.add_(grad * lr)

    def _adam(self, name: str, param: Tensor, grad: Tensor, groups: list[dict[str, Any]]) -> None:
        state = self.state[name]
        if not state:
            state["exp_avg"] = torch.zeros_like(param)
            state["exp_avg_sq"] = torch.zeros_like(param)
            if groups[0]["amsgrad"]:
                state["max_exp_avg_sq"] = torch.zeros_like(param)
        col = lambda values: self._per_member(name, values, param)  # noqa: E731
        lrs = [float(g["lr"]) for g in groups]
        beta1 = [float(g["betas"][0]) for g in groups]
        beta2 = [float(g["betas"][1]) for g in groups]
        decays = [float(g["weight_decay"]) for g in groups]
        if any(decays):
            if groups[0]["decoupled_weight_decay"]:
                param.mul_(col([1 - lr * wd for lr, wd in zip(lrs, decays, strict=True)]))
            else:
                decay = col(decays)
                grad = grad.add(param, alpha=decay) if isinstance(decay, float) else grad + param * decay
        exp_avg, exp_avg_sq = state["exp_avg"], state["exp_avg_sq"]
        exp_avg.lerp_(grad, col([1 - b for b in beta1]))
        exp_avg_sq.mul_(col(beta2))
        weight = col([1 - b for b in beta2])
        if isinstance(weight, float):
            exp_avg_sq.addcmul_(grad, grad, value=weight)
        else:
            exp_avg_sq.addcmul_(grad * weight, grad)
        step = self.steps
        step_size = col([-lr / (1 - b**step) for lr, b in zip(lrs, beta1, strict=True)])
        bias_correction2_sqrt = col([(1 - b**step) ** 0.5 for b in beta2])
        second = exp_avg_sq
        if groups[0]["amsgrad"]:
            torch.maximum(state["max_exp_avg_sq"], exp_avg_sq, out=state["max_exp_avg_sq"])
            second = state["max_exp_avg_sq"]
        denom = (second.sqrt() / bias_correction2_sqrt).add_(col([float(g["eps"]) for g in groups]))
        if isinstance(step_size, float):
            param.addcdiv_(exp_avg, denom, value=step_size)
        else:
            param.addcdiv_(exp_avg * step_size, denom)


def _holds(group: dict[str, Any], param: Tensor) -> bool:
    return any(p is param for p in group["params"])


def _is_zero(value: float | Tensor) -> bool:
    return value == 0 if isinstance(value, float) else not bool(value.any())
