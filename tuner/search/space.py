"""The search space: declared in YAML, turned into ``trial.suggest_*`` calls.

A space is a mapping of parameter name to its spec::

    lr:       {path: optimizer.lr, type: float, low: 1.0e-4, high: 1.0}   # log scale: it is an LR
    schedule: {path: schedule.name, type: categorical, choices: [cosine, step]}
    gamma:    {path: schedule.gamma, type: float, low: 0.1, high: 0.9, when: {schedule: step}}

``when`` makes a parameter conditional: it is sampled only when every named parent
(another parameter, or a config key such as ``optimizer.name``) has one of the listed
values, so a family's own parameters never show up on a trial of another family.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, TypeGuard

import optuna
from omegaconf import DictConfig, OmegaConf

from tuner.errors import UserError
from tuner.search.families import family_section, known_path, switch_families

_KINDS = ("float", "int", "categorical")


@dataclass(frozen=True)
class ParamSpec:
    """One searched parameter.

    Attributes:
        name: Name of the Optuna parameter (what the MLflow run shows).
        path: Dotted config key the sampled value is written to.
        kind: ``float``, ``int`` or ``categorical``.
        low: Lower bound (numeric kinds).
        high: Upper bound (numeric kinds).
        log: Sample on a log scale.
        step: Discretisation step, or None.
        choices: Values of a categorical parameter.
        when: Parent name or config key -> the values that activate this parameter.
    """

    name: str
    path: str
    kind: str
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None
    choices: tuple[Any, ...] = ()
    when: Mapping[str, tuple[Any, ...]] = field(default_factory=dict)


def _is_lr(name: str, path: str) -> bool:
    return name == "lr" or path.endswith(".lr") or path.endswith("_lr")


def parse_space(params: Mapping[str, Any], cfg: DictConfig) -> list[ParamSpec]:
    """Validates a ``search.params`` mapping against the config it will modify.

    Raises:
        UserError: naming the ``search.params.<name>.<field>`` key at fault.
    """
    specs: list[ParamSpec] = []
    fix = "give {name: {path: ..., low: ..., high: ...}}, or pick a preset: search=lr"
    for name, raw in _mapping("search.params", params, fix).items():
        if raw is None:  # an override may switch a preset's parameter off with `~`/null
            continue
        key = f"search.params.{name}"
        raw = _mapping(key, raw, "give the parameter's fields, e.g. {path: optimizer.lr, low: 1e-4, high: 1}")
        path = str(raw.get("path") or name)
        kind = str(raw.get("type", "float"))
        if kind not in _KINDS:
            raise UserError(f"{key}.type", kind, f"use one of {', '.join(_KINDS)}")
        # A key of another optimizer or schedule family may be absent from the base config.
        if OmegaConf.select(cfg, path, default=_MISSING) is _MISSING and not known_path(path):
            raise UserError(f"{key}.path", path, "name an existing config key, e.g. optimizer.lr")
        when_fix = "give {config key: [values]}, e.g. {optimizer.name: [sgd]}"
        when = {str(k): _as_tuple(v) for k, v in _mapping(f"{key}.when", raw.get("when"), when_fix).items()}
        if kind == "categorical":
            choices = raw.get("choices")
            if not choices or not isinstance(choices, Sequence) or isinstance(choices, str):
                raise UserError(f"{key}.choices", choices, "list at least one choice, e.g. [sgd, adam]")
            choices = tuple(choices)
            specs.append(ParamSpec(name, path, kind, choices=choices, when=when))
            continue
        specs.append(_numeric_spec(name, path, kind, raw, key, when))
    specs = _parents_by_name(specs)
    _check_parents(specs, cfg)
    return specs


_MISSING = object()


def _mapping(key: str, value: Any, fix: str) -> dict[str, Any]:
    """A config node that must be a mapping (or absent), as a dict."""
    if value is None:
        return {}
    if OmegaConf.is_dict(value):
        value = OmegaConf.to_container(value, resolve=True)
    if not isinstance(value, Mapping):
        raise UserError(key, value, fix)
    return dict(value)


def _as_tuple(value: Any) -> tuple[Any, ...]:
    if isinstance(value, str) or not isinstance(value, Sequence):
        return (value,)
    return tuple(value)


def _numeric_spec(
    name: str, path: str, kind: str, raw: dict[str, Any], key: str, when: dict[str, tuple[Any, ...]]
) -> ParamSpec:
    for bound in ("low", "high"):
        value = raw.get(bound)
        if not _number(value) or not math.isfinite(value):
            raise UserError(f"{key}.{bound}", value, "give a finite number")
    low, high = float(raw["low"]), float(raw["high"])
    if low >= high:
        raise UserError(f"{key}.low", raw["low"], f"must be below {key}.high={raw['high']!r}")
    log = raw.get("log")
    log = _is_lr(name, path) if log is None else bool(log)
    if log and low <= 0:
        raise UserError(f"{key}.low", raw["low"], f"a log-scale bound must be > 0 (or set {key}.log=false)")
    step = raw.get("step")
    if step is not None and (log or not _number(step) or step <= 0):
        raise UserError(f"{key}.step", step, "use a positive step, and only on a linear scale")
    if kind == "int" and not (low.is_integer() and high.is_integer()):
        raise UserError(f"{key}.low", raw["low"], "an int parameter needs whole-number bounds")
    return ParamSpec(name, path, kind, low, high, log, step, when=when)


def _number(value: Any) -> TypeGuard[int | float]:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _parents_by_name(specs: list[ParamSpec]) -> list[ParamSpec]:
    """Specs whose ``when`` names a config key another parameter samples, naming that parameter.

    ``when: {optimizer.name: sgd}`` must follow the drawn optimizer, not the configured one.
    """
    by_path = {s.path: s.name for s in specs}
    return [
        replace(spec, when={by_path.get(parent, parent): allowed for parent, allowed in spec.when.items()})
        for spec in specs
    ]


def _check_parents(specs: list[ParamSpec], cfg: DictConfig) -> None:
    names = {s.name for s in specs}
    for spec in specs:
        for parent in spec.when:
            known = parent in names or OmegaConf.select(cfg, parent, default=_MISSING) is not _MISSING
            if not known:
                raise UserError(
                    f"search.params.{spec.name}.when",
                    parent,
                    "condition on a searched parameter or an existing config key",
                )


def active(spec: ParamSpec, values: Mapping[str, Any], cfg: DictConfig) -> bool:
    for parent, allowed in spec.when.items():
        current = values[parent] if parent in values else OmegaConf.select(cfg, parent)
        if current not in allowed:
            return False
    return True


def suggest(trial: optuna.Trial, specs: Sequence[ParamSpec], cfg: DictConfig) -> dict[str, Any]:
    """Samples every active parameter, parents before children; returns name -> value."""
    values: dict[str, Any] = {}
    for spec in ordered(specs):
        if not active(spec, values, cfg):
            continue
        if spec.kind == "categorical":
            values[spec.name] = trial.suggest_categorical(spec.name, list(spec.choices))
        elif spec.kind == "int":
            values[spec.name] = trial.suggest_int(
                spec.name, int(spec.low or 0), int(spec.high or 0), step=int(spec.step or 1), log=spec.log
            )
        else:
            values[spec.name] = trial.suggest_float(
                spec.name, float(spec.low or 0), float(spec.high or 0), step=spec.step, log=spec.log
            )
    return values


def ordered(specs: Sequence[ParamSpec]) -> list[ParamSpec]:
    """Specs with every parent before its children (declaration order otherwise)."""
    by_name = {s.name: s for s in specs}
    ordered: list[ParamSpec] = []
    seen: set[str] = set()

    def visit(spec: ParamSpec, stack: tuple[str, ...]) -> None:
        if spec.name in seen:
            return
        if spec.name in stack:
            raise UserError(f"search.params.{spec.name}.when", list(spec.when), "conditions form a cycle")
        for parent in spec.when:
            if parent in by_name:
                visit(by_name[parent], (*stack, spec.name))
        seen.add(spec.name)
        ordered.append(spec)

    for spec in specs:
        visit(spec, ())
    return ordered


def apply(cfg: DictConfig, specs: Sequence[ParamSpec], values: Mapping[str, Any]) -> DictConfig:
    """A copy of ``cfg`` with each sampled value written to its parameter's path.

    A sampled optimizer or schedule family other than the base config's first gets its
    own keys (see :mod:`tuner.search.families`).
    """
    trial_cfg = OmegaConf.create(OmegaConf.to_container(cfg, resolve=True))
    assert isinstance(trial_cfg, DictConfig)
    families = {
        section: values[spec.name]
        for spec in specs
        if (section := family_section(spec.path)) is not None and spec.name in values
    }
    switch_families(cfg, trial_cfg, families)
    for spec in specs:
        if spec.name in values:
            OmegaConf.update(trial_cfg, spec.path, values[spec.name], merge=False)
    return trial_cfg


def grid(specs: Sequence[ParamSpec], *, points: int) -> dict[str, list[Any]]:
    """A grid over the space for Optuna's GridSampler: ``points`` values per numeric axis."""
    axes: dict[str, list[Any]] = {}
    for spec in specs:
        if spec.when:
            raise UserError(
                "sampler.name", "grid", f"grid search cannot handle the conditional '{spec.name}'"
            )
        if spec.kind == "categorical":
            axes[spec.name] = list(spec.choices)
            continue
        low, high = float(spec.low or 0), float(spec.high or 0)
        if spec.log:
            values = [low * (high / low) ** (i / max(points - 1, 1)) for i in range(points)]
        else:
            values = [low + (high - low) * i / max(points - 1, 1) for i in range(points)]
        axes[spec.name] = sorted({round(v) for v in values}) if spec.kind == "int" else values
    return axes
