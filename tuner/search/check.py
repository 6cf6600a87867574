"""Checks of a search space against the optimizer and schedule families it can draw.

Run before the study exists, so a space that would make a bad trial config stops the
command with one line naming the parameter, instead of stopping the study later:

* a parameter writing a key its family does not have (``optimizer.momentum`` on adam)
  must be conditioned on the families that have it (``when: {optimizer: [sgd]}``);
* every family choice, every categorical choice and both bounds of every numeric
  parameter are tried with each family they can be drawn with, the other parameters
  at a typical value, through the same validation a trial gets.

Probes work on plain dicts of the two sections, not on whole OmegaConf configs, so a
space of 25 parameters is checked in well under a second.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from omegaconf import DictConfig

from tuner.config.nodes import plain
from tuner.errors import UserError, as_user_error
from tuner.optimizer.factory import validate_optimizer
from tuner.schedule.functions import validate_schedule
from tuner.search.families import SECTIONS, family_section, split_path, switched
from tuner.search.space import ParamSpec, active, ordered


def check_space(cfg: DictConfig, specs: Sequence[ParamSpec]) -> None:
    """Checks the optimizer and schedule parameters of a parsed space.

    Raises:
        UserError: naming the ``search.params.<name>`` key at fault.
    """
    _check_keys(cfg, specs)
    base = {section: plain(cfg[section]) for section in SECTIONS}
    total = int(cfg.trainer.max_steps)
    steps = ordered(specs)
    # Families first, then other choices, then bounds: a bad choice is blamed on itself,
    # not on the first bound probed alongside it.
    for spec, section, _key, families in sorted(_section_specs(cfg, specs), key=_probe_order):
        family_spec = _family_spec(specs, section)
        for family in families:
            for value in _probes(spec):
                forced = {**_parents(spec, specs), spec.name: value}
                if family_spec is not None and family_spec is not spec:
                    forced[family_spec.name] = family
                error = _probe(base, steps, cfg, forced, total)
                if error is None:
                    continue
                field = "choices" if spec.kind == "categorical" else ("low" if value == spec.low else "high")
                searched = family_spec is not None and spec is not family_spec
                context = f" on trials with {section}.name={family}" if searched else ""
                raise UserError(
                    f"search.params.{spec.name}.{field}",
                    value,
                    f"makes {error.key}={error.value!r}{context}: {error.fix}",
                )


def _check_keys(cfg: DictConfig, specs: Sequence[ParamSpec]) -> None:
    for spec, section, key, families in _section_specs(cfg, specs):
        info = SECTIONS[section]
        if key in info.shared or key == "name" or "_target_" in cfg[section]:
            continue
        foreign = [f for f in families if f in info.own and key not in info.own[f]]
        if foreign:
            owners = [f for f in info.families if key in info.own[f]]
            raise UserError(
                f"search.params.{spec.name}.when",
                dict(spec.when) or None,
                f"{section}.{key} is not a key of {', '.join(foreign)}; condition it on the family, "
                f"e.g. when: {{{_family_param(specs, section)}: [{', '.join(owners)}]}}",
            )


def _family_spec(specs: Sequence[ParamSpec], section: str) -> ParamSpec | None:
    return next((s for s in specs if family_section(s.path) == section), None)


def _family_param(specs: Sequence[ParamSpec], section: str) -> str:
    spec = _family_spec(specs, section)
    return spec.name if spec is not None else f"{section}.name"


def _section_specs(
    cfg: DictConfig, specs: Sequence[ParamSpec]
) -> Iterator[tuple[ParamSpec, str, str, list[Any]]]:
    """Each parameter writing into a family section, with the families it can be drawn with."""
    for spec in specs:
        section, key = split_path(spec.path)
        if section not in SECTIONS:
            continue
        family_spec = _family_spec(specs, section)
        possible = list(family_spec.choices) if family_spec is not None else [cfg[section].get("name")]
        if spec is family_spec:
            yield spec, section, key, possible[:1]
            continue
        for parent, allowed in spec.when.items():
            if parent == f"{section}.name" or (family_spec is not None and parent == family_spec.name):
                possible = [f for f in possible if f in allowed]
        yield spec, section, key, possible


def _probe_order(item: tuple[ParamSpec, str, str, list[Any]]) -> int:
    spec, section = item[0], item[1]
    if family_section(spec.path) == section:
        return 0
    return 1 if spec.kind == "categorical" else 2


def _probes(spec: ParamSpec) -> list[Any]:
    if spec.kind == "categorical":
        return list(spec.choices)
    if spec.kind == "int":
        return [int(spec.low or 0), int(spec.high or 0)]
    return [float(spec.low or 0), float(spec.high or 0)]


def _typical(spec: ParamSpec) -> Any:
    """A value the sampler may well draw: the first choice, or the middle of the range."""
    if spec.kind == "categorical":
        return spec.choices[0]
    low, high = float(spec.low or 0), float(spec.high or 0)
    middle = math.sqrt(low * high) if spec.log else (low + high) / 2
    return round(middle) if spec.kind == "int" else middle


def _parents(spec: ParamSpec, specs: Sequence[ParamSpec]) -> dict[str, Any]:
    """Values of the searched parents that make ``spec`` active (the first allowed of each)."""
    by_name = {s.name: s for s in specs}
    values: dict[str, Any] = {}
    for parent, allowed in spec.when.items():
        if parent in by_name:
            values.update(_parents(by_name[parent], specs))
            values[parent] = allowed[0]
    return values


def _probe(
    base: Mapping[str, dict[str, Any]],
    specs: Sequence[ParamSpec],
    cfg: DictConfig,
    forced: Mapping[str, Any],
    total: int,
) -> UserError | None:
    """The error a trial with these values would raise, or None; other parameters typical.

    ``specs`` come parents first (:func:`tuner.search.space.ordered`).
    """
    values: dict[str, Any] = {}
    for spec in specs:
        if spec.name in forced:
            values[spec.name] = forced[spec.name]
        elif active(spec, values, cfg):
            values[spec.name] = _typical(spec)
    sections = copy.deepcopy(dict(base))
    for spec in specs:
        section = family_section(spec.path)
        if section is None or spec.name not in values:
            continue
        if values[spec.name] != base[section].get("name") or "_target_" in base[section]:
            try:
                sections[section] = switched(section, base[section], values[spec.name])
            except UserError as error:
                return error
    for spec in specs:
        section, _ = split_path(spec.path)
        if section in sections and spec.name in values:
            _write(sections[section], spec.path.split(".")[1:], values[spec.name])
    try:
        validate_optimizer(sections["optimizer"])
        validate_schedule(sections["schedule"], total)
    except ValueError as exc:
        found = as_user_error(exc)
        if found is None:
            raise
        return found
    return None


def _write(node: Any, keys: list[str], value: Any) -> None:
    for key in keys[:-1]:
        node = node[int(key)] if isinstance(node, list) else node.setdefault(key, {})
    if isinstance(node, list):
        node[int(keys[-1])] = value
    else:
        node[keys[-1]] = value
