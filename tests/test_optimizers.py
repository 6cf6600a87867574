"""Tests of tuner.optimizer.factory: every config trains, decay split, schedule-free modes, errors."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from omegaconf import OmegaConf
from torch import nn

from tuner.optimizer.factory import (
    LR_FREE,
    OPTIMIZERS,
    OptimizerError,
    build_optimizer,
    param_groups,
    set_train_mode,
    validate_optimizer,
)

torch.set_num_threads(1)

OPTIMIZER_DIR = Path(__file__).resolve().parents[1] / "conf" / "optimizer"


def _load(name: str) -> dict[str, Any]:
    spec = OmegaConf.to_container(OmegaConf.load(OPTIMIZER_DIR / f"{name}.yaml"))
    assert isinstance(spec, dict)
    return {str(key): value for key, value in spec.items()}


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 16), nn.LayerNorm(16), nn.Tanh(), nn.Linear(16, 1))


def _regression() -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    inputs = torch.randn(64, 4, generator=generator)
    return inputs, inputs @ torch.tensor([[1.0], [-2.0], [0.5], [3.0]])


def _loss(model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return nn.functional.mse_loss(model(inputs), targets)


def _train(model: nn.Module, optimizer: torch.optim.Optimizer, steps: int) -> None:
    inputs, targets = _regression()
    for _ in range(steps):
        optimizer.zero_grad()
        _loss(model, inputs, targets).backward()
        optimizer.step()


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_optimizer_from_config_reduces_loss(name: str) -> None:
    model = _model()
    inputs, targets = _regression()
    optimizer = build_optimizer(model, _load(name))
    initial = _loss(model, inputs, targets).item()
    _train(model, optimizer, steps=1)
    after_one = _loss(model, inputs, targets).item()
    _train(model, optimizer, steps=20)
    set_train_mode(optimizer, False)
    after_many = _loss(model, inputs, targets).item()
    assert after_one < initial
    assert after_many < initial


def test_every_optimizer_has_a_config_and_lr_free_are_optimizers() -> None:
    assert {path.stem for path in OPTIMIZER_DIR.glob("*.yaml")} == set(OPTIMIZERS)
    assert set(OPTIMIZERS) >= LR_FREE == {"schedulefree_adamw", "prodigy"}
    for name in OPTIMIZERS:
        spec = _load(name)
        assert spec["name"] == name
        validate_optimizer(spec)


def test_config_values_reach_the_optimizer() -> None:
    sgd = build_optimizer(_model(), _load("sgd"))
    assert isinstance(sgd, torch.optim.SGD)
    assert sgd.param_groups[0]["lr"] == 0.05
    assert sgd.param_groups[0]["momentum"] == 0.9
    adam = build_optimizer(_model(), {**_load("adam"), "betas": [0.8, 0.99]})
    assert adam.param_groups[0]["betas"] == (0.8, 0.99)
    prodigy = build_optimizer(_model(), {**_load("prodigy"), "lr": 0.5})
    assert prodigy.param_groups[0]["lr"] == 0.5


# --------------------------------------------------------------------------- decay split


class _Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv1d(2, 3, kernel_size=3)
        self.batch_norm = nn.BatchNorm1d(3)
        self.layer_norm = nn.LayerNorm((3, 4))  # 2-D scale: only the module type exempts it
        self.head = nn.Linear(12, 2)
        self.frozen = nn.Linear(2, 2)
        self.frozen.requires_grad_(False)
        self.tied = self.head  # shared module: its parameters must appear once


def _ids(params: list[nn.Parameter]) -> set[int]:
    return {id(param) for param in params}


def test_weight_decay_only_on_weights() -> None:
    net = _Net()
    decay, no_decay = param_groups(net, weight_decay=0.1)
    assert decay["weight_decay"] == 0.1
    assert no_decay["weight_decay"] == 0.0
    assert _ids(decay["params"]) == {id(net.conv.weight), id(net.head.weight)}
    assert _ids(no_decay["params"]) == {
        id(net.conv.bias),
        id(net.batch_norm.weight),
        id(net.batch_norm.bias),
        id(net.layer_norm.weight),
        id(net.layer_norm.bias),
        id(net.head.bias),
    }
    assert len(decay["params"]) + len(no_decay["params"]) == 8


def test_decay_norm_and_bias_puts_everything_in_one_group() -> None:
    net = _Net()
    (group,) = param_groups(net, weight_decay=0.1, decay_norm_and_bias=True)
    assert group["weight_decay"] == 0.1
    assert len(group["params"]) == 8


def test_built_optimizer_uses_the_split() -> None:
    net = _Net()
    optimizer = build_optimizer(net, {"name": "adamw", "lr": 1e-3, "weight_decay": 0.05})
    assert [group["weight_decay"] for group in optimizer.param_groups] == [0.05, 0.0]
    assert id(net.head.bias) in _ids(optimizer.param_groups[1]["params"])


# --------------------------------------------------------------------------- schedule-free


def _flat(model: nn.Module) -> torch.Tensor:
    return torch.cat([param.detach().flatten() for param in model.parameters()]).clone()


def test_schedulefree_eval_weights_differ_and_train_restores() -> None:
    model = _model()
    optimizer = build_optimizer(model, _load("schedulefree_adamw"))
    _train(model, optimizer, steps=10)  # built in train mode: stepping needs no switch
    train_weights = _flat(model)
    set_train_mode(optimizer, False)
    eval_weights = _flat(model)
    assert not torch.allclose(train_weights, eval_weights)
    set_train_mode(optimizer, True)
    torch.testing.assert_close(_flat(model), train_weights)
    _train(model, optimizer, steps=1)


def test_set_train_mode_is_a_no_op_for_other_optimizers() -> None:
    model = _model()
    optimizer = build_optimizer(model, _load("sgd"))
    _train(model, optimizer, steps=2)
    weights = _flat(model)
    set_train_mode(optimizer, False)
    set_train_mode(optimizer, True)
    torch.testing.assert_close(_flat(model), weights)


# --------------------------------------------------------------------------- _target_


def test_target_builds_a_user_optimizer_with_remaining_kwargs() -> None:
    net = _Net()
    spec = {"_target_": "torch.optim.SGD", "lr": 0.1, "momentum": 0.5, "weight_decay": 0.01}
    optimizer = build_optimizer(net, spec)
    assert type(optimizer) is torch.optim.SGD
    assert [group["weight_decay"] for group in optimizer.param_groups] == [0.01, 0.0]
    assert optimizer.param_groups[0]["momentum"] == 0.5
    assert optimizer.param_groups[0]["lr"] == 0.1


# --------------------------------------------------------------------------- errors

ERROR_CASES: list[tuple[dict[str, Any], str]] = [
    ({"name": "adamm", "lr": 1e-3}, "optimizer.name"),
    ({"lr": 1e-3}, "optimizer.name"),
    ({"name": "adam"}, "optimizer.lr"),
    ({"name": "adam", "lr": 0.0}, "optimizer.lr"),
    ({"name": "adam", "lr": -1.0}, "optimizer.lr"),
    ({"name": "adam", "lr": "1e-3"}, "optimizer.lr"),
    ({"name": "adam", "lr": 1e-3, "weight_decay": -0.1}, "optimizer.weight_decay"),
    ({"name": "adam", "lr": 1e-3, "decay_norm_and_bias": "no"}, "optimizer.decay_norm_and_bias"),
    ({"name": "adam", "lr": 1e-3, "momentun": 0.9}, "optimizer.momentun"),
    ({"name": "sgd", "lr": 0.1, "momentum": 1.0}, "optimizer.momentum"),
    ({"name": "sgd", "lr": 0.1, "momentum": -0.1}, "optimizer.momentum"),
    ({"name": "sgd", "lr": 0.1, "nesterov": True}, "optimizer.nesterov"),
    ({"name": "sgd", "lr": 0.1, "momentum": 0.0, "nesterov": True}, "optimizer.nesterov"),
    (
        {"name": "sgd", "lr": 0.1, "momentum": 0.9, "dampening": 0.1, "nesterov": True},
        "optimizer.nesterov",
    ),
    ({"name": "sgd", "lr": 0.1, "dampening": 1.5}, "optimizer.dampening"),
    ({"name": "adam", "lr": 1e-3, "betas": [0.9]}, "optimizer.betas"),
    ({"name": "adamw", "lr": 1e-3, "betas": [0.9, 1.0]}, "optimizer.betas"),
    ({"name": "adam", "lr": 1e-3, "eps": 0.0}, "optimizer.eps"),
    ({"name": "adam", "lr": 1e-3, "amsgrad": "yes"}, "optimizer.amsgrad"),
    ({"name": "rmsprop", "lr": 1e-3, "alpha": 1.0}, "optimizer.alpha"),
    ({"name": "rmsprop", "lr": 1e-3, "centered": 1}, "optimizer.centered"),
    ({"name": "adagrad", "lr": 1e-2, "lr_decay": -1.0}, "optimizer.lr_decay"),
    ({"name": "adadelta", "lr": 1.0, "rho": 1.0}, "optimizer.rho"),
    ({"name": "schedulefree_adamw", "lr": 1e-3, "warmup_steps": -1}, "optimizer.warmup_steps"),
    ({"name": "prodigy", "lr": 1.0, "d_coef": 0.0}, "optimizer.d_coef"),
    ({"_target_": "torch.optim.Nope", "lr": 0.1}, "optimizer._target_"),
    ({"_target_": "no_such_module.Opt", "lr": 0.1}, "optimizer._target_"),
    ({"_target_": "SGD", "lr": 0.1}, "optimizer._target_"),
]


@pytest.mark.parametrize(("spec", "key"), ERROR_CASES, ids=lambda v: str(v))
def test_optimizer_errors_name_the_key(spec: dict[str, Any], key: str) -> None:
    with pytest.raises(OptimizerError) as info:
        build_optimizer(_model(), spec)
    assert info.value.key == key
    assert str(info.value).startswith(f"{key}={info.value.value!r}: ")


def test_optimizer_error_shape() -> None:
    error = OptimizerError("optimizer.lr", 0.0, "must be > 0")
    assert isinstance(error, ValueError)
    assert (error.key, error.value, error.fix) == ("optimizer.lr", 0.0, "must be > 0")
    assert str(error) == "optimizer.lr=0.0: must be > 0"


def test_keys_of_other_optimizers_are_ignored() -> None:
    spec = {**_load("adam"), "momentum": 5.0, "nesterov": True, "rho": 2.0}
    optimizer = build_optimizer(_model(), spec)
    assert isinstance(optimizer, torch.optim.Adam)
    assert "rho" not in optimizer.param_groups[0]


@pytest.mark.parametrize(
    ("name", "module"), [("schedulefree_adamw", "schedulefree"), ("prodigy", "prodigyopt")]
)
def test_missing_lr_free_package_says_how_to_install(
    name: str, module: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, module, None)  # makes the import raise ImportError
    with pytest.raises(OptimizerError) as info:
        build_optimizer(_model(), _load(name))
    assert info.value.key == "optimizer.name"
    assert "pip install 'tuner[lr-free]'" in info.value.fix
