"""Optimizers from a config mapping, with weight decay kept off biases and norm parameters.

The ``optimizer`` config names one of :data:`OPTIMIZERS` and gives its peak ``lr``.
Config composition and search spaces may leave keys of another optimizer in the
mapping (``momentum`` on adam); those are ignored, while keys that no optimizer
knows are rejected as typos. A ``_target_`` import path builds a user optimizer
instead, with every remaining key passed through.

The LR-free baselines (:data:`LR_FREE`) need optional packages, imported lazily.
For prodigy, ``lr`` stays 1.0 by convention: it multiplies the step size that
prodigy estimates itself, so it is a correction factor rather than a learning rate.
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import nn

OPTIMIZERS: tuple[str, ...] = (
    "sgd",
    "adam",
    "adamw",
    "rmsprop",
    "adagrad",
    "adadelta",
    "schedulefree_adamw",
    "prodigy",
)
LR_FREE: frozenset[str] = frozenset({"schedulefree_adamw", "prodigy"})

# Keys every optimizer accepts.
COMMON_KEYS = frozenset({"name", "lr", "weight_decay", "decay_norm_and_bias", "_target_"})
# Keys each optimizer accepts beyond the common ones, passed through as constructor kwargs.
OPTIMIZER_KEYS: dict[str, frozenset[str]] = {
    "sgd": frozenset({"momentum", "nesterov", "dampening"}),
    "adam": frozenset({"betas", "eps", "amsgrad"}),
    "adamw": frozenset({"betas", "eps", "amsgrad"}),
    "rmsprop": frozenset({"alpha", "momentum", "eps", "centered"}),
    "adagrad": frozenset({"lr_decay", "eps"}),
    "adadelta": frozenset({"rho", "eps"}),
    "schedulefree_adamw": frozenset({"betas", "eps", "warmup_steps"}),
    "prodigy": frozenset({"betas", "eps", "d_coef"}),
}
_KNOWN_KEYS = COMMON_KEYS.union(*OPTIMIZER_KEYS.values())
_LR_FREE_FIX = "pip install 'tuner[lr-free]'"

# Norm layers whose parameters are scales and shifts, not weights to shrink; the
# 1-D rule already catches most of them, not a LayerNorm over a 2-D shape.
_NORM_MODULES: tuple[type[nn.Module], ...] = (
    nn.BatchNorm1d,
    nn.BatchNorm2d,
    nn.BatchNorm3d,
    nn.SyncBatchNorm,
    nn.InstanceNorm1d,
    nn.InstanceNorm2d,
    nn.InstanceNorm3d,
    nn.LayerNorm,
    nn.GroupNorm,
    nn.RMSNorm,
)


class OptimizerError(ValueError):
    """A bad optimizer config, reported as the config key, the bad value and the fix.

    Args:
        key: Dotted config key, e.g. ``optimizer.momentum``.
        value: The value that was given.
        fix: What to do instead.
    """

    def __init__(self, key: str, value: object, fix: str) -> None:
        self.key, self.value, self.fix = key, value, fix
        super().__init__(f"{key}={value!r}: {fix}")


# --------------------------------------------------------------------------- validation


def _is_number(value: object) -> bool:
    # bool is an int subclass, but `lr: true` is a typo, never a number.
    return isinstance(value, int | float) and not isinstance(value, bool)


def _check_range(
    spec: Mapping[str, Any],
    key: str,
    *,
    low: float,
    high: float = math.inf,
    low_open: bool,
    high_open: bool = True,
) -> None:
    value = spec[key]
    ok = _is_number(value) and math.isfinite(value)
    if ok:
        above = value > low if low_open else value >= low
        below = value < high if high_open else value <= high
        ok = above and below
    if not ok:
        interval = f"{'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
        raise OptimizerError(f"optimizer.{key}", value, f"must be a number in {interval}")


def _check_bool(spec: Mapping[str, Any], key: str) -> None:
    if not isinstance(spec[key], bool):
        raise OptimizerError(f"optimizer.{key}", spec[key], "must be true or false")


def _check_betas(spec: Mapping[str, Any]) -> None:
    betas = spec["betas"]
    ok = (
        isinstance(betas, list | tuple)
        and len(betas) == 2
        and all(_is_number(b) and 0 <= b < 1 for b in betas)
    )
    if not ok:
        raise OptimizerError("optimizer.betas", betas, "must be a list of two numbers in [0, 1)")


def _check_sgd_nesterov(spec: Mapping[str, Any]) -> None:
    _check_bool(spec, "nesterov")
    # torch rejects nesterov without momentum or with dampening; say it in config terms.
    if spec["nesterov"] and (spec.get("momentum", 0) <= 0 or spec.get("dampening", 0) != 0):
        raise OptimizerError(
            "optimizer.nesterov",
            spec["nesterov"],
            "needs momentum > 0 and dampening 0; set nesterov: false or add momentum",
        )


def _check_warmup_steps(spec: Mapping[str, Any]) -> None:
    value = spec["warmup_steps"]
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise OptimizerError("optimizer.warmup_steps", value, "must be an integer >= 0")


_KEY_CHECKS: dict[str, Callable[[Mapping[str, Any]], None]] = {
    "momentum": lambda s: _check_range(s, "momentum", low=0, high=1, low_open=False),
    "dampening": lambda s: _check_range(s, "dampening", low=0, high=1, low_open=False, high_open=False),
    "nesterov": _check_sgd_nesterov,
    "betas": _check_betas,
    "eps": lambda s: _check_range(s, "eps", low=0, low_open=True),
    "amsgrad": lambda s: _check_bool(s, "amsgrad"),
    "alpha": lambda s: _check_range(s, "alpha", low=0, high=1, low_open=False),
    "centered": lambda s: _check_bool(s, "centered"),
    "lr_decay": lambda s: _check_range(s, "lr_decay", low=0, low_open=False),
    "rho": lambda s: _check_range(s, "rho", low=0, high=1, low_open=False),
    "d_coef": lambda s: _check_range(s, "d_coef", low=0, low_open=True),
    "warmup_steps": _check_warmup_steps,
}


def _import_target(target: object) -> Callable[..., torch.optim.Optimizer]:
    """The optimizer class named by a ``_target_`` import path such as ``torch.optim.SGD``."""
    fix = "must be the import path of an optimizer class, e.g. torch.optim.SGD"
    if not isinstance(target, str) or "." not in target:
        raise OptimizerError("optimizer._target_", target, fix)
    module_name, _, attribute = target.rpartition(".")
    try:
        optimizer_class = getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError) as exc:
        raise OptimizerError("optimizer._target_", target, f"{fix} ({exc})") from exc
    if not callable(optimizer_class):
        raise OptimizerError("optimizer._target_", target, fix)
    return optimizer_class  # type: ignore[no-any-return]


def validate_optimizer(spec: Mapping[str, Any]) -> None:
    """Checks an optimizer config before any training starts.

    Only the keys of the chosen optimizer are checked; with ``_target_`` the extra
    keys belong to the user's optimizer and are left to its constructor.

    Args:
        spec: The ``optimizer`` config as a plain mapping.

    Raises:
        OptimizerError: Naming the first bad key, its value and the fix.
    """
    if "lr" not in spec:
        raise OptimizerError("optimizer.lr", None, "set the peak learning rate, e.g. lr: 1.0e-3")
    _check_range(spec, "lr", low=0, low_open=True)
    if "weight_decay" in spec:
        _check_range(spec, "weight_decay", low=0, low_open=False)
    if "decay_norm_and_bias" in spec:
        _check_bool(spec, "decay_norm_and_bias")
    if "_target_" in spec:
        _import_target(spec["_target_"])
        return
    name = spec.get("name")
    if name not in OPTIMIZERS:
        raise OptimizerError(
            "optimizer.name",
            name,
            f"use one of {', '.join(OPTIMIZERS)}, or set _target_",
        )
    unknown = sorted(set(spec) - _KNOWN_KEYS)
    if unknown:
        raise OptimizerError(
            f"optimizer.{unknown[0]}",
            spec[unknown[0]],
            f"unknown optimizer key; known keys are {', '.join(sorted(_KNOWN_KEYS))}",
        )
    # Sorted, so momentum and dampening are checked before nesterov reads them.
    for key in sorted(OPTIMIZER_KEYS[str(name)] & set(spec)):
        _KEY_CHECKS[key](spec)


# --------------------------------------------------------------------------- building


def param_groups(
    model: nn.Module, *, weight_decay: float, decay_norm_and_bias: bool = False
) -> list[dict[str, Any]]:
    """Splits trainable parameters into a weight-decayed group and a decay-free one.

    Decay shrinks weights towards zero, which regularises matrices and kernels but
    only distorts biases and the scales/shifts of norm layers, so those are exempt:
    1-D parameters and any parameter of a norm layer. Frozen parameters are left
    out; shared ones appear once. Empty groups are dropped.

    Args:
        model: The model whose parameters are optimised.
        weight_decay: Decay of the weight group.
        decay_norm_and_bias: Decay every parameter alike (one group).

    Returns:
        Parameter groups for a torch optimizer, each with its ``weight_decay``.
    """
    norm_params = {
        id(param)
        for module in model.modules()
        if isinstance(module, _NORM_MODULES)
        for param in module.parameters(recurse=False)
    }
    decay: list[nn.Parameter] = []
    no_decay: list[nn.Parameter] = []
    for param in model.parameters():  # parameters() already skips shared duplicates
        if not param.requires_grad:
            continue
        exempt = param.dim() < 2 or id(param) in norm_params
        (no_decay if exempt and not decay_norm_and_bias else decay).append(param)
    groups = [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    return [group for group in groups if group["params"]]


def _lr_free_class(name: str) -> Callable[..., torch.optim.Optimizer]:
    module_name, class_name = {
        "schedulefree_adamw": ("schedulefree", "AdamWScheduleFree"),
        "prodigy": ("prodigyopt", "Prodigy"),
    }[name]
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise OptimizerError("optimizer.name", name, _LR_FREE_FIX) from exc
    return getattr(module, class_name)  # type: ignore[no-any-return]


_TORCH_OPTIMIZERS: dict[str, Callable[..., torch.optim.Optimizer]] = {
    "sgd": torch.optim.SGD,
    "adam": torch.optim.Adam,
    "adamw": torch.optim.AdamW,
    "rmsprop": torch.optim.RMSprop,
    "adagrad": torch.optim.Adagrad,
    "adadelta": torch.optim.Adadelta,
}


def _constructor_kwargs(spec: Mapping[str, Any], keys: frozenset[str] | None) -> dict[str, Any]:
    """Constructor kwargs from the spec: ``keys`` only, or every non-common key if None."""
    chosen = set(spec) - COMMON_KEYS if keys is None else keys & set(spec)
    kwargs = {key: spec[key] for key in chosen}
    if "betas" in kwargs:
        # Configs give a list; torch and the LR-free packages document a tuple.
        kwargs["betas"] = tuple(kwargs["betas"])
    return kwargs


def build_optimizer(model: nn.Module, spec: Mapping[str, Any]) -> torch.optim.Optimizer:
    """The optimizer a config describes, over the model's decay/no-decay param groups.

    Schedule-free optimizers come back in train mode, ready to step; see
    :func:`set_train_mode` for evaluation.

    Args:
        model: The model to optimise.
        spec: The ``optimizer`` config as a plain mapping.

    Raises:
        OptimizerError: If the config is invalid or an LR-free package is missing.
    """
    validate_optimizer(spec)
    groups = param_groups(
        model,
        weight_decay=float(spec.get("weight_decay", 0.0)),
        decay_norm_and_bias=bool(spec.get("decay_norm_and_bias", False)),
    )
    if "_target_" in spec:
        optimizer_class = _import_target(spec["_target_"])
        kwargs = _constructor_kwargs(spec, None)
    else:
        name = str(spec["name"])
        optimizer_class = _TORCH_OPTIMIZERS.get(name) or _lr_free_class(name)
        kwargs = _constructor_kwargs(spec, OPTIMIZER_KEYS[name])
    optimizer = optimizer_class(groups, lr=float(spec["lr"]), **kwargs)
    set_train_mode(optimizer, training=True)
    return optimizer


def set_train_mode(optimizer: torch.optim.Optimizer, training: bool) -> None:
    """Switches a schedule-free optimizer between training and evaluation weights.

    Schedule-free optimizers train on one sequence of weights and evaluate on an
    average of it; they must be told which is wanted around training, validation
    and checkpointing. Optimizers without ``train``/``eval`` are left alone.

    Args:
        optimizer: Any torch optimizer.
        training: True before training steps, False before evaluation or saving.
    """
    switch = getattr(optimizer, "train" if training else "eval", None)
    if callable(switch):
        switch()
