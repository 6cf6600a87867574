"""K copies of one network trained side by side, their tensors stacked along a member axis.

The forward and backward passes run once for every member through ``torch.func``
(``stack_module_state``, ``functional_call``, ``vmap``). Each member also keeps its own
``nn.Module`` whose parameters and buffers are views of its row of the stacked tensors,
so the member's own torch optimizer, built by ``build_optimizer`` exactly as for a
single trial, updates the stack in place.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
from torch import Tensor, nn
from torch.func import functional_call, stack_module_state, vmap
from torch.nn import functional as F


class StackedNets:
    """The stacked tensors of the members still training, and the vectorised passes over them.

    Args:
        nets: One network per member, all of the same architecture (same parameter
            names and shapes). The first one serves as the skeleton ``functional_call``
            runs; its train/eval mode is the mode of every member.
    """

    def __init__(self, nets: Sequence[nn.Module]) -> None:
        self.skeleton = nets[0]
        self.nets = list(nets)
        self.rows: list[int] = []  # the member index of each stack row
        self.params: dict[str, Tensor] = {}
        self.buffers: dict[str, Tensor] = {}
        self._limit: tuple[tuple[float | None, ...], Tensor] | None = None
        # randomness="same": every member draws the dropout mask a single trial would
        # draw at the same step, since all trials of a study share the seed.
        self._logits = vmap(self._member_logits, in_dims=(0, 0, None), randomness="same")
        self.restack(range(len(self.nets)))

    def _member_logits(self, params: dict[str, Tensor], buffers: dict[str, Tensor], x: Tensor) -> Tensor:
        return functional_call(self.skeleton, (params, buffers), (x,))  # type: ignore[no-any-return]

    def restack(self, rows: Sequence[int]) -> None:
        """Stacks the members ``rows`` (indices into ``nets``), in that order.

        Members left out are no longer computed; each keeps a copy of its own weights,
        so it holds no reference to a stack it is not part of any more.
        """
        rows = list(rows)
        for index in set(self.rows) - set(rows):
            _own_storage(self.nets[index])
        members = [self.nets[i] for i in rows]
        params, buffers = stack_module_state(members)  # type: ignore[arg-type]
        for j, member in enumerate(members):
            with torch.no_grad():
                for name, param in member.named_parameters():
                    param.data = params[name].data[j]
                for name, buffer in member.named_buffers():
                    buffer.data = buffers[name].data[j]
        self.rows, self.params, self.buffers = rows, params, buffers

    def logits(self, x: Tensor) -> Tensor:
        """Every member's output for one batch, shape ``[members, batch, classes]``."""
        return self._logits(self.params, self.buffers, x)  # type: ignore[no-any-return]

    def losses(self, x: Tensor, y: Tensor) -> Tensor:
        """Each member's mean cross-entropy on one batch, shape ``[members]``."""
        # Outside vmap: cross-entropy has no batching rule and would run as a Python
        # decomposition on every step.
        logits = self.logits(x)
        members, batch, classes = logits.shape
        per_sample = F.cross_entropy(logits.reshape(-1, classes), y.repeat(members), reduction="none")
        return per_sample.view(members, batch).mean(dim=1)

    @torch.no_grad()
    def eval_sums(self, x: Tensor, y: Tensor) -> Tensor:
        """Each member's summed loss and count of correct predictions, shape ``[members, 2]``."""
        logits = self.logits(x)
        members, batch, classes = logits.shape
        per_sample = F.cross_entropy(logits.reshape(-1, classes), y.repeat(members), reduction="none")
        correct = (logits.argmax(dim=2) == y).sum(dim=1).to(per_sample.dtype)
        return torch.stack([per_sample.view(members, batch).sum(dim=1), correct], dim=1)

    def share_grads(self) -> None:
        """Points each member's parameter gradients at its row of the stacked gradients."""
        for j, index in enumerate(self.rows):
            for name, param in self.nets[index].named_parameters():
                grad = self.params[name].grad
                param.grad = None if grad is None else grad[j]

    def clear_member_grads(self) -> None:
        for index in self.rows:
            for param in self.nets[index].parameters():
                param.grad = None

    @torch.no_grad()
    def clip_grad_norm_(self, max_norms: Sequence[float | None]) -> None:
        """Scales each member's gradients to at most its own total norm, as a single trial does.

        Args:
            max_norms: Per stack row, the largest total gradient norm, or None for no clipping.
        """
        if all(m is None for m in max_norms):
            return
        grads = [p.grad for p in self.params.values() if p.grad is not None]
        if not grads:
            return
        # The same arithmetic as torch.nn.utils.clip_grad_norm_, one value per member.
        per_tensor = torch.stack([torch.linalg.vector_norm(g.reshape(len(g), -1), dim=1) for g in grads])
        total = torch.linalg.vector_norm(per_tensor, dim=0)
        key = tuple(max_norms)
        if self._limit is None or self._limit[0] != key:  # sent to the device once, not every step
            values = [m if m is not None else float("inf") for m in max_norms]
            self._limit = (key, torch.tensor(values, dtype=total.dtype).to(total.device))
        coef = torch.clamp(self._limit[1] / (total + 1e-6), max=1.0)
        for g in grads:
            g.mul_(coef.view(-1, *([1] * (g.dim() - 1))).to(g.dtype))


def _own_storage(net: nn.Module) -> None:
    with torch.no_grad():
        for tensor in [*net.parameters(), *net.buffers()]:
            tensor.data = tensor.data.clone()


def vectorise_problem(net: nn.Module, x: Tensor, y: Tensor) -> str | None:
    """Why this network cannot be trained as a stacked population, or None if it can.

    Runs a training forward/backward and an evaluation pass of two stacked copies on a
    few samples, on copies (buffers of ``net`` are not touched) and without moving the
    global random state.

    Args:
        net: The network as a single trial builds it.
        x: A few input samples.
        y: Their labels.
    """
    probe = copy.deepcopy(net)
    state = torch.get_rng_state()
    try:
        stack = StackedNets([probe, copy.deepcopy(probe)])
        probe.train()
        stack.losses(x, y).sum().backward()
        probe.eval()
        stack.eval_sums(x, y)
    except Exception as exc:
        text = str(exc).strip().splitlines()
        return f"{type(exc).__name__}: {text[0] if text else ''}".rstrip(": ")
    finally:
        torch.set_rng_state(state)
    return None
