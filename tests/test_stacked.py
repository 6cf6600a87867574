"""The population engine's parts: stacked members, the vectorised optimizer step, shrinking."""

from __future__ import annotations

import copy
from typing import Any

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from tuner.optimizer.factory import build_optimizer
from tuner.training.fused import FusedStep, fusable
from tuner.training.population_module import PopulationModule
from tuner.training.stacked import StackedNets, vectorise_problem

torch.set_num_threads(1)


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 12), nn.ReLU(), nn.LayerNorm(12), nn.Linear(12, 3))


def _batch(seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(16, 6, generator=g), torch.randint(0, 3, (16,), generator=g)


# Members differ in every hyper-parameter the vectorised step reads per member.
FUSED_CASES: list[list[dict[str, Any]]] = [
    [{"name": "adam", "lr": lr} for lr in (1e-3, 3e-3, 1e-2)],
    [
        {"name": "adam", "lr": 1e-3, "betas": [0.9, 0.999], "weight_decay": 0.0},
        {"name": "adam", "lr": 2e-3, "betas": [0.8, 0.99], "weight_decay": 0.1, "eps": 1e-6},
    ],
    [{"name": "adam", "lr": lr, "amsgrad": True} for lr in (1e-3, 1e-2)],
    [
        {"name": "adamw", "lr": 1e-3, "weight_decay": 0.01},
        {"name": "adamw", "lr": 5e-3, "weight_decay": 0.3, "decay_norm_and_bias": True},
    ],
    [{"name": "sgd", "lr": lr, "momentum": 0.0} for lr in (0.01, 0.1)],
    [
        {"name": "sgd", "lr": 0.05, "momentum": 0.9, "weight_decay": 1e-3},
        {"name": "sgd", "lr": 0.02, "momentum": 0.5, "dampening": 0.1},
    ],
    [{"name": "sgd", "lr": lr, "momentum": 0.9, "nesterov": True} for lr in (0.01, 0.05)],
]


@pytest.mark.parametrize("specs", FUSED_CASES)
def test_vectorised_step_equals_each_members_own_optimizer(specs):
    alone = [_net() for _ in specs]
    alone_opts = [build_optimizer(net, spec) for net, spec in zip(alone, specs, strict=True)]
    nets = [_net() for _ in specs]
    stack = StackedNets(nets)
    opts = [build_optimizer(net, spec) for net, spec in zip(nets, specs, strict=True)]
    assert fusable(opts)
    fused = FusedStep(stack, opts)
    for step in range(6):
        x, y = _batch(step)
        for net, opt in zip(alone, alone_opts, strict=True):
            opt.zero_grad()
            F.cross_entropy(net(x), y).backward()
            opt.step()
        for param in stack.params.values():
            param.grad = None
        stack.losses(x, y).sum().backward()
        fused.step()
        for group in (g for opt in opts for g in opt.param_groups):
            group["lr"] *= 0.9  # a schedule moving every member's LR
        for opt in alone_opts:
            for group in opt.param_groups:
                group["lr"] *= 0.9
    for j, net in enumerate(alone):
        for name, param in net.named_parameters():
            torch.testing.assert_close(stack.params[name][j], param, rtol=1e-5, atol=1e-6)


def test_members_of_other_kinds_or_flags_step_their_own_optimizers():
    nets = [_net(), _net()]
    assert not fusable(
        [
            build_optimizer(nets[0], {"name": "adam", "lr": 1e-3}),
            build_optimizer(nets[1], {"name": "sgd", "lr": 0.1}),
        ]
    )
    assert not fusable([build_optimizer(net, {"name": "rmsprop", "lr": 1e-3}) for net in nets])
    assert not fusable(
        [
            build_optimizer(nets[0], {"name": "adam", "lr": 1e-3, "amsgrad": True}),
            build_optimizer(nets[1], {"name": "adam", "lr": 1e-3}),
        ]
    )
    # Momentum 0 keeps no buffer in torch: not mixed with momentum > 0 in one step.
    assert not fusable(
        [
            build_optimizer(nets[0], {"name": "sgd", "lr": 0.1, "momentum": 0.0}),
            build_optimizer(nets[1], {"name": "sgd", "lr": 0.1, "momentum": 0.9}),
        ]
    )


def test_members_are_views_of_the_stack_and_each_gets_its_own_rows():
    nets = [_net() for _ in range(3)]
    with torch.no_grad():
        for k, net in enumerate(nets):
            net[0].weight.add_(k)  # tell the members apart
    reference = [copy.deepcopy(net) for net in nets]
    stack = StackedNets(nets)
    x, y = _batch(0)
    for j, net in enumerate(reference):
        torch.testing.assert_close(stack.logits(x)[j], net(x))
        torch.testing.assert_close(stack.losses(x, y)[j], F.cross_entropy(net(x), y))
    with torch.no_grad():
        stack.params["0.weight"][1].mul_(0)
    assert bool((nets[1][0].weight == 0).all())  # the member's own module sees the change
    assert not bool((nets[0][0].weight == 0).all())


def test_dropping_members_shrinks_the_stack_and_keeps_the_others_state():
    nets = [_net() for _ in range(3)]
    module = PopulationModule(
        nets,
        optimizers=[{"name": "adam", "lr": lr} for lr in (1e-3, 2e-3, 3e-3)],
        schedules=[{"name": "constant"}] * 3,
        total_steps=10,
    )
    module.configure_optimizers()
    assert module.stack is not None and module.fused is not None
    x, y = _batch(1)
    module.stack.losses(x, y).sum().backward()
    module.fused.step()
    exp_avg = {name: s["exp_avg"].clone() for name, s in module.fused.state.items()}
    module.drop([1])
    assert module.alive == [0, 2]
    assert module.stack.rows == [0, 2]
    for name, param in module.stack.params.items():
        assert param.shape[0] == 2
        torch.testing.assert_close(module.fused.state[name]["exp_avg"], exp_avg[name][[0, 2]])
        # Survivors are views of the new stack; the dropped member owns its weights.
        assert dict(nets[2].named_parameters())[name].data_ptr() == param[1].data_ptr()
    kept = nets[1][0].weight.clone()
    with torch.no_grad():
        module.stack.params["0.weight"].zero_()
    torch.testing.assert_close(nets[1][0].weight, kept)


class _Counter(nn.Module):
    """Counts its calls in a plain tensor attribute: an in-place update vmap cannot batch."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Linear(6, 3)
        self.seen = torch.zeros(())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.body(x)
        self.seen.add_(out.mean())
        return out


class _Branchy(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Linear(6, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.body(x)
        return out if out.sum() > 0 else -out  # data-dependent control flow


def test_the_probe_names_what_vmap_refuses_and_leaves_the_model_alone():
    x, y = _batch(2)
    assert vectorise_problem(_net(), x, y) is None
    with_norm = nn.Sequential(nn.Linear(6, 8), nn.BatchNorm1d(8), nn.Linear(8, 3))
    before = with_norm[1].running_mean.clone()
    assert vectorise_problem(with_norm, x, y) is None  # per-member running stats are fine
    torch.testing.assert_close(with_norm[1].running_mean, before)
    refused = [_Counter(), _Branchy()]
    state = torch.get_rng_state()
    for net in refused:
        problem = vectorise_problem(net, x, y)
        assert problem is not None and problem.startswith("RuntimeError: "), problem
    assert torch.equal(torch.get_rng_state(), state)
