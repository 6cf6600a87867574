"""Checking the ``finder`` group and the ``search.from_finder`` switch before anything runs."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from omegaconf import DictConfig, ListConfig

from tuner.errors import UserError
from tuner.search.space import ParamSpec

RAMPS = ("exponential", "linear")


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def check_finder(cfg: DictConfig, specs: Sequence[ParamSpec]) -> None:
    """Validates ``finder.*`` (when it will run) and ``search.from_finder`` with its keys.

    Raises:
        UserError: naming the first bad key, its value and the fix.
    """
    from_finder = cfg.search.get("from_finder", False)
    if not isinstance(from_finder, bool):
        raise UserError("search.from_finder", from_finder, "give true or false")
    if cfg.mode != "find" and not from_finder:
        return
    f = cfg.finder
    if not _number(f.start_lr) or f.start_lr <= 0:
        raise UserError("finder.start_lr", f.start_lr, "give a number > 0, e.g. 1e-6")
    if not _number(f.end_lr) or f.end_lr <= f.start_lr:
        raise UserError("finder.end_lr", f.end_lr, f"give a number above finder.start_lr={f.start_lr:g}")
    if not isinstance(f.num_steps, int) or isinstance(f.num_steps, bool) or f.num_steps < 20:
        raise UserError("finder.num_steps", f.num_steps, "give a whole number >= 20 (300 is typical)")
    if f.mode not in RAMPS:
        raise UserError("finder.mode", f.mode, f"use one of {', '.join(RAMPS)}")
    if not _number(f.smoothing) or not 0 <= f.smoothing < 1:
        raise UserError("finder.smoothing", f.smoothing, "give a number in [0, 1), e.g. 0.98")
    if not _number(f.diverge_factor) or f.diverge_factor <= 1:
        raise UserError("finder.diverge_factor", f.diverge_factor, "give a number > 1, e.g. 4")
    if not _number(f.window) or f.window <= 0:
        raise UserError("finder.window", f.window, "give a width in decades > 0, e.g. 0.2")
    if not _number(f.scale) or f.scale <= 0:
        raise UserError("finder.scale", f.scale, "give a number > 0 (1: the rules' median as it is)")
    seeds = f.seeds
    if (
        not isinstance(seeds, (ListConfig, list))
        or not seeds
        or not all(isinstance(s, int) and not isinstance(s, bool) for s in seeds)
    ):
        raise UserError("finder.seeds", seeds, "give a non-empty list of whole numbers, e.g. [0,1,2]")
    if from_finder:
        _check_narrowing(cfg, specs)


def _check_narrowing(cfg: DictConfig, specs: Sequence[ParamSpec]) -> None:
    factor = cfg.search.get("finder_factor")
    if not _number(factor) or factor <= 1:
        raise UserError("search.finder_factor", factor, "give a number > 1: the bounds become [lr/f, lr*f]")
    enqueue = cfg.search.get("finder_enqueue", 3)
    if not isinstance(enqueue, int) or isinstance(enqueue, bool) or enqueue < 0:
        raise UserError(
            "search.finder_enqueue", enqueue, "give a whole number of first trials >= 0 (0: none)"
        )
    name = cfg.search.get("finder_param", "lr")
    spec = next((s for s in specs if s.name == name), None)
    if spec is None:
        raise UserError(
            "search.finder_param", name, "name the search parameter that sets optimizer.lr (e.g. lr)"
        )
    switching = next((s for s in specs if s.path == "optimizer.name"), None)
    if switching is not None:
        raise UserError(
            "search.from_finder",
            True,
            f"the range test runs the configured optimizer, but search.params.{switching.name} switches "
            "optimizers; narrow a space with a fixed optimizer (e.g. search=lr)",
        )
    if spec.kind != "float" or spec.path != "optimizer.lr":
        raise UserError(
            "search.finder_param",
            name,
            f"the range test varies optimizer.lr, but search.params.{name} is a {spec.kind} on {spec.path}",
        )
